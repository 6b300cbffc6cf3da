// Drives bench/node/node.sh: starts sessiond, then the Express app once on connect-redis and once
// on SessiondStore (the order alternating per round), logs in SESSIONS users, and runs the same
// autocannon load against each: CONNECTIONS connections, each holding one session cookie, every
// WRITE_EVERY-th request a write (POST /w), the others reads (GET /r). Prints req/s, latency
// p50/p99 and the CPU each process spent, per run and as a table.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { perOp } from './per-op.mjs';

const env = (k, d) => process.env[k] ?? d;
const bin = env('SESSIOND_BIN');
const redisUrl = env('REDIS_URL');
const connections = Number(env('CONNECTIONS', 32));
const durationS = Number(env('DURATION_S', 20));
const warmupS = Number(env('WARMUP_S', 3));
const rounds = Number(env('ROUNDS', 1));
const sessions = Number(env('SESSIONS', connections));
const writeEvery = Number(env('WRITE_EVERY', 5));
if (!bin || !redisUrl) throw new Error('SESSIOND_BIN and REDIS_URL are needed');

const tick = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s
const cpuS = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / tick; // utime + stime
};

function start(cmd, args, childEnv, pattern) {
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH, ...childEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c) => (err += c));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      const m = pattern.exec(out);
      if (m) resolve({ child, match: m[1] });
    });
    child.once('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${err}`)));
  });
}

const stop = async (child) => {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
};

async function login(base, n) {
  const cookies = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${base}/login`, { method: 'POST' });
    cookies.push(r.headers.get('set-cookie').split(';')[0]);
  }
  return cookies;
}

function load(base, cookies, seconds) {
  let next = 0;
  // Each connection takes one session cookie (autocannon's context is per connection).
  const withCookie = (req, context) => {
    if (!context.cookie) context.cookie = cookies[next++ % cookies.length];
    return { ...req, headers: { ...req.headers, cookie: context.cookie } };
  };
  const requests = [];
  for (let i = 1; i < writeEvery; i++) requests.push({ method: 'GET', path: '/r', setupRequest: withCookie });
  requests.push({ method: 'POST', path: '/w', setupRequest: withCookie });
  return autocannon({ url: base, connections, duration: seconds, requests });
}

async function run(kind, sd, prefix) {
  const app = await start(process.execPath, [new URL('./app.mjs', import.meta.url).pathname], {
    STORE: kind,
    REDIS_URL: redisUrl,
    SESSIOND_URL: sd.url,
    PREFIX: prefix,
  }, /listening (\d+)/);
  const base = `http://127.0.0.1:${app.match}`;
  try {
    const cookies = await login(base, sessions);
    if (warmupS > 0) await load(base, cookies, warmupS);
    const cpu0 = { app: cpuS(app.child.pid), sessiond: cpuS(sd.child.pid) };
    const r = await load(base, cookies, durationS);
    const cpu1 = { app: cpuS(app.child.pid), sessiond: cpuS(sd.child.pid) };
    // The load ran on the logged-in sessions (not on fresh anonymous ones): their counters moved.
    const counted = (await (await fetch(`${base}/r`, { headers: { cookie: cookies[0] } })).json()).count;
    if (!(counted > 0)) throw new Error(`${kind}: the first session's counter is ${counted} after the load`);
    const res = {
      store: kind,
      writes_seen_by_session_1: counted,
      req_per_s: Math.round(r.requests.average),
      p50_ms: r.latency.p50,
      p99_ms: r.latency.p99,
      errors: r.errors + r.timeouts,
      non2xx: r.non2xx,
      app_cpu_s: +(cpu1.app - cpu0.app).toFixed(1),
      sessiond_cpu_s: +(cpu1.sessiond - cpu0.sessiond).toFixed(1),
    };
    console.log(JSON.stringify(res));
    return res;
  } finally {
    await stop(app.child);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'bench-node-'));
writeFileSync(join(dir, 'sessiond.toml'), '[postgres]\nschema = "node_bench"\n[retention]\nenabled = false\n');
const prefix = `bench-node-${Date.now().toString(36)}:`;
const sdProc = await start(bin, ['--config', join(dir, 'sessiond.toml')], {
  SESSIOND_REDIS_URL: redisUrl,
  SESSIOND_POSTGRES_URL: env('POSTGRES_URL', ''),
  SESSIOND_HTTP_LISTEN: '127.0.0.1:0',
  SESSIOND_REDIS_KEY_PREFIX: prefix,
  SESSIOND_NODE_LOG_LEVEL: 'warn',
}, /sessiond listening on (http:\/\/\S+)/);
const sd = { child: sdProc.child, url: sdProc.match };
const results = [];
try {
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? ['connect-redis', 'sessiond'] : ['sessiond', 'connect-redis'];
    for (const kind of order) results.push(await run(kind, sd, prefix));
  }
  console.log('\nper operation, client side:');
  var ops = await perOp(sd.url, redisUrl, prefix);
} finally {
  await stop(sd.child);
}

// Each cell lists every run's figure (one per round), in run order.
const cells = (rs, k) => rs.map((r) => r[k]).join(' / ');
console.log(`\n${connections} connections, ${durationS} s per run, ${rounds} round(s), 1 write per ${writeEvery} requests`);
console.log('| store | req/s | p50 ms | p99 ms | errors + non-2xx | app CPU s | sessiond CPU s | app CPU µs per request |');
console.log('|---|---|---|---|---|---|---|---|');
for (const kind of ['connect-redis', 'sessiond']) {
  const rs = results.filter((r) => r.store === kind).map((r) => ({
    ...r,
    bad: r.errors + r.non2xx,
    app_us: Math.round((r.app_cpu_s * 1e6) / (r.req_per_s * durationS)),
  }));
  const name = kind === 'sessiond' ? 'SessiondStore' : 'connect-redis';
  console.log(`| ${name} | ${cells(rs, 'req_per_s')} | ${cells(rs, 'p50_ms')} | ${cells(rs, 'p99_ms')} | ${cells(rs, 'bad')} | ${cells(rs, 'app_cpu_s')} | ${cells(rs, 'sessiond_cpu_s')} | ${cells(rs, 'app_us')} |`);
}
console.log('\n| operation (32 in flight) | Node CPU µs per call | calls/s |');
console.log('|---|---|---|');
for (const r of ops) console.log(`| ${r.op} | ${r.cpu_us_per_op} | ${r.ops_per_s} |`);
