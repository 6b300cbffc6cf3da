// The bench's Express app: express-session on the store named by STORE (connect-redis or
// sessiond), listening on PORT (0: any; the port is printed). Routes: POST /login (a new
// session with a 512-byte profile), GET /r (reads the session: unchanged, so the store's touch
// runs), POST /w (changes one field: the store's set runs).
import express from 'express';
import session from 'express-session';
import RedisStore from 'connect-redis';
import { createClient } from 'redis';
import { SessiondClient, SessiondStore } from '../../clients/node/src/index.js';

const kind = process.env.STORE;
let store;
if (kind === 'connect-redis') {
  const redis = createClient({ url: process.env.REDIS_URL });
  await redis.connect();
  store = new RedisStore({ client: redis, prefix: process.env.PREFIX ?? 'bench-node:' });
} else if (kind === 'sessiond') {
  const client = new SessiondClient({ url: process.env.SESSIOND_URL, maxSockets: Number(process.env.MAX_SOCKETS ?? 64) });
  store = new SessiondStore({ client, session });
} else {
  throw new Error('STORE must be connect-redis or sessiond');
}

const profile = 'x'.repeat(512);
let users = 0;
const app = express();
app.use(session({ store, secret: 'bench', resave: false, saveUninitialized: false, cookie: { maxAge: 3_600_000 } }));
app.post('/login', (req, res, next) =>
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.userId = `u${++users}`;
    req.session.profile = profile;
    req.session.count = 0;
    res.json({ ok: true });
  }),
);
app.get('/r', (req, res) => res.json({ count: req.session.count ?? null }));
app.post('/w', (req, res) => {
  req.session.count = (req.session.count ?? 0) + 1;
  res.json({ count: req.session.count });
});
const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () =>
  console.log(`listening ${server.address().port}`),
);
