// SessiondClient against a real sessiond: sessions, typed errors, preconditions, the queue API,
// the cache, auth tokens, failover between node URLs, and the bounded retry on 503.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BadRequestError,
  ConnectionError,
  GoneError,
  NotFoundError,
  PreconditionFailedError,
  SessiondClient,
  UnauthorizedError,
  UnavailableError,
} from '../src/index.js';
import { startSessiond, unique } from './helpers/sessiond.js';

let node;
let client;
before(async () => {
  node = await startSessiond();
  client = new SessiondClient({ url: node.url });
});
after(async () => {
  client?.close();
  await node?.stop();
});

describe('sessions', () => {
  test('put creates, get reads, patch merges, delete revokes', async () => {
    const id = unique('s');
    const created = await client.sessions.put(id, { userId: 'alice', data: { cart: [] } });
    assert.equal(created.created, true);
    assert.equal(created.version, 1);
    const got = await client.sessions.get(id);
    assert.deepEqual(got.data, { cart: [] });
    assert.equal(got.user_id, 'alice');
    const patched = await client.sessions.patch(id, { cart: [42], theme: 'dark' }, { version: 1 });
    assert.equal(patched.version, 2);
    assert.deepEqual(patched.data, { cart: [42], theme: 'dark' });
    const removed = await client.sessions.patch(id, { theme: null });
    assert.deepEqual(removed.data, { cart: [42] });
    const unchanged = await client.sessions.get(id, { ifNoneMatch: removed.version });
    assert.deepEqual(unchanged, { notModified: true, version: removed.version });
    await client.sessions.delete(id);
    await assert.rejects(client.sessions.get(id), NotFoundError);
  });

  test('a stale version is a PreconditionFailedError carrying the problem', async () => {
    const id = unique('s');
    await client.sessions.put(id, { userId: 'bob', data: {} });
    await client.sessions.patch(id, { a: 1 });
    const err = await client.sessions.patch(id, { a: 2 }, { version: 1 }).catch((e) => e);
    assert.ok(err instanceof PreconditionFailedError);
    assert.equal(err.status, 412);
    assert.equal(err.type, 'urn:sessiond:problem:precondition-failed');
    assert.equal(err.title, 'Precondition failed');
    assert.match(err.detail, /version 2/);
    await assert.rejects(
      client.sessions.put(id, { userId: 'bob', data: {} }, { ifNoneMatch: '*' }),
      PreconditionFailedError,
    );
    const replaced = await client.sessions.put(id, { userId: 'bob', data: { b: 1 } }, { ifMatch: 2 });
    assert.equal(replaced.created, false);
    assert.equal(replaced.version, 3);
  });

  test('a PATCH never creates, and a revoked id cannot be put back', async () => {
    const id = unique('s');
    await assert.rejects(client.sessions.patch(id, { a: 1 }), NotFoundError);
    await client.sessions.put(id, { userId: 'carol', data: {} });
    await client.sessions.delete(id);
    await assert.rejects(client.sessions.patch(id, { a: 1 }), NotFoundError);
    await assert.rejects(client.sessions.put(id, { userId: 'carol', data: {} }), GoneError);
  });

  test('bad input is a BadRequestError', async () => {
    await assert.rejects(client.sessions.get('has space'), BadRequestError);
    await assert.rejects(client.sessions.put(unique('s'), { data: {} }), BadRequestError); // no user_id
  });

  test('listForUser and revokeUser', async () => {
    const user = unique('u');
    const ids = [unique('s'), unique('s'), unique('s')];
    for (const id of ids) await client.sessions.put(id, { userId: user, data: { id } });
    const listed = await client.sessions.listForUser(user);
    assert.deepEqual(listed.map((s) => s.id).sort(), [...ids].sort());
    const r = await client.sessions.revokeUser(user);
    assert.equal(r.revoked, 3);
    assert.deepEqual(await client.sessions.listForUser(user), []);
    for (const id of ids) await assert.rejects(client.sessions.get(id), NotFoundError);
  });

  test('an aborted call rejects with the signal reason', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await assert.rejects(client.sessions.get('x', { signal: ac.signal }), /stop/);
  });
});

