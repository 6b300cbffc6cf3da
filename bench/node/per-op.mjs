// The client side of one session operation, measured alone: the CPU the Node process spends per
// call (process.cpuUsage) and the calls per second, 32 in flight, for sessiond through
// @sessiond/client (node:http) beside node-redis on the same Redis, and node:http beside the
// global fetch on GET /healthz. Run by run.mjs after the Express runs, on the same sessiond.
import http from 'node:http';
import { createClient } from 'redis';
import { SessiondClient } from '../../clients/node/src/index.js';

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function measure(name, fn, n = 10_000, inFlight = 32) {
  for (let i = 0; i < 1000; i++) await fn();
  const c0 = cpuUs();
  const t0 = process.hrtime.bigint();
  let started = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (started++ < n) await fn();
    }),
  );
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const r = { op: name, cpu_us_per_op: +((cpuUs() - c0) / n).toFixed(1), ops_per_s: Math.round(n / s) };
  console.log(JSON.stringify(r));
  return r;
}

export async function perOp(sessiondUrl, redisUrl, prefix) {
  const client = new SessiondClient({ url: sessiondUrl });
  const redis = createClient({ url: redisUrl });
  await redis.connect();
  const data = { cookie: { originalMaxAge: 3_600_000, expires: new Date().toISOString(), httpOnly: true, path: '/' }, userId: 'u1', profile: 'x'.repeat(512), count: 0 };
  const id = 'per-op-1';
  const doc = await client.sessions.put(id, { userId: 'per-op', data });
  const key = `${prefix}per-op:1`;
  await redis.set(key, JSON.stringify(data));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const healthz = `${sessiondUrl}/healthz`;
  const rows = [
    await measure('sessiond GET (200, the session)', () => client.sessions.get(id)),
    await measure('sessiond GET (304, If-None-Match)', () => client.sessions.get(id, { ifNoneMatch: doc.version })),
    await measure('node-redis GET + JSON.parse', async () => JSON.parse(await redis.get(key))),
    await measure('node-redis SET', () => redis.set(key, JSON.stringify(data), { EX: 3600 })),
    await measure('node:http GET /healthz', () => new Promise((resolve, reject) => {
      const req = http.request(healthz, { agent }, (res) => res.resume().on('end', resolve));
      req.on('error', reject);
      req.end();
    })),
    await measure('fetch GET /healthz', async () => (await fetch(healthz)).text()),
  ];
  agent.destroy();
  await client.sessions.delete(id);
  await redis.del(key);
  client.close();
  await redis.quit();
  return rows;
}
