// Starts the built sessiond binary on a free port for a test file, with its own Redis key prefix
// and PostgreSQL schema, and stops it at the end. Needs SESSIOND_BIN (ctest sets it to the built
// binary) and REDIS_URL / POSTGRES_URL (scripts/test, or scripts/services env).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run through ctest (scripts/test), or export it (scripts/services env)`);
  return v;
}

const baseConfig = (schema) => `
[postgres]
schema = "${schema}"
[retention]
enabled = false
[queues.defaults]
backoff_ms = 10
max_backoff_ms = 10
max_attempts = 3
[cache.namespaces.plain]
ttl_s = 60
[cache.namespaces.users]
ttl_s = 60
loader = "SELECT json_build_object('key', $1::text, 'loaded', true) WHERE $1::text NOT LIKE 'missing:%'"
`;

export const unique = (what) => `${what}${process.pid}x${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;

/** A running sessiond: `url`, `prefix`, `stop()`. `extraEnv` adds SESSIOND_* overrides. */
export async function startSessiond({ extraEnv = {}, config = '' } = {}) {
  const bin = env('SESSIOND_BIN');
  const dir = mkdtempSync(join(tmpdir(), 'sessiond-node-'));
  const schema = unique('node_client_').toLowerCase();
  const prefix = `${unique('nodetest')}:`;
  const configPath = join(dir, 'sessiond.toml');
  writeFileSync(configPath, baseConfig(schema) + config);
  const child = spawn(bin, ['--config', configPath], {
    env: {
      PATH: process.env.PATH,
      SESSIOND_REDIS_URL: env('REDIS_URL'),
      SESSIOND_POSTGRES_URL: process.env.POSTGRES_URL ?? '',
      SESSIOND_HTTP_LISTEN: '127.0.0.1:0',
      SESSIOND_REDIS_KEY_PREFIX: prefix,
      SESSIOND_NODE_LOG_LEVEL: 'warn',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const onData = (c) => {
      out += c;
      const m = /sessiond listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        child.stdout.off('data', onData);
        resolve(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`sessiond exited with ${code} before listening:\n${stderr}`)));
  });
  child.stdout.resume();
  for (let i = 0; ; i++) {
    const r = await fetch(`${url}/readyz`).catch(() => null);
    if (r?.status === 200) break;
    if (i > 200) throw new Error(`sessiond at ${url} not ready after 10 s:\n${stderr}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  return {
    url,
    prefix,
    child,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
      if (process.env.POSTGRES_URL)
        spawnSync('psql', [process.env.POSTGRES_URL, '-qc', `DROP SCHEMA IF EXISTS ${schema} CASCADE`], { stdio: 'ignore' });
    },
  };
}

/** Polls `fn` every 20 ms until it returns a truthy value or `ms` pass. */
export async function eventually(fn, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
