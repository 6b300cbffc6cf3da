// Worker: runs a queue's jobs in this process, in the shape BullMQ users know, on sessiond's
// lease API (docs/queue.md, "Writing an external worker").
import { EventEmitter } from 'node:events';
import { SessiondClient } from './client.js';
import { ConflictError, NotFoundError } from './errors.js';

/** Thrown by a handler: the job fails for good, without the retries it has left. */
export class UnrecoverableError extends Error {
  constructor(message) {
    super(message);
    this.name = 'UnrecoverableError';
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One leased job, as the handler sees it. */
class Job {
  constructor(worker, raw) {
    this.worker = worker;
    this.queueName = worker.name;
    this.id = raw.id;
    this.type = raw.type;
    this.name = raw.type; // BullMQ's name for the type
    this.payload = raw.payload;
    this.data = raw.payload; // BullMQ's name for the payload
    this.attempt = raw.attempt;
    this.attemptsMade = raw.attempt - 1;
    this.leaseToken = raw.lease_token;
    this.leaseExpiresAt = raw.lease_expires_at;
    this.controller = new AbortController();
    /** Aborted when the lease is lost (the job may run elsewhere now): stop, nothing will be reported. */
    this.signal = this.controller.signal;
    this.lost = false;
  }

  /** Extends the lease by `leaseMs` now (the worker also does it every leaseMs / 3). */
  async extendLease(leaseMs = this.worker.leaseMs) {
    const r = await this.worker.queue.extend(this.id, this.leaseToken, leaseMs);
    this.leaseExpiresAt = r.lease_expires_at;
    return r;
  }
}

/**
 * new Worker(queue, async (job) => result, { concurrency, client | url, token, leaseMs, … })
 * Leases only for free slots (one long poll at a time), extends the leases of running jobs,
 * completes (in batches) or fails them, and close() lets running jobs finish.
 */
export class Worker extends EventEmitter {
  constructor(name, handler, options = {}) {
    super();
    if (typeof handler !== 'function') throw new TypeError('sessiond Worker: the handler must be a function');
    this.name = name;
    this.handler = handler;
    this.ownClient = !options.client;
    this.client = options.client ?? new SessiondClient(options);
    this.queue = this.client.queue(name);
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.leaseMs = options.leaseMs ?? 30_000;
    this.extendEveryMs = options.extendEveryMs ?? Math.max(250, Math.floor(this.leaseMs / 3));
    this.waitMs = Math.min(30_000, options.waitMs ?? 20_000);
    this.types = options.types;
    this.errorBackoffMs = options.errorBackoffMs ?? 1_000;
    this.running = new Map(); // id -> promise of the job's whole run, report included
    this.closing = false;
    this.closed = null;
    this.pollAbort = null;
    this.slotFreed = null;
    this.reports = [];
    this.reporting = null;
    if (options.autorun !== false) this.run();
  }

  /** Starts leasing (done by the constructor unless `autorun: false`). */
  run() {
    if (!this.loop) this.loop = this.leaseLoop();
    return this.loop;
  }

  isRunning() {
    return !!this.loop && !this.closing;
  }

  async leaseLoop() {
    let failures = 0;
    while (!this.closing) {
      const free = this.concurrency - this.running.size;
      if (free <= 0) {
        await new Promise((r) => (this.slotFreed = r));
        continue;
      }
      this.pollAbort = new AbortController();
      let jobs;
      try {
        jobs = await this.queue.lease({
          max: free,
          waitMs: this.waitMs,
          leaseMs: this.leaseMs,
          types: this.types,
          signal: this.pollAbort.signal,
        });
        failures = 0;
      } catch (err) {
        if (this.closing) break;
        this.report('error', err);
        failures++;
        await sleep(Math.min(this.errorBackoffMs * 2 ** Math.min(failures - 1, 3), 10_000) * (0.5 + Math.random() / 2));
        continue;
      } finally {
        this.pollAbort = null;
      }
      if (jobs.length === 0) this.emit('drained');
      for (const raw of jobs) this.start(new Job(this, raw));
    }
  }

  start(job) {
    const done = this.process(job).finally(() => {
      this.running.delete(job.id);
      const r = this.slotFreed;
      this.slotFreed = null;
      r?.();
    });
    this.running.set(job.id, done);
  }

  async process(job) {
    const ticker = setInterval(() => this.keepLease(job), this.extendEveryMs);
    this.emit('active', job);
    let result;
    let failure;
    try {
      result = await this.handler(job);
    } catch (err) {
      failure = err ?? new Error('handler threw');
    } finally {
      clearInterval(ticker);
    }
    if (job.lost) return;
    try {
      if (failure === undefined) {
        await this.completeLater(job, result);
        if (!job.lost) this.emit('completed', job, result);
      } else {
        const message = failure instanceof Error ? failure.message || failure.name : String(failure);
        await this.queue.fail(job.id, job.leaseToken, message.slice(0, 4096), {
          retry: failure instanceof UnrecoverableError ? false : undefined,
        });
        this.emit('failed', job, failure);
      }
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError) this.lose(job);
      else this.report('error', err);
    }
  }

  async keepLease(job) {
    if (job.lost) return;
    try {
      await job.extendLease(this.leaseMs);
    } catch (err) {
      if (err instanceof ConflictError || err instanceof NotFoundError) this.lose(job);
      else this.report('error', err); // the next tick tries again before the lease runs out
    }
  }

  lose(job) {
    if (job.lost) return;
    job.lost = true;
    job.controller.abort(new Error(`lease of job ${job.id} lost`));
    this.emit('lost', job);
  }

  /** Completions go out in batches: one jobs:complete in flight, the next gathered meanwhile. */
  completeLater(job, result) {
    return new Promise((resolve, reject) => {
      this.reports.push({ job, result, resolve, reject });
      if (!this.reporting) this.reporting = this.flush();
    });
  }

  async flush() {
    await null; // let completions of the same tick join the batch
    while (this.reports.length > 0) {
      const batch = this.reports.splice(0, 1000);
      try {
        const r = await this.queue.completeMany(
          batch.map(({ job, result }) => ({ id: job.id, leaseToken: job.leaseToken, result })),
        );
        const lost = new Set(r.lost ?? []);
        for (const b of batch) {
          if (lost.has(b.job.id)) this.lose(b.job);
          b.resolve();
        }
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    this.reporting = null;
  }

  report(event, err) {
    if (this.listenerCount(event) > 0) this.emit(event, err);
    else process.emitWarning(`sessiond Worker(${this.name}): ${err?.message ?? err}`);
  }

  /**
   * Stops leasing and resolves once the running jobs have finished and been reported. A long
   * poll in flight is cut; a job the node leased in that instant runs again after its lease.
   */
  close() {
    if (this.closed) return this.closed;
    this.closing = true;
    this.pollAbort?.abort(new Error('worker closing'));
    this.slotFreed?.();
    this.closed = (async () => {
      await this.loop?.catch(() => {});
      await Promise.allSettled([...this.running.values()]);
      if (this.ownClient) this.client.close();
      this.emit('closed');
    })();
    return this.closed;
  }
}
