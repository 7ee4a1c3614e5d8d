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
// old one, a Telegram id, one without an e-mail (not exported), one without a password,
// and two who chose the same one.
const FLASK = [
  { email: 'Anna@Example.com', boom_password: 'old, "quoted" pass', telegram_id: 7000000001 },
  { email: 'short@example.com', boom_password: 'k7x9q', telegram_id: null },
  { email: 'plain@example.com', boom_password: 'PlainOldCode42', telegram_id: null },
  { email: 'twin@example.com', boom_password: 'PlainOldCode42', telegram_id: null },
  { email: 'nopass@example.com', boom_password: null, telegram_id: null },
  { email: null, boom_password: 'TelegramOnly1', telegram_id: 7000000002 },
];
/** Exported and imported: the rows with an e-mail, in e-mail order (the export's). */
const EXPORTED = FLASK.filter((u) => u.email).sort((a, b) => (a.email.toLowerCase() < b.email.toLowerCase() ? -1 : 1));

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
  assert.match(run.stdout + run.stderr, /5 rows: 5 created, 0 updated, 0 unchanged/);
  assert.match(run.stdout + run.stderr, /the password is also the Boomstream access code/);
  assert.match(run.stdout + run.stderr, /1 password shorter than 8 characters kept as given/);
  for (const secret of FLASK.map((u) => u.boom_password).filter(Boolean)) {
    assert.ok(!(run.stdout + run.stderr).includes(secret), 'no password or code is printed');
  }

  const rows = w.d1(`SELECT email, password_hash, access_code, telegram_id FROM users ORDER BY email`);
  assert.deepEqual(
    rows.map((r) => [r.email, r.access_code, r.telegram_id]),
    EXPORTED.map((u) => [u.email.toLowerCase(), u.email === 'twin@example.com' ? null : u.boom_password, u.telegram_id]),
    'the old password is each student\'s Boomstream code; a shared one stays with the first',
  );
  for (const r of rows) assert.match(r.password_hash, /^\$argon2id\$/, 'hashed, not stored as typed');

  // The student without an old password got a generated one, in the passwords file.
  const generated = readFileSync(join(dir, 'new-passwords.csv'), 'utf8').trim().split('\n');
  assert.equal(generated.length, 2, generated.join('\n'));
  const nopass = { email: 'nopass@example.com', boom_password: generated[1].split(',').at(-1) };

  for (const u of [...EXPORTED.filter((f) => f.boom_password), nopass]) {
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
  assert.match(again.stdout + again.stderr, /5 rows: 0 created, 0 updated, 5 unchanged/);
});
