// TypeScript declarations of @sessiond/client (hand-written; the package is plain ESM).
import { EventEmitter } from 'node:events';
import type { Agent } from 'node:http';

export interface ClientOptions {
  /** A node URL, a comma-separated list, or an array: tried round robin, failing over. Default SESSIOND_URL or http://127.0.0.1:8080. */
  url?: string | string[];
  /** Bearer token (API token) when the node has auth on. Default SESSIOND_TOKEN. */
  token?: string;
  /** Time allowed for one HTTP exchange, in ms (a lease long poll adds its wait). Default 10000. */
  timeoutMs?: number;
  /** Extra attempts after a 503 or 429 at most. Default 2. */
  retries?: number;
  /** A call never waits past this in total for Retry-After, in ms. Default 3000. */
  retryBudgetMs?: number;
  /** Keep-alive connections per node at most. Default 64. */
  maxSockets?: number;
  /** Your own http.Agent instead (maxSockets is then yours). */
  agent?: Agent;
  /** A node that refused a connection is tried last for this long, in ms. Default 1000. */
  nodeDownMs?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export type Version = number | '*';

export interface Session<D = Record<string, unknown>> {
  id: string;
  user_id: string;
  data: D;
  version: number;
  status: string;
  created_at: string;
  last_activity_at: string;
  expires_at: string;
  ttl_s: number;
}

export interface NotModified {
  notModified: true;
  version: number;
}

export class Sessions {
  get<D = Record<string, unknown>>(id: string, opts?: CallOptions & { ifNoneMatch?: number }): Promise<Session<D> | NotModified>;
  put<D = Record<string, unknown>>(
    id: string,
    body: { userId: string; data?: D; ttlS?: number },
    opts?: CallOptions & { ifMatch?: Version; ifNoneMatch?: '*' },
  ): Promise<Session<D> & { created: boolean }>;
  patch<D = Record<string, unknown>>(id: string, patch: Record<string, unknown>, opts?: CallOptions & { version?: number; ifMatch?: Version }): Promise<Session<D>>;
  delete(id: string, opts?: CallOptions & { version?: number; ifMatch?: Version }): Promise<void>;
  listForUser(userId: string, opts?: CallOptions): Promise<Session[]>;
  revokeUser(userId: string, opts?: CallOptions): Promise<{ revoked: number; postgres_checked?: boolean }>;
}

export interface JobOptions {
  delayMs?: number;
  priority?: number;
  maxAttempts?: number;
  dedupKey?: string;
  leaseMs?: number;
}

export interface LeasedJob {
  id: string;
  type: string;
  payload: any;
  attempt: number;
  lease_token: string;
  lease_expires_at: string;
}

export interface JobInfo {
  id: string;
  state: 'waiting' | 'delayed' | 'active' | 'completed' | 'failed';
  attempts: number;
  max_attempts: number;
  priority: number;
  stalls: number;
  payload: any;
  result?: any;
  error?: string;
  history: { attempt: number; started_at: string; ended_at: string; outcome: 'failed' | 'stalled'; error?: string }[];
  [field: string]: unknown;
}

export class Queue {
  readonly name: string;
  enqueue(type: string, payload?: any, opts?: JobOptions & CallOptions): Promise<{ id: string; state: string; deduplicated?: true }>;
  add(type: string, payload?: any, opts?: JobOptions & CallOptions): Promise<{ id: string; state: string; deduplicated?: true }>;
  enqueueBatch(jobs: ({ type: string; payload?: any } & JobOptions)[], opts?: CallOptions): Promise<{ ids: string[]; states: string[] }>;
  getJob(id: string, opts?: CallOptions): Promise<JobInfo>;
  stats(opts?: CallOptions): Promise<Record<string, any>>;
  retryJob(id: string, opts?: CallOptions): Promise<void>;
  removeJob(id: string, opts?: CallOptions): Promise<void>;
  pause(opts?: CallOptions): Promise<void>;
  resume(opts?: CallOptions): Promise<void>;
  lease(opts?: { max?: number; waitMs?: number; leaseMs?: number; types?: string[]; signal?: AbortSignal }): Promise<LeasedJob[]>;
  complete(id: string, leaseToken: string, result?: any, opts?: CallOptions): Promise<void>;
  completeMany(jobs: { id: string; leaseToken: string; result?: any }[], opts?: CallOptions): Promise<{ completed: string[]; lost: string[] }>;
  fail(id: string, leaseToken: string, error: string, opts?: CallOptions & { retry?: boolean }): Promise<void>;
  extend(id: string, leaseToken: string, leaseMs: number, opts?: CallOptions): Promise<{ lease_expires_at: string; lease_ms: number }>;
}

export interface CacheEntry<V = unknown> {
  value: V;
  cacheStatus?: string;
  age?: number;
  etag?: string;
}

export class Cache {
  get<V = unknown>(ns: string, key: string, opts?: CallOptions): Promise<V | undefined>;
  getEntry<V = unknown>(ns: string, key: string, opts?: CallOptions): Promise<CacheEntry<V> | undefined>;
  set(ns: string, key: string, value: unknown, opts?: CallOptions & { ttlS?: number }): Promise<void>;
  invalidate(ns: string, key: string, opts?: CallOptions): Promise<void>;
  invalidatePrefix(ns: string, prefix: string, opts?: CallOptions): Promise<number>;
  invalidateAll(ns: string, opts?: CallOptions): Promise<number>;
  warm(ns: string, opts?: CallOptions): Promise<number>;
  stats(opts?: CallOptions): Promise<Record<string, any>>;
}

export class SessiondClient {
  constructor(options?: ClientOptions);
  readonly sessions: Sessions;
  readonly cache: Cache;
  queue(name: string): Queue;
  listQueues(opts?: CallOptions): Promise<Record<string, any>[]>;
  close(): void;
}

export class Job<P = any> {
  readonly id: string;
  readonly queueName: string;
  readonly type: string;
  readonly name: string;
  readonly payload: P;
  readonly data: P;
  readonly attempt: number;
  readonly attemptsMade: number;
  readonly leaseToken: string;
  leaseExpiresAt: string;
  /** Aborted when the lease is lost: the job may run elsewhere, its outcome will not be reported. */
  readonly signal: AbortSignal;
  extendLease(leaseMs?: number): Promise<{ lease_expires_at: string; lease_ms: number }>;
}

export interface WorkerOptions extends ClientOptions {
  /** Share a client (its connections) instead of making one from url/token. */
  client?: SessiondClient;
  /** Jobs run at once at most. Default 1. */
  concurrency?: number;
  /** Lease length asked for, in ms (1000..3600000). Default 30000. */
  leaseMs?: number;
  /** Running jobs' leases are extended this often, in ms. Default leaseMs / 3. */
  extendEveryMs?: number;
  /** Long-poll wait of a lease request, in ms (at most 30000). Default 20000. */
  waitMs?: number;
  /** Lease only jobs of these types. */
  types?: string[];
  /** First pause after a failed lease request, doubled up to 8x, in ms. Default 1000. */
  errorBackoffMs?: number;
  /** Start leasing in the constructor. Default true. */
  autorun?: boolean;
}

export class Worker<P = any, R = any> extends EventEmitter {
  constructor(queue: string, handler: (job: Job<P>) => Promise<R> | R, options?: WorkerOptions);
  readonly name: string;
  run(): Promise<void>;
  isRunning(): boolean;
  close(): Promise<void>;
  on(event: 'active', listener: (job: Job<P>) => void): this;
  on(event: 'completed', listener: (job: Job<P>, result: R) => void): this;
  on(event: 'failed', listener: (job: Job<P>, error: unknown) => void): this;
  on(event: 'lost', listener: (job: Job<P>) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'drained' | 'closed', listener: () => void): this;
}

export class UnrecoverableError extends Error {}

export interface StoreOptions extends ClientOptions {
  client?: SessiondClient;
  /** Prefix of the session ids in sessiond (the cookie's sid follows it). Default ''. */
  prefix?: string;
  /** The user a session belongs to (listForUser, revokeUser). Default sess.userId; none: `anon.<sid>`. */
  userId?: (session: any) => string | undefined | null;
  /** Idle TTL of a session whose cookie has no maxAge, in s. Default 86400. */
  ttlS?: number;
  /** Largest ttl_s sent (the node's sessions.max_lifetime_s). Default 604800. */
  maxTtlS?: number;
  /** touch() does nothing for a session loaded less than this long ago (its load slid the TTL), in ms. Default 1000. */
  touchSkipMs?: number;
  /** The express-session module, when it cannot be found from here or the working directory. */
  session?: any;
}

type Callback<T = void> = (err: any, value?: T) => void;

/** An express-session store (get, set, destroy, touch; no all, length, clear: see docs). */
export class SessiondStore extends EventEmitter {
  constructor(options?: StoreOptions);
  readonly client: SessiondClient;
  get(sid: string, cb: Callback<any>): void;
  set(sid: string, session: any, cb?: Callback): void;
  destroy(sid: string, cb?: Callback): void;
  touch(sid: string, session: any, cb?: Callback): void;
  createSession(req: any, sess: any): any;
  regenerate(req: any, fn: Callback): void;
  load(sid: string, fn: Callback<any>): void;
  close(): void;
  on(event: 'fenced', listener: (sid: string, error: Error) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export function diffMergePatch(before: object, after: object): Record<string, unknown> | null;
export function applyMergePatch<T = unknown>(target: unknown, patch: unknown): T;

export interface ProblemFields {
  status: number;
  type: string;
  title: string;
  detail: string;
  retryAfter?: number;
  body?: Record<string, unknown>;
}

export class SessiondError extends Error implements ProblemFields {
  status: number;
  type: string;
  title: string;
  detail: string;
  retryAfter?: number;
  body?: Record<string, unknown>;
}
export class BadRequestError extends SessiondError {}
export class UnauthorizedError extends SessiondError {}
export class ForbiddenError extends SessiondError {}
export class NotFoundError extends SessiondError {}
export class ConflictError extends SessiondError {}
export class GoneError extends SessiondError {}
export class PreconditionFailedError extends SessiondError {}
export class PayloadTooLargeError extends SessiondError {}
export class UnsupportedMediaTypeError extends SessiondError {}
export class UnprocessableError extends SessiondError {}
export class TooManyRequestsError extends SessiondError {}
export class UnavailableError extends SessiondError {}
export class TimeoutError extends SessiondError {}
export class ConnectionError extends SessiondError {}
export function parseRetryAfter(value: string | undefined | null): number | undefined;
export function errorFromResponse(status: number, headers: Record<string, any>, text: string): SessiondError;
