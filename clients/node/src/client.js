// SessiondClient: sessions, queues and the cache of a sessiond node over its HTTP API v1
// (docs/api.md, docs/queue.md, docs/cache.md).
import { errorFromResponse } from './errors.js';
import { Transport } from './transport.js';

// Ids are checked by the node ([A-Za-z0-9._:@-]); encoding keeps a stray '/' or '?' from
// reaching another route while leaving ':' and '@' as the node expects them.
const seg = (s) => encodeURIComponent(String(s)).replace(/%3A/gi, ':').replace(/%40/g, '@');

function tag(v) {
  if (v === '*') return '*';
  if (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))) return `"${v}"`;
  throw new TypeError(`sessiond: a version precondition is "*" or a version number, not ${JSON.stringify(v)}`);
}

function versionOf(answer) {
  const etag = answer.headers.etag;
  const m = typeof etag === 'string' && /^"(\d+)"$/.exec(etag);
  return m ? Number(m[1]) : undefined;
}

function preconditions(opts) {
  const headers = {};
  if (opts.ifMatch !== undefined) headers['if-match'] = tag(opts.ifMatch);
  if (opts.ifNoneMatch !== undefined) headers['if-none-match'] = tag(opts.ifNoneMatch);
  return headers;
}

const call = (opts) => ({ signal: opts.signal, timeoutMs: opts.timeoutMs });

/** Sessions: /v1/sessions and /v1/users. */
export class Sessions {
  constructor(transport) {
    this.t = transport;
  }

  /** The session, or `{notModified: true, version}` when `ifNoneMatch` is its version. */
  async get(id, opts = {}) {
    const a = await this.t.request('GET', `/v1/sessions/${seg(id)}`, {
      ...call(opts),
      headers: preconditions({ ifNoneMatch: opts.ifNoneMatch }),
    });
    if (a.status === 304) return { notModified: true, version: versionOf(a) ?? Number(opts.ifNoneMatch) };
    return a.json();
  }

  /** Creates or replaces a session; `created` is true on 201. */
  async put(id, { userId, data = {}, ttlS } = {}, opts = {}) {
    const body = { user_id: userId, data };
    if (ttlS !== undefined) body.ttl_s = ttlS;
    const a = await this.t.request('PUT', `/v1/sessions/${seg(id)}`, {
      ...call(opts),
      body,
      headers: preconditions(opts),
    });
    return { ...a.json(), created: a.status === 201 };
  }

  /**
   * Merge-patches a session's data (RFC 7396). With `version` (or `ifMatch`) only if the session
   * is at that version (else PreconditionFailedError); without, the node merges on the newest
   * version. Never creates a session: a missing or revoked one is a NotFoundError.
   */
  async patch(id, patch, opts = {}) {
    const a = await this.t.request('PATCH', `/v1/sessions/${seg(id)}`, {
      ...call(opts),
      body: patch,
      contentType: 'application/merge-patch+json',
      headers: preconditions({ ifMatch: opts.version ?? opts.ifMatch }),
    });
    return a.json();
  }

  /** Revokes a session (a tombstone keeps the id refused). */
  async delete(id, opts = {}) {
    await this.t.request('DELETE', `/v1/sessions/${seg(id)}`, {
      ...call(opts),
      headers: preconditions({ ifMatch: opts.version ?? opts.ifMatch }),
    });
  }

  /** The user's live sessions, soonest expiry first (at most 1000). */
  async listForUser(userId, opts = {}) {
    const a = await this.t.request('GET', `/v1/users/${seg(userId)}/sessions`, call(opts));
    return a.json().sessions;
  }

  /** Revokes every live session of the user: `{revoked, postgres_checked?}`. */
  async revokeUser(userId, opts = {}) {
    const a = await this.t.request('DELETE', `/v1/users/${seg(userId)}/sessions`, call(opts));
    return a.json();
  }
}

const jobFields = {
  delayMs: 'delay_ms',
  priority: 'priority',
  maxAttempts: 'max_attempts',
  dedupKey: 'dedup_key',
  leaseMs: 'lease_ms',
};

function jobBody(type, payload, opts = {}) {
  const body = { type, payload: payload ?? {} };
  for (const [from, to] of Object.entries(jobFields)) if (opts[from] !== undefined) body[to] = opts[from];
  return body;
}

/** One queue: /v1/queues/{q}. */
export class Queue {
  constructor(transport, name) {
    this.t = transport;
    this.name = name;
    this.base = `/v1/queues/${seg(name)}`;
  }

  /** Enqueues a job: `{id, state, deduplicated?}`. */
  async enqueue(type, payload, opts = {}) {
    const a = await this.t.request('POST', `${this.base}/jobs`, { ...call(opts), body: jobBody(type, payload, opts) });
    return a.json();
  }

  /** BullMQ's spelling of enqueue. */
  add(type, payload, opts) {
    return this.enqueue(type, payload, opts);
  }

  /** Enqueues 1 to 1,000 jobs at once, all or nothing: `{ids, states}`. */
  async enqueueBatch(jobs, opts = {}) {
    const body = { jobs: jobs.map((j) => jobBody(j.type, j.payload, j)) };
    const a = await this.t.request('POST', `${this.base}/jobs:batch`, { ...call(opts), body });
    return a.json();
  }

  async getJob(id, opts = {}) {
    const a = await this.t.request('GET', `${this.base}/jobs/${seg(id)}`, call(opts));
    return a.json();
  }

  /** Counts per state, oldest waiting age, settings. */
  async stats(opts = {}) {
    return (await this.t.request('GET', this.base, call(opts))).json();
  }

  async retryJob(id, opts = {}) {
    await this.t.request('POST', `${this.base}/jobs/${seg(id)}/retry`, call(opts));
  }

