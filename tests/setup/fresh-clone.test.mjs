// The README's first command as a newcomer runs it: a clean copy of the repository (the
// files git tracks, so no .tools, no node_modules, no .dev.vars, no local D1), the
// system's Node on PATH and nothing of the project's, then `bash scripts/dev.sh` until
// it serves /login. With a system Node older than 22.12 this is the path that installs
// Node 22 into .tools/node and must use it for every later step (wrangler refuses older
// Nodes). CI's machine has Node 20, so there it runs for real; on a machine whose Node
// is new enough, the test says so and is skipped.
//
// The rust tools (worker-build, wasm-bindgen-cli) live in ~/.cargo/bin and are shared
// with the checkout, as on any developer's machine; cargo builds into a target
// directory of its own under target/ (kept between runs, so only the first is slow).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { freePort, stopGroup } from '../e2e/harness.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const LIMIT_MS = 20 * 60_000;

/** PATH without anything of the project's (its .tools/node and node_modules/.bin). */
function systemPath() {
  return process.env.PATH.split(delimiter)
    .filter((dir) => dir && !resolve(dir).startsWith(ROOT + '/'))
    .join(delimiter);
}

/** The version of the `node` that PATH finds, or null. */
function nodeVersion(path) {
  try {
    return execFileSync('node', ['--version'], { env: { ...process.env, PATH: path }, encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

const olderThan2212 = (v) => {
  const [major, minor] = v.replace(/^v/, '').split('.').map(Number);
  return major < 22 || (major === 22 && minor < 12);
};

/** Copies the files git would check out (tracked, or new and not ignored) into `dest`. */
function copyCheckout(dest) {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\0')
    .filter(Boolean);
  for (const file of files) {
    const from = join(ROOT, file);
    if (!existsSync(from) && !isSymlink(from)) continue; // deleted in the work tree
    const to = join(dest, file);
    mkdirSync(dirname(to), { recursive: true });
    if (isSymlink(from)) {
      symlinkSync(readlinkSync(from), to);
    } else {
      copyFileSync(from, to);
      chmodSync(to, lstatSync(from).mode & 0o777);
    }
  }
  return files.length;
}

function isSymlink(p) {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

const path = systemPath();
const version = nodeVersion(path);
const skip =
  version === null
    ? 'no system Node on PATH'
    : olderThan2212(version)
      ? false
      : `the system Node is ${version}: this path needs one older than 22.12 (CI has Node 20)`;

test('a fresh clone with an older system Node: `bash scripts/dev.sh` serves /login', { skip, timeout: LIMIT_MS + 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'course-fresh-'));
  const clone = join(dir, 'clone');
  mkdirSync(clone);
  const copied = copyCheckout(clone);
  assert.ok(copied > 20, `copied ${copied} files`);
  for (const absent of ['.tools', 'node_modules', '.dev.vars', '.wrangler']) {
    assert.equal(existsSync(join(clone, absent)), false, `${absent} is not in a fresh clone`);
  }

  const port = await freePort();
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_') && k !== 'NODE_OPTIONS')),
    PATH: path,
    PORT: String(port),
    CARGO_TARGET_DIR: join(ROOT, 'target', 'fresh-clone'),
    NO_COLOR: '1',
  };
  // Setup must not reuse anything of the checkout's: its tools are not on PATH.
  for (const k of ['WASM_BINDGEN_BIN', 'WASM_OPT_BIN', 'ESBUILD_BIN', 'ROOT', 'TARGET_DIR']) delete env[k];

  const child = spawn('bash', ['scripts/dev.sh'], { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  let exited = null;
  child.on('exit', (code, signal) => (exited = { code, signal }));

  try {
    const deadline = Date.now() + LIMIT_MS;
    let res = null;
    while (Date.now() < deadline && exited === null) {
      try {
        res = await fetch(`http://127.0.0.1:${port}/login`, { redirect: 'manual' });
        if (res.status === 200) break;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const tail = output.split('\n').slice(-40).join('\n');
    assert.equal(exited, null, `dev.sh stopped before serving /login (${JSON.stringify(exited)}):\n${tail}`);
    assert.ok(res, `nothing listened on port ${port} within ${LIMIT_MS / 60_000} minutes:\n${tail}`);
    assert.equal(res.status, 200, tail);
    const html = await res.text();
    assert.match(html, /<form[^>]+action="\/login"/, 'the login form is served');
    assert.match(output, /installing Node .* into \.tools\/node/, 'setup installed Node 22 for this clone');
    assert.ok(existsSync(join(clone, '.tools/node/node_modules/.bin/node')));
    assert.doesNotMatch(output, /Wrangler requires at least Node/);
    // The demo student can sign in: the migration, the seed and the sync all ran.
    const login = await fetch(`http://127.0.0.1:${port}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'email=demo%40example.com&password=demo-password',
    });
    assert.equal(login.status, 303, tail);
    assert.equal(login.headers.get('location'), '/me');
  } finally {
    await stopGroup(child, 500);
    rmSync(dir, { recursive: true, force: true });
  }
});