describe('queue', () => {
  test('enqueue, enqueueBatch, getJob, lease, complete', async () => {
    const q = client.queue(unique('q'));
    const one = await q.enqueue('mail', { to: 'a' }, { priority: 5, dedupKey: 'd1' });
    assert.equal(one.state, 'waiting');
    const dup = await q.enqueue('mail', { to: 'a' }, { dedupKey: 'd1' });
    assert.equal(dup.id, one.id);
    assert.equal(dup.deduplicated, true);
    const batch = await q.enqueueBatch([{ type: 'mail', payload: { to: 'b' } }, { type: 'mail', payload: { to: 'c' }, delayMs: 60_000 }]);
    assert.equal(batch.ids.length, 2);
    assert.deepEqual(batch.states, ['waiting', 'delayed']);
    const leased = await q.lease({ max: 10, waitMs: 0 });
    assert.equal(leased.length, 2);
    assert.equal(leased[0].id, one.id); // priority 5 first
    await q.complete(leased[0].id, leased[0].lease_token, { sent: true });
    const job = await q.getJob(one.id);
    assert.equal(job.state, 'completed');
    assert.deepEqual(job.result, { sent: true });
    await assert.rejects(q.getJob('999999'), NotFoundError);
  });
});

describe('cache', () => {
  test('set, get, invalidate, invalidatePrefix', async () => {
    const key = unique('k');
    assert.equal(await client.cache.get('plain', key), undefined);
    await client.cache.set('plain', key, { room: 'r-42' });
    assert.deepEqual(await client.cache.get('plain', key), { room: 'r-42' });
    const entry = await client.cache.getEntry('plain', key);
    assert.match(entry.cacheStatus, /^sessiond; hit/);
    await client.cache.invalidate('plain', key);
    assert.equal(await client.cache.get('plain', key), undefined);
    const p = unique('p');
    for (const k of ['a', 'b', 'c']) await client.cache.set('plain', `${p}:${k}`, k, { ttlS: 30 });
    assert.equal(await client.cache.invalidatePrefix('plain', `${p}:`), 3);
    assert.equal(await client.cache.get('plain', `${p}:a`), undefined);
  });

  test('get reads through the loader; an unknown namespace throws', async () => {
    const key = unique('user:');
    const entry = await client.cache.getEntry('users', key);
    assert.deepEqual(entry.value, { key, loaded: true });
    assert.match(entry.cacheStatus, /fwd=miss/);
    assert.equal(await client.cache.get('users', unique('missing:')), undefined);
    await assert.rejects(client.cache.get('no-such-namespace', 'k'), NotFoundError);
  });
});

describe('transport', () => {
  test('a node that refuses connections is failed over to the next URL', async () => {
    const dead = await new Promise((resolve) => {
      const s = http.createServer();
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(`http://127.0.0.1:${port}`));
      });
    });
    const c = new SessiondClient({ url: [dead, node.url] });
    try {
      const id = unique('s');
      for (let i = 0; i < 4; i++) await c.sessions.put(id, { userId: 'f', data: { i } });
      assert.equal((await c.sessions.get(id)).data.i, 3);
      const only = new SessiondClient({ url: dead });
      await assert.rejects(only.sessions.get(id), ConnectionError);
      only.close();
    } finally {
      c.close();
    }
  });

  test('a 503 is retried after its Retry-After, within the budget, then thrown with retryAfter', async () => {
    let calls = 0;
    const s = http.createServer((req, res) => {
      calls++;
      if (req.url.endsWith('/ok') && calls % 2 === 0) {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"ok","data":{}}');
        return;
      }
      res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': '1' });
      res.end('{"type":"urn:sessiond:problem:unavailable","title":"Service unavailable","status":503,"detail":"x"}');
    });
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    const c = new SessiondClient({ url: `http://127.0.0.1:${s.address().port}`, retries: 2, retryBudgetMs: 1500 });
    try {
      const t0 = Date.now();
      assert.equal((await c.sessions.get('ok')).id, 'ok'); // one 503, then 200
      assert.ok(Date.now() - t0 >= 1000);
      calls = 0;
      const t1 = Date.now();
      const err = await c.sessions.get('never').catch((e) => e);
      assert.ok(err instanceof UnavailableError);
      assert.equal(err.retryAfter, 1);
      assert.equal(calls, 2); // a second wait of 1 s would pass the 1.5 s budget
      assert.ok(Date.now() - t1 >= 1000);
    } finally {
      c.close();
      s.close();
    }
  });
});

describe('auth', () => {
  test('a node with a tokens file wants the token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sessiond-tokens-'));
    const token = 'node-client-test-token-0123456789';
    writeFileSync(join(dir, 'api'), `${token}\n`, { mode: 0o600 });
    const secured = await startSessiond({ extraEnv: { SESSIOND_AUTH_API_TOKENS_FILE: join(dir, 'api') } });
    const without = new SessiondClient({ url: secured.url });
    const withToken = new SessiondClient({ url: secured.url, token });
    try {
      const err = await without.sessions.get('x').catch((e) => e);
      assert.ok(err instanceof UnauthorizedError);
      assert.equal(err.type, 'urn:sessiond:problem:unauthorized');
      await assert.rejects(withToken.sessions.get('x'), NotFoundError);
    } finally {
      without.close();
      withToken.close();
      await secured.stop();
    }
  });
});