  async removeJob(id, opts = {}) {
    await this.t.request('DELETE', `${this.base}/jobs/${seg(id)}`, call(opts));
  }

  async pause(opts = {}) {
    await this.t.request('POST', `${this.base}/pause`, call(opts));
  }

  async resume(opts = {}) {
    await this.t.request('POST', `${this.base}/resume`, call(opts));
  }

  // --- the lease API (what Worker runs on) ---------------------------------------------------

  /** Leases up to `max` jobs, waiting up to `waitMs` for the first one. */
  async lease({ max = 1, waitMs = 0, leaseMs, types, signal } = {}) {
    const body = { max, wait_ms: waitMs };
    if (leaseMs !== undefined) body.lease_ms = leaseMs;
    if (types !== undefined) body.types = types;
    const a = await this.t.request('POST', `${this.base}/lease`, {
      body,
      signal,
      timeoutMs: waitMs + this.t.timeoutMs,
      retries: 0,
    });
    return a.json().jobs;
  }

  async complete(id, leaseToken, result, opts = {}) {
    const body = { lease_token: leaseToken };
    if (result !== undefined) body.result = result;
    await this.t.request('POST', `${this.base}/jobs/${seg(id)}/complete`, { ...call(opts), body });
  }

  /** Completes many leased jobs in one call: `{completed: [ids], lost: [ids]}`. */
  async completeMany(jobs, opts = {}) {
    const body = {
      jobs: jobs.map(({ id, leaseToken, result }) =>
        result === undefined ? { id, lease_token: leaseToken } : { id, lease_token: leaseToken, result },
      ),
    };
    return (await this.t.request('POST', `${this.base}/jobs:complete`, { ...call(opts), body })).json();
  }

  async fail(id, leaseToken, error, { retry, ...opts } = {}) {
    const body = { lease_token: leaseToken, error: String(error ?? 'failed') };
    if (retry === false) body.retry = false;
    await this.t.request('POST', `${this.base}/jobs/${seg(id)}/fail`, { ...call(opts), body });
  }

  /** Extends a lease: `{lease_expires_at, lease_ms}`; ConflictError when the lease is lost. */
  async extend(id, leaseToken, leaseMs, opts = {}) {
    const body = { lease_token: leaseToken, lease_ms: leaseMs };
    return (await this.t.request('POST', `${this.base}/jobs/${seg(id)}/extend`, { ...call(opts), body })).json();
  }
}

/** The cache: /v1/cache/{ns}/{key}. */
export class Cache {
  constructor(transport) {
    this.t = transport;
  }

  /** A value read through the cache (loaded once per key when missing); undefined when none. */
  async get(ns, key, opts = {}) {
    return (await this.getEntry(ns, key, opts))?.value;
  }

  /** The value with its `cacheStatus`, `age` (s) and `etag`; undefined when none. */
  async getEntry(ns, key, opts = {}) {
    const a = await this.t.request('GET', `/v1/cache/${seg(ns)}/${seg(key)}`, { ...call(opts), accept: [404] });
    if (a.status === 404) {
      const err = errorFromResponse(404, a.headers, a.text);
      // A miss is an answer; an unknown namespace or route is a mistake.
      if (err.type !== 'urn:sessiond:problem:cache-miss') throw err;
      return undefined;
    }
    return {
      value: a.json(),
      cacheStatus: a.headers['cache-status'],
      age: a.headers.age === undefined ? undefined : Number(a.headers.age),
      etag: a.headers.etag,
    };
  }

  /** Sets a JSON value for `ttlS` (or the namespace's TTL); every node drops its old copy. */
  async set(ns, key, value, opts = {}) {
    const q = opts.ttlS !== undefined ? `?ttl_s=${opts.ttlS}` : '';
    await this.t.request('PUT', `/v1/cache/${seg(ns)}/${seg(key)}${q}`, { ...call(opts), body: JSON.stringify(value) });
  }

  /** Removes one key from Redis and every node's near cache. */
  async invalidate(ns, key, opts = {}) {
    await this.t.request('DELETE', `/v1/cache/${seg(ns)}/${seg(key)}`, call(opts));
  }

  /** Removes every key starting with `prefix`: the number removed. */
  async invalidatePrefix(ns, prefix, opts = {}) {
    const a = await this.t.request('POST', `/v1/cache/${seg(ns)}/invalidate`, { ...call(opts), body: { prefix } });
    return a.json().invalidated;
  }

  /** Removes every key of the namespace: the number removed. */
  async invalidateAll(ns, opts = {}) {
    const a = await this.t.request('POST', `/v1/cache/${seg(ns)}/invalidate`, { ...call(opts), body: { all: true } });
    return a.json().invalidated;
  }

  /** Runs the namespace's warm query now: the number of rows cached. */
  async warm(ns, opts = {}) {
    return (await this.t.request('POST', `/v1/cache/${seg(ns)}/warm`, call(opts))).json().warmed;
  }

  /** Hits, misses, hit ratio, loads… per namespace. */
  async stats(opts = {}) {
    return (await this.t.request('GET', '/v1/cache', call(opts))).json();
  }
}

/** The client of one sessiond deployment (one node URL or several). */
export class SessiondClient {
  constructor(options = {}) {
    this.transport = new Transport(options);
    this.sessions = new Sessions(this.transport);
    this.cache = new Cache(this.transport);
    this.queues = new Map();
  }

  /** The queue named `name` (the same object on every call). */
  queue(name) {
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = new Queue(this.transport, name)));
    return q;
  }

  /** Every queue with its counts. */
  async listQueues(opts = {}) {
    return (await this.transport.request('GET', '/v1/queues', call(opts))).json().queues;
  }

  /** Closes the keep-alive connections. */
  close() {
    this.transport.close();
  }
}
