// Worker against a real sessiond: retries, concurrency, lease extension, a killed worker
// process, and close() waiting for running jobs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { SessiondClient, UnrecoverableError, Worker } from '../src/index.js';
import { eventually, startSessiond, unique } from './helpers/sessiond.js';

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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const state = async (q, id) => (await q.getJob(id)).state;

test('a handler that throws is retried, and the error is kept in the history', async () => {
  const q = client.queue(unique('q'));
  const { id } = await q.enqueue('flaky', { n: 1 });
  const seen = [];
  const w = new Worker(q.name, async (job) => {
    seen.push(job.attempt);
    if (job.attempt === 1) throw new Error('boom');
    return { ok: job.attempt };
  }, { client, waitMs: 1000 });
  await eventually(async () => (await state(q, id)) === 'completed');
  await w.close();
  const job = await q.getJob(id);
  assert.deepEqual(seen, [1, 2]);
  assert.equal(job.attempts, 2);
  assert.deepEqual(job.result, { ok: 2 });
  assert.equal(job.history[0].outcome, 'failed');
  assert.equal(job.history[0].error, 'boom');
});

test('an UnrecoverableError fails the job for good', async () => {
  const q = client.queue(unique('q'));
  const { id } = await q.enqueue('bad', {});
  const w = new Worker(q.name, async () => {
    throw new UnrecoverableError('no such user');
  }, { client, waitMs: 1000 });
  await eventually(async () => (await state(q, id)) === 'failed');
  await w.close();
  const job = await q.getJob(id);
  assert.equal(job.attempts, 1);
  assert.equal(job.error, 'no such user');
});

test('concurrency bounds the jobs running at once, and every job completes', async () => {
  const q = client.queue(unique('q'));
  const { ids } = await q.enqueueBatch(Array.from({ length: 9 }, (_, i) => ({ type: 't', payload: { i } })));
  let now = 0;
  let peak = 0;
  const w = new Worker(q.name, async (job) => {
    peak = Math.max(peak, ++now);
    await sleep(50);
    now--;
    return job.payload.i;
  }, { client, concurrency: 3, waitMs: 1000 });
  await eventually(async () => (await q.stats()).completed === 9);
  await w.close();
  assert.equal(peak, 3);
  for (const id of ids) assert.equal(await state(q, id), 'completed');
});

test('a job running longer than its lease keeps it (extension), without a stall', async () => {
  const q = client.queue(unique('q'));
  const { id } = await q.enqueue('slow', {});
  const w = new Worker(q.name, async () => {
    await sleep(2500);
    return 'done';
  }, { client, leaseMs: 1000, waitMs: 1000 });
  await eventually(async () => (await state(q, id)) === 'completed', 15_000);
  await w.close();
  const job = await q.getJob(id);
  assert.equal(job.attempts, 1);
  assert.equal(job.stalls, 0);
  assert.deepEqual(job.history, []);
});

test('a job whose lease ran out is fenced: its late result is not taken, the worker emits lost', async () => {
  const q = client.queue(unique('q'));
  const { id } = await q.enqueue('late', {});
  const lost = [];
  let aborted = false;
  const slow = new Worker(q.name, async (job) => {
    job.signal.addEventListener('abort', () => (aborted = true));
    await eventually(async () => (await q.getJob(id)).attempts === 2, 15_000); // another took it
    return 'too late';
  }, { client, leaseMs: 1000, extendEveryMs: 60_000, waitMs: 1000 });
  slow.on('lost', (job) => lost.push(job.id));
  await eventually(async () => (await q.getJob(id)).history.length === 1, 15_000); // the stall
  const fresh = new Worker(q.name, async () => 'in time', { client, waitMs: 1000 });
  await eventually(() => lost.length === 1, 15_000);
  await Promise.all([slow.close(), fresh.close()]);
  const job = await q.getJob(id);
  assert.equal(job.state, 'completed');
  assert.equal(job.result, 'in time');
  assert.deepEqual(lost, [id]);
  assert.equal(aborted, true);
});

test('a worker process killed mid-job: the job runs again after its lease', async () => {
  const q = client.queue(unique('q'));
  const { id } = await q.enqueue('crash', {});
  const child = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/worker-child.js', import.meta.url)), node.url, q.name], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  await eventually(() => out.includes(`started ${id} 1`));
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.equal(await state(q, id), 'active'); // still leased by the dead process
  const attempts = [];
  const w = new Worker(q.name, async (job) => {
    attempts.push(job.attempt);
    return 'second time';
  }, { client, waitMs: 1000 });
  await eventually(async () => (await state(q, id)) === 'completed', 15_000);
  await w.close();
  const job = await q.getJob(id);
  assert.deepEqual(attempts, [2]);
  assert.equal(job.history[0].outcome, 'stalled');
  assert.deepEqual(job.result, 'second time');
});

test('close() waits for the running jobs to finish and be reported', async () => {
  const q = client.queue(unique('q'));
  const { id } = await q.enqueue('long', {});
  let finished = false;
  const w = new Worker(q.name, async () => {
    await sleep(600);
    finished = true;
    return 1;
  }, { client, waitMs: 5000 });
  await once(w, 'active');
  const t0 = Date.now();
  await w.close();
  assert.ok(finished, 'the handler finished before close() resolved');
  assert.ok(Date.now() - t0 >= 400);
  assert.equal(await state(q, id), 'completed');
  // Closed: a job enqueued now is not taken.
  const later = await q.enqueue('long', {});
  await sleep(300);
  assert.equal(await state(q, later.id), 'waiting');
});
