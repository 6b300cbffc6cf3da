// An Express app on sessiond through @sessiond/client: login, a counter, logout, and logout
// everywhere (every session of the user, on every device).
//   cd clients/node && npm ci && SESSIOND_URL=http://127.0.0.1:8080 node examples/express/app.js
import express from 'express';
import session from 'express-session';
import { SessiondClient, SessiondStore } from '@sessiond/client';

const client = new SessiondClient({
  url: process.env.SESSIOND_URL ?? 'http://127.0.0.1:8080', // or a list: 'http://a:8080,http://b:8080'
  token: process.env.SESSIOND_TOKEN, // when the node has auth.api_tokens_file
});

const app = express();
app.use(
  session({
    store: new SessiondStore({ client }), // was: new RedisStore({ client: redis })
    secret: process.env.SESSION_SECRET ?? 'change me',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 60 * 60 * 1000 },
  }),
);

const who = (req) => req.session.userId ?? null;

app.post('/login', (req, res, next) => {
  const user = String(req.query.user ?? '');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(user)) return res.status(400).json({ error: 'user=<name> please' });
  // A new session id at login (session fixation); the store puts the user on the session, so
  // listForUser and revokeUser find it.
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.userId = user;
    req.session.count = 0;
    res.json({ user });
  });
});

app.post('/count', (req, res) => {
  if (!who(req)) return res.status(401).json({ error: 'log in first' });
  req.session.count = (req.session.count ?? 0) + 1; // saved as a merge patch of this field only
  res.json({ user: who(req), count: req.session.count });
});

app.get('/', (req, res) => res.json({ user: who(req), count: req.session.count ?? null }));

app.get('/sessions', async (req, res, next) => {
  if (!who(req)) return res.status(401).json({ error: 'log in first' });
  try {
    const sessions = await client.sessions.listForUser(who(req));
    res.json(sessions.map((s) => ({ id: s.id, count: s.data.count, expires_at: s.expires_at })));
  } catch (err) {
    next(err);
  }
});

app.post('/logout', (req, res, next) => req.session.destroy((err) => (err ? next(err) : res.json({ ok: true }))));

app.post('/logout-everywhere', async (req, res, next) => {
  if (!who(req)) return res.status(401).json({ error: 'log in first' });
  try {
    res.json(await client.sessions.revokeUser(who(req))); // {"revoked": n}
  } catch (err) {
    next(err);
  }
});

const port = Number(process.env.PORT ?? 3000);
const server = app.listen(port, '127.0.0.1', () =>
  console.log(`example listening on http://127.0.0.1:${server.address().port}`),
);
