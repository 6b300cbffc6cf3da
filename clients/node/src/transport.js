// HTTP transport to one or more sessiond nodes: keep-alive connections with a limit, round robin
// with failover, per-call timeout and AbortSignal, bounded retries on 503/429 with Retry-After.
//
// Built on node:http rather than the global fetch: Node 20's fetch (undici) takes its
// connection pool from a dispatcher that only the `undici` package exposes, so a connection
// limit would need a runtime dependency. node:http's Agent gives keep-alive and maxSockets with
// nothing but Node itself.
import http from 'node:http';
import https from 'node:https';
import {
  ConnectionError,
  SessiondError,
  TimeoutError,
  errorFromResponse,
} from './errors.js';

const defaults = {
  timeoutMs: 10_000,
  maxSockets: 64,
  retries: 2, // extra attempts after a 503/429 at most
  retryBudgetMs: 3_000, // waiting for Retry-After never makes a call last longer than this
  nodeDownMs: 1_000, // a node that refused a connection is tried last for this long
};

// Connection errors after which nothing reached the node, so any request may be sent again.
const notSentCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
const idempotentMethods = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'PATCH']); // a merge patch applied twice is applied once

function parseUrls(url) {
  const list = Array.isArray(url) ? url : String(url ?? '').split(',');
  const urls = list.map((u) => String(u).trim()).filter(Boolean).map((u) => new URL(u));
  if (urls.length === 0) throw new TypeError('sessiond: option `url` needs at least one node URL');
  for (const u of urls) {
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new TypeError(`sessiond: ${u.href} is not an http:// or https:// URL`);
  }
  return urls;
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** One answer: status, lower-cased headers and the body text. */
export class Answer {
  constructor(status, headers, text) {
    this.status = status;
    this.headers = headers;
    this.text = text;
  }
  json() {
    return this.text ? JSON.parse(this.text) : undefined;
  }
}

export class Transport {
  constructor(options = {}) {
    this.urls = parseUrls(options.url ?? options.urls ?? process.env.SESSIOND_URL ?? 'http://127.0.0.1:8080');
    this.token = options.token ?? process.env.SESSIOND_TOKEN ?? '';
    this.timeoutMs = options.timeoutMs ?? defaults.timeoutMs;
    this.retries = options.retries ?? defaults.retries;
    this.retryBudgetMs = options.retryBudgetMs ?? defaults.retryBudgetMs;
    this.nodeDownMs = options.nodeDownMs ?? defaults.nodeDownMs;
    const maxSockets = options.maxSockets ?? defaults.maxSockets;
    this.ownAgents = !options.agent;
    this.agents = options.agent
      ? { 'http:': options.agent, 'https:': options.agent }
      : {
          'http:': new http.Agent({ keepAlive: true, maxSockets }),
          'https:': new https.Agent({ keepAlive: true, maxSockets }),
        };
    this.next = 0;
    this.downUntil = new Map(); // url.href -> ms
    // Retry quota shared by every call of this client (gRPC's retry throttling): a retry costs a
    // token, a success gives a tenth back. While the node keeps answering 503 the quota runs
    // out and calls fail at once with the node's answer instead of piling on.
    this.retryTokens = 10;
  }

  close() {
    if (this.ownAgents) {
      this.agents['http:'].destroy();
      this.agents['https:'].destroy();
    }
  }

  /** Node URLs in the order this call tries them: round robin, nodes seen down last. */
  order() {
    const n = this.urls.length;
    const start = this.next++ % n;
    const now = Date.now();
    const up = [];
    const down = [];
    for (let i = 0; i < n; i++) {
      const u = this.urls[(start + i) % n];
      ((this.downUntil.get(u.href) ?? 0) > now ? down : up).push(u);
    }
    return up.concat(down);
  }

  /**
   * Sends one request; resolves with an Answer for 2xx/3xx (and for statuses in `accept`),
   * rejects with a typed SessiondError otherwise.
   */
  async request(method, path, opts = {}) {
    const started = Date.now();
    const budgetMs = opts.retryBudgetMs ?? this.retryBudgetMs;
    let retriesLeft = opts.retries ?? this.retries;
    for (;;) {
      const answer = await this.failover(method, path, opts);
      const { status } = answer;
      if (status < 400 || opts.accept?.includes(status)) {
        this.retryTokens = Math.min(10, this.retryTokens + 0.1);
        return answer;
      }
      const err = errorFromResponse(status, answer.headers, answer.text);
      if ((status === 503 || status === 429) && retriesLeft > 0 && this.retryTokens >= 1 && !isAuthLimit(err)) {
        const waitMs = Math.max(100, (err.retryAfter ?? 1) * 1000) * (1 + Math.random() * 0.25);
        if (Date.now() - started + waitMs <= budgetMs) {
          retriesLeft--;
          this.retryTokens -= 1;
          await sleep(waitMs, opts.signal);
          continue;
        }
      }
      throw err;
    }
  }

  /** Tries the nodes in turn while the failure means the request may be sent again. */
  async failover(method, path, opts) {
    const nodes = this.order();
    let last;
    for (const url of nodes) {
      try {
        const answer = await this.once(url, method, path, opts);
        this.downUntil.delete(url.href);
        return answer;
      } catch (err) {
        if (!(err instanceof ConnectionError)) throw err;
        last = err;
        if (err.notSent) this.downUntil.set(url.href, Date.now() + this.nodeDownMs);
        if (!(err.notSent || idempotentMethods.has(method))) throw err;
      }
    }
    throw last;
  }

  /** One HTTP exchange with one node. */
  once(url, method, path, opts) {
    const headers = { accept: 'application/json, application/problem+json', ...opts.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body;
    if (opts.body !== undefined) {
      body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const base = url.pathname.replace(/\/$/, '');
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(opts.signal.reason);
      let settled = false;
      const finish = (fn, v) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        fn(v);
      };
      const req = lib.request(
        {
          protocol: url.protocol,
          hostname: url.hostname,
          port: url.port,
          method,
          path: base + path,
          headers,
          agent: this.agents[url.protocol],
        },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () =>
            finish(resolve, new Answer(res.statusCode, res.headers, Buffer.concat(chunks).toString('utf8'))),
          );
          res.on('error', (e) => finish(reject, connectionError(url, e, false)));
        },
      );
      const timer = setTimeout(() => {
        const err = new TimeoutError(`sessiond: ${method} ${path} took longer than ${timeoutMs} ms (${url.host})`);
        finish(reject, err);
        req.destroy(err);
      }, timeoutMs);
      const onAbort = () => {
        finish(reject, opts.signal.reason);
        req.destroy();
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => {
        // A kept-alive socket the node had closed: nothing was read, so resending is safe.
        const notSent = notSentCodes.has(e.code) || (req.reusedSocket && e.code === 'ECONNRESET');
        finish(reject, connectionError(url, e, notSent));
      });
      req.end(body);
    });
  }
}

function isAuthLimit(err) {
  return err.status === 429 && err.type.endsWith('too-many-auth-failures');
}

function connectionError(url, cause, notSent) {
  if (cause instanceof SessiondError) return cause;
  const err = new ConnectionError(`sessiond: ${url.host}: ${cause.code ?? cause.message}`, { cause });
  err.notSent = notSent;
  return err;
}
