#!/usr/bin/env node
// BullMQ 5's side of bench/queue.sh: the workload of `sessiond-bench queue` (docs/bench.md) on
// the same Redis, with BullMQ's own Queue and Worker: no-op jobs with a {"t":<enqueue ms>,
// "pad":"xx…"} payload, enqueued with addBulk (--batch > 1) or add() one by one (--batch 1),
// run by one Worker of --concurrency slots with an async no-op processor, on a thread of its own
// (node:worker_threads) so that the producers' event loop does not slow it down. Prints JSON in
// the shape of `sessiond-bench queue --json` (node_cpu_us_per_job: the whole process, both
// threads, from process.cpuUsage()).
//
//   node bench/queue-peer/bullmq-bench.mjs --redis-url redis://127.0.0.1:6379/0 [--jobs N]
//        [--payload-bytes B] [--producers P] [--batch B] [--concurrency C] [--keep-completed K]
//        [--paced-rate R] [--paced-seconds S] [--phases enqueue,drain,concurrent,paced|memory]
//        [--queue NAME] [--timeout-s S] [--warmup-jobs N]
//
// Phases, as in sessiond-bench queue: enqueue (into the paused queue: Queue.pause()), drain
// (Queue.resume(), until the Worker completed them all), concurrent (producers and the Worker
// together), paced (--paced-rate jobs/s by add()), memory (alone: used_memory before and after
// --jobs jobs added to a queue no worker serves; the jobs stay for the caller to flush). Before
// them, --warmup-jobs (20000) jobs run through a queue <name>-warmup that is then obliterated,
// so that V8's JIT is warm, as in a long-running service (sessiond, compiled, needs none).
// Completed jobs are kept as sessiond's keep_completed = 1000 keeps them: the Worker's
// removeOnComplete: {count: K}. Latency: the processor's start - the payload's t, both from this
// process's clock (performance.timeOrigin + performance.now()).
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Worker as Thread, isMainThread, parentPort, workerData } from 'node:worker_threads';

const bullmqVersion = () => {
  try {
    return JSON.parse(readFileSync(new URL('./node_modules/bullmq/package.json', import.meta.url)))
      .version;
  } catch {
    return null;
  }
};

const usage = () => {
  process.stderr.write('usage: bullmq-bench.mjs --redis-url URL [--jobs N] [--payload-bytes B] ' +
    '[--producers P] [--batch B] [--concurrency C] [--keep-completed K] [--paced-rate R] ' +
    '[--paced-seconds S] [--phases LIST] [--queue NAME] [--timeout-s S] [--warmup-jobs N]\n');
  process.exit(2);
};

function parseArgs(argv) {
  const a = {
    redisUrl: '', queue: 'bench', jobs: 100000, payloadBytes: 200, producers: 4, batch: 100,
    concurrency: 100, keepCompleted: 1000, pacedRate: 2000, pacedSeconds: 5, timeoutS: 300,
    warmupJobs: 20000,
    phases: ['enqueue', 'drain', 'concurrent', 'paced'],
  };
  const num = (flag, v, min, max) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) {
      process.stderr.write(`bullmq-bench: ${flag} ${v}: expected a number in ${min}..${max}\n`);
      process.exit(2);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s);
    const next = () => (value !== undefined ? value : (i + 1 < argv.length ? argv[++i] : usage()));
    switch (flag) {
      case '--redis-url': a.redisUrl = next(); break;
      case '--queue': a.queue = next(); break;
      case '--jobs': a.jobs = num(flag, next(), 1, 1e8); break;
      case '--payload-bytes': a.payloadBytes = num(flag, next(), 40, 65536); break;
      case '--producers': a.producers = num(flag, next(), 1, 1000); break;
      case '--batch': a.batch = num(flag, next(), 1, 1000); break;
      case '--concurrency': a.concurrency = num(flag, next(), 1, 10000); break;
      case '--keep-completed': a.keepCompleted = num(flag, next(), 0, 1e7); break;
      case '--paced-rate': a.pacedRate = num(flag, next(), 1, 1e7); break;
      case '--paced-seconds': a.pacedSeconds = num(flag, next(), 0.1, 3600); break;
      case '--timeout-s': a.timeoutS = num(flag, next(), 1, 86400); break;
      case '--warmup-jobs': a.warmupJobs = num(flag, next(), 0, 1e8); break;
      case '--phases': a.phases = next().split(',').filter(Boolean); break;
      case '--json': break; // JSON is the only output
      case '--help': usage(); break;
      default:
        process.stderr.write(`bullmq-bench: unknown argument ${argv[i]}\n`);
        process.exit(2);
    }
  }
  if (!a.redisUrl) usage();
  const known = ['enqueue', 'drain', 'concurrent', 'paced', 'memory'];
  if (a.phases.length === 0 || a.phases.some((p) => !known.includes(p)) ||
      (a.phases.includes('memory') && a.phases.length > 1)) {
    process.stderr.write(`bullmq-bench: --phases ${a.phases}: expected some of ` +
      'enqueue,drain,concurrent,paced, or memory alone\n');
    process.exit(2);
  }
  return a;
}

