// Starts the real worker in workerd through `wrangler dev`, with its own migrated local
// D1 in a temporary directory, and gives tests a way to talk to it and to its database.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const WRANGLER = join(ROOT, 'node_modules/.bin/wrangler');
const GENERATOR = join(ROOT, 'target/debug/generator');
export const TEST_SECRET = 'e2e-secret-key-0123456789abcdefghijklmnopqrstuvwxyz';
export const TEST_BOT_TOKEN = '123456:e2e-test-token-for-the-local-widget';
export const TEST_VARS = {
  SECRET_KEY: TEST_SECRET,
  TELEGRAM_BOT_TOKEN: TEST_BOT_TOKEN,
  DEV_TELEGRAM_LOGIN: '1',
};

const quietEnv = {
  ...process.env,
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  SKIP_WORKER_BUILD: '1',
  NO_COLOR: '1',
  FORCE_COLOR: '0',
};

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** The Argon2id hash of `password`, made by `generator hash-password`. */
export function hashPassword(password) {
  return execFileSync(GENERATOR, ['hash-password'], { input: password, encoding: 'utf8' }).trim();
}

/**
 * Stops a child started with `detached: true` and everything it started (wrangler dev
 * runs workerd and a build watcher): SIGTERM to its process group, then SIGKILL.
 */
export async function stopGroup(child, graceMs = 300) {
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
  await new Promise((r) => setTimeout(r, graceMs));
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {}
}

/** SQL string literal. */
export const sql = (value) =>
  value === null || value === undefined ? 'NULL' : typeof value === 'number' ? String(value) : `'${String(value).replaceAll("'", "''")}'`;

/**
 * Starts a worker. `vars` become the worker's settings (SECRET_KEY etc.) instead of
 * anything in .dev.vars. Returns { url, d1(sqlText), persist, fetch(path, init), stop() }.
 */
export async function startWorker({ vars = TEST_VARS } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'course-e2e-'));
  const persist = join(dir, 'state');
  const envFile = join(dir, 'test.env');
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');

  const wrangler = (args, input) => {
    const r = spawnSync(WRANGLER, args, { cwd: ROOT, env: quietEnv, encoding: 'utf8', input });
    if (r.status !== 0) throw new Error(`wrangler ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  wrangler(['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', persist]);

  /** Runs SQL against this worker's local D1 and returns the rows of the last statement. */
  const d1 = (text) => {
    const file = join(dir, `q-${Date.now()}-${Math.random()}.sql`);
    writeFileSync(file, text);
    const out = wrangler(['d1', 'execute', 'DB', '--local', '--persist-to', persist, '--file', file, '--json']);
    const parsed = JSON.parse(out);
    return parsed.at(-1)?.results ?? [];
  };

  const port = await freePort();
  const inspector = await freePort();
  const child = spawn(
    WRANGLER,
    [
      'dev', '--ip', '127.0.0.1', '--port', String(port), '--inspector-ip', '127.0.0.1',
      '--inspector-port', String(inspector), '--persist-to', persist, '--env-file', envFile,
      '--show-interactive-dev-session=false', '--log-level', 'log',
    ],
    { cwd: ROOT, env: quietEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let output = '';
  const ready = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`wrangler dev did not start in 90 s:\n${output}`)), 90_000);
    const onData = (chunk) => {
      output += chunk;
      if (/Ready on http/.test(output)) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`wrangler dev exited with ${code}:\n${output}`));
    });
  });
  await ready;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    d1,
    /** The local D1's state directory (for `generator … --d1 local --persist-to`). */
    persist,
    /** The worker's console output so far. */
    logs: () => output,
    fetch: (path, init = {}) => fetch(url + path, { redirect: 'manual', ...init }),
    async stop() {
      await stopGroup(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The `session` cookie value from a response's Set-Cookie headers ('' when removed). */
export function sessionCookie(response, name = 'session') {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const [k, v] = pair.split('=');
    if (k.trim() === name) return v ?? '';
  }
  return undefined;
}

/** POSTs an HTML form. */
export function form(fields) {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  };
}

/**
 * A Telegram Login Widget redirect query for `fields`, signed with `token` the way
 * Telegram does (an implementation independent of the worker's, in node:crypto).
 */
export function telegramQuery(fields, token = TEST_BOT_TOKEN) {
  const entries = Object.entries(fields).map(([k, v]) => [k, String(v)]);
  const check = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('\n');
  const secret = createHash('sha256').update(token).digest();
  const hash = createHmac('sha256', secret).update(check).digest('hex');
  return new URLSearchParams([...entries, ['hash', hash]]).toString();
}
