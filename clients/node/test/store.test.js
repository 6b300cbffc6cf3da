// SessiondStore under express-session against a real sessiond, and connect-redis on the same
// Redis for comparison: concurrent requests changing different fields, logout fencing, touch.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import RedisStore from 'connect-redis';
import { createClient } from 'redis';
import { NotFoundError, SessiondClient, SessiondStore } from '../src/index.js';
import { barrier, browser, startApp } from './helpers/app.js';
import { env, startSessiond, unique } from './helpers/sessiond.js';

const N = 20;

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

/** N requests of one session, each setting its own field; all load before any saves. */
async function parallelFields(app) {
  const b = browser(app.url);
  assert.equal((await b.req('POST', `/login/${unique('u')}`)).status, 200);
  const all = barrier(N);
  app.hooks.beforeSet = () => all.arrive();
  const answers = await Promise.all(
    Array.from({ length: N }, (_, i) => b.req('POST', `/set/f${i}/v${i}`)),
  );
  app.hooks.beforeSet = async () => {};
  for (const a of answers) assert.equal(a.status, 200);
  const { body } = await b.req('GET', '/session');
  return Array.from({ length: N }, (_, i) => `f${i}`).filter((f) => body.session[f] !== undefined);
}

describe('SessiondStore', () => {
  let store;
  let app;
  before(async () => {
    store = new SessiondStore({ client });
    app = await startApp(store);
  });
  after(() => app?.close());

  test(`${N} parallel requests each setting its own field keep all ${N} fields`, async () => {
    const calls = { put: 0, patch: 0 };
    const { put, patch } = client.sessions;
    client.sessions.put = (...a) => (calls.put++, put.apply(client.sessions, a));
    client.sessions.patch = (...a) => (calls.patch++, patch.apply(client.sessions, a));
    try {
      const kept = await parallelFields(app);
      assert.equal(kept.length, N, `kept ${kept.length} of ${N}: ${kept}`);
    } finally {
      client.sessions.put = put;
      client.sessions.patch = patch;
    }
    // The login's create, then one merge patch per request against the version it loaded.
    assert.deepEqual(calls, { put: 1, patch: N });
  });

  test('login stores the user, so listForUser finds the session and revokeUser ends it', async () => {
    const user = unique('u');
    const phone = browser(app.url);
    const laptop = browser(app.url);
    await phone.req('POST', `/login/${user}`);
    await laptop.req('POST', `/login/${user}`);
    const sessions = await client.sessions.listForUser(user);
    assert.deepEqual(sessions.map((s) => s.id).sort(), [phone.sid(), laptop.sid()].sort());
    assert.equal((await client.sessions.revokeUser(user)).revoked, 2);
    assert.equal((await phone.req('GET', '/session')).body.session.userId, undefined);
    assert.equal((await laptop.req('GET', '/session')).body.session.userId, undefined);
  });

  test('a user set without regenerate moves the session to that user, keeping its fields', async () => {
    const b = browser(app.url);
    await b.req('POST', '/set/cart/1'); // an anonymous session
    const anon = await client.sessions.get(b.sid());
    assert.equal(anon.user_id, `anon.${b.sid()}`);
    const user = unique('u');
    await b.req('POST', `/become/${user}`);
    const doc = await client.sessions.get(b.sid());
    assert.equal(doc.user_id, user);
    assert.equal(doc.data.cart, '1');
    assert.deepEqual((await client.sessions.listForUser(user)).map((s) => s.id), [b.sid()]);
  });

  test('a request still running after logout does not bring the session back', async () => {
    const b = browser(app.url);
    await b.req('POST', `/login/${unique('u')}`);
    const sid = b.sid();
    let release;
    let arrived;
    const held = new Promise((r) => (arrived = r));
    app.hooks.beforeSet = () => {
      arrived();
      return new Promise((r) => (release = r));
    };
    const fenced = [];
    store.on('fenced', (s, err) => fenced.push([s, err.constructor.name]));
    const slow = b.req('POST', '/set/late/yes'); // loaded the session, now waits
    await held;
    app.hooks.beforeSet = async () => {};
    const other = browser(app.url);
    other.setCookie(b.cookie());
    assert.equal((await other.req('POST', '/logout')).status, 200);
    release();
    assert.equal((await slow).status, 200);
    await assert.rejects(client.sessions.get(sid), NotFoundError);
    assert.deepEqual(fenced, [[sid, 'NotFoundError']]); // its PATCH met the tombstone
    const after = await b.req('GET', '/session');
    assert.notEqual(after.body.sid, sid);
    assert.equal(after.body.session.late, undefined);
  });

  test('an unchanged session is not written: its load slid the TTL, a later touch is a conditional read', async () => {
    const b = browser(app.url);
    await b.req('POST', `/login/${unique('u')}`);
    await b.req('POST', '/set/a/1');
    const before = await client.sessions.get(b.sid());
    const gets = [];
    const { get } = client.sessions;
    client.sessions.get = (id, opts = {}) => (gets.push(opts.ifNoneMatch ?? null), get.call(client.sessions, id, opts));
    const eager = new SessiondStore({ client, touchSkipMs: 0 }); // touches even right after a load
    const eagerApp = await startApp(eager);
    try {
      for (let i = 0; i < 3; i++) assert.equal((await b.req('GET', '/session')).body.session.a, '1');
      assert.deepEqual(gets, [null, null, null]); // the loads only
      gets.length = 0;
      const e = browser(eagerApp.url);
      e.setCookie(b.cookie());
      assert.equal((await e.req('GET', '/session')).body.session.a, '1');
      assert.deepEqual(gets, [null, before.version]); // the load, then If-None-Match: 304
    } finally {
      client.sessions.get = get;
      await eagerApp.close();
    }
    const after = await client.sessions.get(b.sid());
    assert.equal(after.version, before.version);
    assert.equal(after.data.a, '1');
  });

  test('a save that changes nothing writes nothing, a deleted field is removed, ttl_s follows cookie.maxAge', async () => {
    const b = browser(app.url);
    await b.req('POST', `/login/${unique('u')}`);
    await b.req('POST', '/set/a/1');
    await b.req('POST', '/set/a/1'); // same value: express-session saves, the store has no diff
    const v = (await client.sessions.get(b.sid())).version;
    await b.req('POST', '/set/b/2');
    const doc = await client.sessions.get(b.sid());
    assert.equal(doc.version, v + 1);
    assert.equal(doc.data.a, '1');
    assert.equal(doc.data.b, '2');
    assert.ok(doc.ttl_s >= 3599 && doc.ttl_s <= 3600, `ttl_s ${doc.ttl_s} from cookie.maxAge`);
    await b.req('POST', '/unset/a');
    const unset = await client.sessions.get(b.sid());
    assert.equal(unset.version, v + 2);
    assert.equal('a' in unset.data, false);
    assert.equal(unset.data.b, '2');
  });
});

describe('connect-redis on the same Redis, same test', () => {
  let redis;
  let app;
  before(async () => {
    redis = createClient({ url: env('REDIS_URL') });
    await redis.connect();
    app = await startApp(new RedisStore({ client: redis, prefix: `${unique('cr')}:` }));
  });
  after(async () => {
    await app?.close();
    await redis?.quit();
  });

  test(`${N} parallel requests each setting its own field: the last whole-session write wins`, async () => {
    const kept = await parallelFields(app);
    // Each request loaded the session before any saved, then wrote the whole session back.
    console.log(`# connect-redis kept ${kept.length} of ${N} fields (SessiondStore keeps ${N})`);
    assert.equal(kept.length, 1, `kept ${kept.length} of ${N}`);
  });
});
