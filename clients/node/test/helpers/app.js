// An Express app with express-session on a given store, for the store tests, and a tiny cookie
// jar for fetch.
import express from 'express';
import session from 'express-session';
import { once } from 'node:events';

/** Resolves each waiter once `n` have arrived. */
export function barrier(n) {
  let arrived = 0;
  let open;
  const opened = new Promise((r) => (open = r));
  return {
    arrive() {
      if (++arrived >= n) open();
      return opened;
    },
  };
}

/** Starts the app on a free port: `{url, server, hooks}`; `hooks` lets a test hold requests. */
export async function startApp(store) {
  const hooks = { beforeSet: async () => {} };
  const app = express();
  app.use(
    session({
      store,
      secret: 'test-secret',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3_600_000 },
    }),
  );
  app.post('/login/:user', (req, res, next) => {
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.userId = req.params.user;
      res.json({ sid: req.sessionID });
    });
  });
  app.post('/set/:field/:value', async (req, res) => {
    await hooks.beforeSet(req);
    req.session[req.params.field] = req.params.value;
    res.json({ ok: true });
  });
  app.post('/become/:user', (req, res) => {
    req.session.userId = req.params.user; // a login without regenerate
    res.json({ ok: true });
  });
  app.post('/unset/:field', (req, res) => {
    delete req.session[req.params.field];
    res.json({ ok: true });
  });
  app.get('/session', (req, res) => res.json({ sid: req.sessionID, session: req.session }));
  app.post('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.json({ ok: true }))));
  app.use((err, req, res, _next) => res.status(500).json({ error: String(err?.message ?? err) }));
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hooks,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** fetch with one cookie jar (enough for one session cookie). */
export function browser(base) {
  let cookie = '';
  return {
    async req(method, path) {
      const r = await fetch(base + path, { method, headers: cookie ? { cookie } : {} });
      const set = r.headers.get('set-cookie');
      if (set) cookie = set.split(';')[0];
      return { status: r.status, body: await r.json() };
    },
    sid() {
      return decodeURIComponent(cookie.split('=')[1] ?? '').slice(2).split('.')[0];
    },
    cookie: () => cookie,
    setCookie(c) {
      cookie = c;
    },
  };
}
