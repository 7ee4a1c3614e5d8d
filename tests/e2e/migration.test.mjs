// Moving over from the Flask app: the README's sqlite3 export of a Flask-shaped `users`
// table (email, boom_password, telegram_id), imported by the generator into the worker's
// local D1, and a sign-in in workerd with each old password.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { form, ROOT, sessionCookie, startWorker } from './harness.mjs';

const GENERATOR = join(ROOT, 'target/debug/generator');
const hasSqlite = spawnSync('sqlite3', ['-version']).status === 0;

// The Flask app's students: a password with a comma and a quote (CSV quoting), a short
// old one, a Telegram id, one without an e-mail (not exported), one without a password.
const FLASK = [
  { email: 'Anna@Example.com', boom_password: 'old, "quoted" pass', telegram_id: 7000000001 },
  { email: 'short@example.com', boom_password: 'k7x9q', telegram_id: null },
  { email: 'plain@example.com', boom_password: 'PlainOldCode42', telegram_id: null },
  { email: null, boom_password: 'TelegramOnly1', telegram_id: 7000000002 },
];

/** The README's sqlite3 export command, exactly as written there. */
function readmeExportCommand() {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Moving over from the Flask app'));
  const command = section.match(/```sh\n(sqlite3 [^\n]+)\n```/);
  assert.ok(command, 'the README shows the sqlite3 export command');
  return command[1];
}

let w;
let dir;

before(async () => {
  if (!hasSqlite) return;
  dir = mkdtempSync(join(tmpdir(), 'flask-move-'));
  const q = (v) => (v === null ? 'NULL' : typeof v === 'number' ? String(v) : `'${v.replaceAll("'", "''")}'`);
  execFileSync('sqlite3', [join(dir, 'flask.db')], {
    input:
      'CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE, boom_password TEXT, telegram_id INTEGER);\n' +
      FLASK.map((u) => `INSERT INTO users (email, boom_password, telegram_id) VALUES (${q(u.email)}, ${q(u.boom_password)}, ${q(u.telegram_id)});`).join('\n'),
  });
  w = await startWorker();
});

after(async () => {
  await w?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Run from the repository root, as `--d1 local` needs (wrangler.toml is there).
const importArgs = (passwordsOut) => [
  'users', 'import', join(dir, 'students.csv'), '--allow-short-passwords', '--passwords-out', join(dir, passwordsOut),
  '--d1', 'local', '--persist-to', w.persist,
];

test('the README export imports, and every student signs in with their old password', { skip: !hasSqlite && 'no sqlite3 on PATH' }, async () => {
  execFileSync('bash', ['-c', readmeExportCommand()], { cwd: dir });
  const csv = readFileSync(join(dir, 'students.csv'), 'utf8');
  assert.match(csv, /^email,password,access_code,telegram_id\r?\n/);
  assert.doesNotMatch(csv, /TelegramOnly1/, 'rows without an e-mail are not exported');

  const run = spawnSync(GENERATOR, importArgs('new-passwords.csv'), { cwd: ROOT, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout + run.stderr, /3 rows: 3 created, 0 updated, 0 unchanged/);
  assert.match(run.stdout + run.stderr, /1 password shorter than 8 characters kept as given/);
  for (const secret of FLASK.map((u) => u.boom_password)) {
    assert.ok(!(run.stdout + run.stderr).includes(secret), 'no password or code is printed');
  }

  const rows = w.d1(`SELECT email, password_hash, access_code, telegram_id FROM users ORDER BY id`);
  assert.deepEqual(
    rows.map((r) => [r.email, r.access_code, r.telegram_id]),
    FLASK.filter((u) => u.email).map((u) => [u.email.toLowerCase(), u.boom_password, u.telegram_id]),
    'the old password is each student\'s Boomstream code',
  );
  for (const r of rows) assert.match(r.password_hash, /^\$argon2id\$/, 'hashed, not stored as typed');

  for (const u of FLASK.filter((f) => f.email)) {
    const res = await w.fetch('/login', form({ email: u.email, password: u.boom_password }));
    assert.equal(res.status, 303, u.email);
    assert.equal(res.headers.get('location'), '/me');
    const me = await w.fetch('/me', { headers: { cookie: `session=${sessionCookie(res)}` } });
    assert.equal(me.status, 200, u.email);
  }
  const wrong = await w.fetch('/login', form({ email: 'plain@example.com', password: 'not the old one' }));
  assert.equal(wrong.status, 401);

  // The same export imported again changes nothing.
  const again = spawnSync(GENERATOR, importArgs('again.csv'), { cwd: ROOT, encoding: 'utf8' });
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.match(again.stdout + again.stderr, /3 rows: 0 created, 0 updated, 3 unchanged/);
});