/// redis://[[user]:password@]host[:port][/db] as ioredis options (each Queue and Worker opens
/// connections of its own from them).
function connectionOf(url) {
  const u = new URL(url);
  return {
    host: u.hostname, port: Number(u.port || 6379), db: Number(u.pathname.slice(1) || 0),
    username: decodeURIComponent(u.username) || undefined,
    password: decodeURIComponent(u.password) || undefined,
    maxRetriesPerRequest: null,
  };
}

const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/// {"t":<ms>,"pad":"xx…"} as an object whose JSON is exactly `bytes` long, like the C++ bench's
/// (t with 3 decimals: 13 digits before the point).
function payload(t, bytes) {
  const tt = Number(t.toFixed(3));
  const head = JSON.stringify({ t: tt, pad: '' }).length;
  return { t: tt, pad: 'x'.repeat(Math.max(0, bytes - head)) };
}

// --- Redis's side: INFO deltas ----------------------------------------------------------------

function infoNumber(text, key) {
  const m = text.match(new RegExp(`^${key}:([0-9.]+)`, 'm'));
  return m ? Number(m[1]) : 0;
}

async function snapshot(redis) {
  const cpu = await redis.info('cpu');
  const cmds = {};
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const m = line.match(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/);
    if (m) cmds[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  const c = process.cpuUsage();
  return {
    at: nowMs(),
    redisCpuS: infoNumber(cpu, 'used_cpu_sys') + infoNumber(cpu, 'used_cpu_user'),
    nodeCpuS: (c.user + c.system) / 1e6,
    cmds,
  };
}

const scriptCommands = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

function cost(from, to, jobs) {
  let all = 0, scripts = 0;
  const commands = {};
  for (const [name, c] of Object.entries(to.cmds)) {
    const b = from.cmds[name] || { calls: 0, usec: 0 };
    const n = c.calls - b.calls, usec = c.usec - b.usec;
    if (n <= 0) continue;
    all += usec;
    if (scriptCommands.has(name)) scripts += usec;
    commands[name] = { calls_per_job: n / jobs, usec_per_job: usec / jobs };
  }
  return {
    redis_cpu_us_per_job: (1e6 * (to.redisCpuS - from.redisCpuS)) / jobs,
    cmdstat_us_per_job: all / jobs,
    cmdstat_script_us_per_job: scripts / jobs,
    node_cpu_us_per_job: (1e6 * (to.nodeCpuS - from.nodeCpuS)) / jobs,
    commands,
  };
}

/// p50/p90/p99 as the value at rank ceil(p·n), like bench/histogram.
function latencyJson(samples) {
  if (!samples || samples.length === 0) return null;
  const s = Float64Array.from(samples).sort();
  const at = (p) => s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
  const mean = s.reduce((x, y) => x + y, 0) / s.length;
  return { p50: at(50), p90: at(90), p99: at(99), max: s[s.length - 1], mean, samples: s.length };
}

// --- the workload -----------------------------------------------------------------------------

/// Adds `total` jobs with --producers Queue instances (a connection each), `batch` per addBulk
/// (1: add()); `rate` > 0 spaces job i at start + i/rate.
async function produce(a, producers, total, batch, rate) {
  let next = 0;
  const start = performance.now();
  await Promise.all(producers.map(async (q) => {
    for (;;) {
      const from = next;
      if (from >= total) return;
      const n = Math.min(batch, total - from);
      next += n;
      if (rate > 0) await sleep(start + (1000 * from) / rate - performance.now());
      const t = nowMs();
      if (batch === 1) {
        await q.add('noop', payload(t, a.payloadBytes));
      } else {
        const jobs = [];
        for (let k = 0; k < n; k++) jobs.push({ name: 'noop', data: payload(t, a.payloadBytes) });
        await q.addBulk(jobs);
      }
    }
  }));
}

/// The Worker runs on a thread of its own (node:worker_threads), as BullMQ workers run apart from
/// the code that adds jobs: the producers' event loop does not delay it. One thread serves the
/// whole run (its JIT stays warm); each phase starts a Worker on it. `start()` returns `ready`,
/// `done` (the epoch ms when `target` jobs completed) and `close()` (its latencies and counts).
function workerThread(a, connection) {
  const thread = new Thread(new URL(import.meta.url), { workerData: { a, connection } });
  let current = null;
  const settle = () => {
    let res, rej;
    const p = new Promise((y, n) => { res = y; rej = n; });
    return { p, res, rej };
  };
  const fail = (e) => { if (current) for (const k of ['ready', 'done', 'closed']) current[k].rej(e); };
  thread.on('message', (m) => {
    if (m.ready) current.ready.res();
    if (m.done) current.done.res(m.done);
    if (m.closed) current.closed.res(m.closed);
    if (m.error) fail(new Error(m.error));
  });
  thread.on('error', fail);
  return {
    start(queueName, target, measure) {
      current = { ready: settle(), done: settle(), closed: settle() };
      const c = current;
      thread.postMessage({ start: { queueName, target, measure } });
      return {
        ready: c.ready.p,
        done: c.done.p,
        close: async () => {
          thread.postMessage({ close: true });
          return c.closed.p;
        },
      };
    },
    terminate: () => thread.terminate(),
  };
}

/// The worker thread: for each `start`, one BullMQ Worker with an async no-op processor.
function consume({ a, connection }) {
  let worker = null, latencies = [], completed = 0, failed = 0;
  parentPort.on('message', async (m) => {
    if (m.start) {
      const { queueName, target, measure } = m.start;
      latencies = [];
      completed = 0;
      failed = 0;
      worker = new Worker(queueName, async (job) => {
        if (measure) latencies.push(nowMs() - job.data.t);
      }, {
        connection, concurrency: a.concurrency, removeOnComplete: { count: a.keepCompleted },
      });
      worker.on('completed', () => {
        if (++completed === target) parentPort.postMessage({ done: nowMs() });
      });
      worker.on('failed', (job, err) => {
        failed++;
        parentPort.postMessage({ error: `job ${job && job.id} failed: ${err}` });
      });
      worker.on('error', (err) => parentPort.postMessage({ error: String(err) }));
      await worker.waitUntilReady();
      parentPort.postMessage({ ready: true });
    } else if (m.close) {
      await worker.close();
      parentPort.postMessage({ closed: { latencies, stats: { completed, failed } } });
    }
  });
}

/// Runs --warmup-jobs jobs (half in batches, half one by one) through a queue of their own,
/// then removes it: V8 has compiled the hot paths of BullMQ, ioredis and this script before
/// anything is measured, as it has in a long-running service.
async function warmUp(a, connection, thread) {
  if (a.warmupJobs <= 0) return;
  const name = `${a.queue}-warmup`;
  const qs = Array.from({ length: a.producers }, () => new Queue(name, { connection }));
  const half = Math.ceil(a.warmupJobs / 2);
  const w = thread.start(name, a.warmupJobs, true);
  await w.ready;
  await produce(a, qs, half, a.batch, 0);
  await produce(a, qs, a.warmupJobs - half, 1, 0);
  await withTimeout(w.done, a.timeoutS, 'warm-up');
  await w.close();
  await qs[0].obliterate({ force: true });
  await Promise.all(qs.map((q) => q.close()));
}

async function withTimeout(p, s, what) {
  let timer;
  const t = new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: timed out after ${s} s`)), s * 1000); });
  try { return await Promise.race([p, t]); } finally { clearTimeout(timer); }
}

async function waitingJobs(queue) {
  const c = await queue.getJobCounts('wait', 'paused', 'prioritized', 'delayed', 'active');
  return Object.values(c).reduce((x, y) => x + y, 0);
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const connection = connectionOf(a.redisUrl);
  const redis = new IORedis(connection);
  const queue = new Queue(a.queue, { connection });
  const producers = Array.from({ length: a.producers }, () => new Queue(a.queue, { connection }));
  await Promise.all([queue.waitUntilReady(), ...producers.map((q) => q.waitUntilReady())]);
  const out = {
    parameters: {
      system: 'bullmq', bullmq: bullmqVersion(),
      redis_url: a.redisUrl.replace(/:[^:@/]*@/, ':***@'), queue: a.queue, jobs: a.jobs,
      payload_bytes: a.payloadBytes, producers: a.producers, batch: a.batch,
      concurrency: a.concurrency, remove_on_complete_count: a.keepCompleted,
      paced_rate: a.pacedRate, paced_seconds: a.pacedSeconds, phases: a.phases,
      warmup_jobs: a.warmupJobs,
    },
    phases: {},
  };
  let pending = 0;
  const thread = workerThread(a, connection);
  try {
    if (a.phases[0] !== 'memory') await warmUp(a, connection, thread); // memory needs no JIT
    if (a.phases[0] === 'memory') {
      const before = infoNumber(await redis.info('memory'), 'used_memory');
      await produce(a, producers, a.jobs, a.batch, 0);
      await sleep(200);
      const after = infoNumber(await redis.info('memory'), 'used_memory');
      out.memory = {
        jobs: a.jobs, payload_bytes: a.payloadBytes, used_memory_before: before,
        used_memory_after: after, bytes_per_job: (after - before) / a.jobs,
        mib_per_100k_jobs: ((after - before) * 100000) / a.jobs / 1048576,
        queue_waiting_jobs: await waitingJobs(queue),
      };
    }
    for (const phase of a.phases) {
      if (phase === 'memory') {
        continue; // measured above
      } else if (phase === 'enqueue') {
        await queue.pause();
        const from = await snapshot(redis);
        await produce(a, producers, a.jobs, a.batch, 0);
        const to = await snapshot(redis);
        pending = await waitingJobs(queue);
        out.phases.enqueue = report(a.jobs, from, to, null,
          `queue paused; ${pending} jobs waiting after it`);
      } else if (phase === 'drain') {
        if (pending === 0) throw new Error('drain: nothing waiting (run the enqueue phase first)');
        const w = thread.start(a.queue, pending, false);
        await w.ready;
        const from = await snapshot(redis);
        await queue.resume();
        const end = await withTimeout(w.done, a.timeoutS, 'drain');
        const to = await snapshot(redis);
        to.at = end;
        const { stats } = await w.close();
        out.phases.drain = report(pending, from, to, null, '', stats);
        pending = 0;
      } else {
        const paced = phase === 'paced';
        const total = paced ? Math.round(a.pacedRate * a.pacedSeconds) : a.jobs;
        if (await queue.isPaused()) await queue.resume();
        const w = thread.start(a.queue, total, true);
        await w.ready;
        const from = await snapshot(redis);
        await produce(a, producers, total, paced ? 1 : a.batch, paced ? a.pacedRate : 0);
        const end = await withTimeout(w.done, a.timeoutS, phase);
        const to = await snapshot(redis);
        to.at = end;
        const { latencies, stats } = await w.close();
        out.phases[phase] = report(total, from, to, latencies, '', stats);
      }
    }
    if (pending > 0) await queue.resume();
  } finally {
    await thread.terminate();
    await Promise.all([queue.close(), ...producers.map((q) => q.close())]);
    redis.disconnect();
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

function report(jobs, from, to, latencies, note, stats) {
  const seconds = (to.at - from.at) / 1000;
  const r = {
    jobs, seconds, jobs_per_s: jobs / seconds, latency_ms: latencyJson(latencies),
    failed: stats ? stats.failed : 0, cost: cost(from, to, jobs),
  };
  if (note) r.note = note;
  return r;
}

if (isMainThread) {
  main().catch((e) => {
    process.stderr.write(`bullmq-bench: ${e.stack || e}\n`);
    process.exit(1);
  });
} else {
  consume(workerData);
}
