// The example app (examples/express) against a real sessiond, as the README's tour runs it;
// and diffMergePatch / applyMergePatch, which SessiondStore's saves rest on.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { applyMergePatch, diffMergePatch } from '../src/index.js';
import { browser } from './helpers/app.js';
import { startSessiond } from './helpers/sessiond.js';

let node;
let app;
let base;
before(async () => {
  node = await startSessiond();
  app = spawn(process.execPath, [fileURLToPath(new URL('../examples/express/app.js', import.meta.url))], {
    env: { PATH: process.env.PATH, SESSIOND_URL: node.url, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  base = await new Promise((resolve, reject) => {
    let out = '';
    app.stdout.on('data', (c) => {
      out += c;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    app.once('exit', (code) => reject(new Error(`the example exited with ${code}`)));
  });
});
after(async () => {
  if (app && app.exitCode === null) {
    app.kill('SIGTERM');
    await once(app, 'exit');
  }
  await node?.stop();
});

test('the example: login, count, a second device, logout everywhere', async () => {
  const phone = browser(base);
  const laptop = browser(base);
  assert.deepEqual((await phone.req('POST', '/login?user=alice')).body, { user: 'alice' });
  assert.deepEqual((await phone.req('POST', '/count')).body, { user: 'alice', count: 1 });
  assert.deepEqual((await phone.req('POST', '/count')).body, { user: 'alice', count: 2 });
  await laptop.req('POST', '/login?user=alice');
  const sessions = (await phone.req('GET', '/sessions')).body;
  assert.deepEqual(sessions.map((s) => s.count).sort(), [0, 2]);
  assert.deepEqual((await laptop.req('POST', '/logout-everywhere')).body, { revoked: 2 });
  assert.deepEqual((await phone.req('GET', '/')).body, { user: null, count: null });
  assert.equal((await phone.req('POST', '/count')).status, 401);
});

test('diffMergePatch gives the patch that applyMergePatch turns back into the new document', () => {
  const before = { a: 1, b: { c: 2, d: [1, 2] }, e: 'x', f: { g: 1 } };
  const after = { a: 1, b: { c: 3, d: [1, 2] }, f: { g: 1, h: null }, i: [3] };
  const patch = diffMergePatch(before, after);
  assert.deepEqual(patch, { b: { c: 3 }, e: null, i: [3] });
  assert.deepEqual(applyMergePatch(before, patch), { a: 1, b: { c: 3, d: [1, 2] }, f: { g: 1 }, i: [3] });
  assert.equal(diffMergePatch(before, structuredClone(before)), null);
  assert.deepEqual(diffMergePatch({ a: { b: 1 } }, { a: 5 }), { a: 5 });
  assert.deepEqual(diffMergePatch({ a: 5 }, { a: { b: 1 } }), { a: { b: 1 } });
});
