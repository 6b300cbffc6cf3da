// SessiondStore: an express-session store on sessiond. Where connect-redis writes the whole
// session back, this store sends a merge patch of what the request changed against what it
// loaded, so two requests that change different fields at once both keep their change, and a
// request still running after a logout cannot bring the session back (a PATCH never creates).
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { SessiondClient } from './client.js';
import { GoneError, NotFoundError, PreconditionFailedError } from './errors.js';
import { applyMergePatch, diffMergePatch } from './merge.js';

const defaultMaxTtlS = 604_800; // the node's default sessions.max_lifetime_s, which bounds ttl_s

// express-session is a peer of this store, not a dependency of the package: it is looked up
// when a store first needs its Session and Cookie (createSession), from this package's place,
// then from the application's working directory. Pass `session` (the module) to choose.
function findExpressSession() {
  for (const from of [import.meta.url, `${process.cwd()}/`]) {
    try {
      return createRequire(from)('express-session');
    } catch {
      // try the next place
    }
  }
  throw new Error('SessiondStore needs express-session: install it, or pass its module as the `session` option');
}

function toCallback(promise, cb) {
  if (typeof cb !== 'function') return promise;
  promise.then((v) => cb(null, v), (err) => cb(err));
  return undefined;
}

export class SessiondStore extends EventEmitter {
  constructor(options = {}) {
    super();
    this.ownClient = !options.client;
    this.client = options.client ?? new SessiondClient(options);
    this.prefix = options.prefix ?? '';
    this.userIdOf = options.userId ?? ((sess) => sess.userId);
    this.defaultTtlS = options.ttlS ?? 86_400;
    this.maxTtlS = options.maxTtlS ?? defaultMaxTtlS;
    this.touchSkipMs = options.touchSkipMs ?? 1_000;
    this.sessionModule = options.session;
    this.loaded = new WeakMap(); // object handed to express-session by get() -> what was loaded
    this.meta = new WeakMap(); // req.session -> { version, userId, snapshot }
  }

  id(sid) {
    return this.prefix + sid;
  }

  expressSession() {
    if (!this.sessionModule) this.sessionModule = findExpressSession();
    return this.sessionModule;
  }

  ttlOf(data) {
    const ms = data.cookie?.originalMaxAge;
    const s = typeof ms === 'number' && ms > 0 ? Math.ceil(ms / 1000) : this.defaultTtlS;
    return Math.max(1, Math.min(s, this.maxTtlS));
  }

  userOf(sid, data) {
    const u = this.userIdOf(data);
    return u === undefined || u === null || u === '' ? `anon.${sid}` : String(u);
  }

  // --- the store interface ---------------------------------------------------------------

  get(sid, cb) {
    return toCallback(this.load_(sid), cb);
  }

  async load_(sid) {
    let doc;
    try {
      doc = await this.client.sessions.get(this.id(sid));
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
    const snapshot = JSON.stringify(doc.data);
    const sess = JSON.parse(snapshot);
    this.loaded.set(sess, { version: doc.version, userId: doc.user_id, snapshot, loadedAt: Date.now() });
    return sess;
  }

  /** express-session builds req.session from what get() gave: the loaded state goes with it. */
  createSession(req, sess) {
    const meta = this.loaded.get(sess);
    const session = this.expressSession().Store.prototype.createSession.call(this, req, sess);
    if (meta) this.meta.set(session, meta);
    return session;
  }

  regenerate(req, fn) {
    return this.expressSession().Store.prototype.regenerate.call(this, req, fn);
  }

  load(sid, fn) {
    return this.expressSession().Store.prototype.load.call(this, sid, fn);
  }

  set(sid, session, cb) {
    return toCallback(this.save_(sid, session), cb);
  }

  async save_(sid, session) {
    const data = JSON.parse(JSON.stringify(session));
    const meta = this.meta.get(session);
    const userId = this.userOf(sid, data);
    let doc;
    try {
      if (!meta) doc = await this.create(sid, userId, data);
      else if (meta.userId !== userId) doc = await this.rebase(sid, userId, data, meta);
      else {
        const patch = diffMergePatch(JSON.parse(meta.snapshot), data);
        if (patch === null) return this.touch_(sid, session);
        // No If-Match: the node merges on the newest version (and retries its compare-and-set),
        // so a concurrent change of another field is kept. A revoked or expired session is 404.
        doc = await this.patchNewest(sid, patch);
      }
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof GoneError) {
        this.emit('fenced', sid, err);
        return undefined;
      }
      throw err;
    }
    // What this request believes is stored: the next save of this object diffs against it.
    this.meta.set(session, { version: doc.version, userId, snapshot: JSON.stringify(data) });
    return undefined;
  }

  /** A PATCH on the newest version; the node retries its compare-and-set 8 times, then 412. */
  async patchNewest(sid, patch) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.client.sessions.patch(this.id(sid), patch);
      } catch (err) {
        if (!(err instanceof PreconditionFailedError) || attempt >= 2) throw err;
      }
    }
  }

  async create(sid, userId, data) {
    try {
      return await this.client.sessions.put(
        this.id(sid),
        { userId, data, ttlS: this.ttlOf(data) },
        { ifNoneMatch: '*' },
      );
    } catch (err) {
      // Created meanwhile under the same id: merge this request's fields into it.
      if (err instanceof PreconditionFailedError) return this.client.sessions.patch(this.id(sid), data);
      throw err;
    }
  }

  /** The user changed (a login without regenerate): a PUT, rebased on the newest version. */
  async rebase(sid, userId, data, meta) {
    const patch = diffMergePatch(JSON.parse(meta.snapshot), data) ?? {};
    for (let attempt = 0; ; attempt++) {
      const cur = await this.client.sessions.get(this.id(sid));
      const merged = applyMergePatch(cur.data, patch);
      try {
        return await this.client.sessions.put(
          this.id(sid),
          { userId, data: merged, ttlS: this.ttlOf(data) },
          { ifMatch: cur.version },
        );
      } catch (err) {
        if (!(err instanceof PreconditionFailedError) || attempt >= 4) throw err;
      }
    }
  }

  destroy(sid, cb) {
    const p = this.client.sessions.delete(this.id(sid)).catch((err) => {
      if (!(err instanceof NotFoundError)) throw err;
    });
    return toCallback(p, cb);
  }

  /** A read with If-None-Match: the node slides the idle TTL, at most once per touch interval. */
  touch(sid, session, cb) {
    return toCallback(this.touch_(sid, session), cb);
  }

  async touch_(sid, session) {
    const meta = session && this.meta.get(session);
    // The GET that loaded this session slid its TTL already (the node slides on reads): a touch
    // at the end of a short request would only repeat it.
    if (meta?.loadedAt !== undefined && Date.now() - meta.loadedAt < this.touchSkipMs) return undefined;
    try {
      await this.client.sessions.get(this.id(sid), meta ? { ifNoneMatch: meta.version } : {});
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    return undefined;
  }

  /** Closes the client if the store made it. */
  close() {
    if (this.ownClient) this.client.close();
  }
}
