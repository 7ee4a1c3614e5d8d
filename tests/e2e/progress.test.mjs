// The worker's own progress check («Проверить прогресс», and the background check of a
// stale /me) in workerd with a local D1, against local stand-ins for Stepik and
// Boomstream (tests/e2e/standins.mjs) reached over HTTP through STEPIK_API_URL and
// BOOMSTREAM_API_URL.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TEST_VARS, form, hashPassword, sessionCookie, sql, startWorker } from './harness.mjs';
import { startBoomstream, startStepik } from './standins.mjs';

const PASSWORD = 'пароль для проверки прогресса';
const CLIENT_ID = 'e2e-teacher-app';
const CLIENT_SECRET = 'e2e-stepik-client-secret';
const BS_KEY = 'e2e-boomstream-api-key';
const COURSE = 9001;

let w;
let stepik;
let boom;

before(async () => {
  stepik = await startStepik({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, courseId: COURSE });
  boom = await startBoomstream({ apiKey: BS_KEY });
  w = await startWorker({
    vars: {
      ...TEST_VARS,
      STEPIK_CLIENT_ID: CLIENT_ID,
      STEPIK_CLIENT_SECRET: CLIENT_SECRET,
      STEPIK_API_URL: stepik.url,
      BOOMSTREAM_API_KEY: BS_KEY,
      BOOMSTREAM_API_URL: boom.url,
    },
  });
  const hash = hashPassword(PASSWORD);
  // The videos as the sync writes them from site/config.toml.
  w.d1(`
    INSERT INTO videos (id, title, position, media_code) VALUES
      ('intro', 'Введение: как устроен курс', 1, 'DEMOintro'), ('basics', 'Урок 1. Основы', 2, 'DEMObasics'),
      ('practice', 'Урок 2. Практика', 3, 'DEMOpractice'), ('final', 'Итоговый разбор', 4, 'DEMOfinal');
    INSERT INTO users (id, email, password_hash, name, stepik_user_id) VALUES
      (1, 'anna@example.com', ${sql(hash)}, 'Анна', 100002),
      (2, 'boris@example.com', ${sql(hash)}, 'Борис', 100003),
      (3, 'vera@example.com', ${sql(hash)}, 'Вера', NULL),
      (4, 'gleb@example.com', ${sql(hash)}, 'Глеб', 100004),
      (5, 'dina@example.com', ${sql(hash)}, 'Дина', 100005),
      (6, 'egor@example.com', ${sql(hash)}, 'Егор', 100006);
  `);
});

after(async () => {
  await w?.stop();
  await stepik?.stop();
  await boom?.stop();
});

async function signIn(email) {
  const res = await w.fetch('/login', form({ email, password: PASSWORD }));
  assert.equal(res.status, 303);
  return sessionCookie(res);
}

const headers = (cookie, extra = '') => ({ cookie: `session=${cookie}${extra}`, origin: w.url });
const press = (cookie) => w.fetch('/me/refresh', { method: 'POST', headers: headers(cookie) });

/** The check's flash cookie from a redirect. */
function flashOf(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const [k, v] = pair.split('=');
    if (k.trim() === 'check') return v;
  }
  return undefined;
}

/** /me as the browser sees it after the redirect (flash cookie sent back). */
async function meAfter(cookie, flash) {
  const res = await w.fetch('/me', { headers: headers(cookie, flash ? `; check=${flash}` : '') });
  assert.equal(res.status, 200);
  return res.text();
}

/** Lets a student check again at once (their cooldown over). */
const endCooldown = (userId) => w.d1(`UPDATE progress_checks SET checked_at = 0, pressed_at = 0 WHERE user_id = ${userId}`);

/** A student's grants, but for «intro», which is open to everyone. */
const grantsOf = (userId) =>
  w.d1(`SELECT video_id, boomstream_confirmed_at IS NOT NULL AS confirmed, boomstream_error FROM grants WHERE user_id = ${userId} AND video_id <> 'intro' ORDER BY video_id`);

describe('the progress check', () => {
  test('a student solves a step, presses the button, and watches the video it opened', async () => {
    const cookie = await signIn('anna@example.com');
    const before = await meAfter(cookie);
    assert.match(before, /<form method="post" action="\/me\/refresh"><button type="submit" id="check-progress">Проверить прогресс<\/button>/);
    // Opening /me with no progress stored checked in the background (she had no row
    // on Stepik yet): wait for it, so that it does not race the press.
    const grades = () => stepik.requests.filter((r) => r.path.startsWith('/api/course-grades')).length;
    for (let i = 0; i < 50 && grades() === 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(grades(), 1);
    await new Promise((r) => setTimeout(r, 300));
    // A press right after a check waits 15 s (the background one might still run).
    const early = await press(cookie);
    assert.equal(early.status, 429);
    endCooldown(1);
    // Anna solves lesson 1's graded step on Stepik.
    stepik.setLearner(100002, { 90012: true });
    const started = performance.now();
    const res = await press(cookie);
    const elapsed = performance.now() - started;
    console.log(`button to answer: ${elapsed.toFixed(0)} ms`);
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/me');
    assert.equal(flashOf(res), 'ok.1.0');
    assert.ok(elapsed < 2000, `${elapsed} ms`);

    const html = await meAfter(cookie, 'ok.1.0');
    assert.match(html, /Открыто новых видео: 1\./);
    assert.match(html, /<a href="\/me\/videos\/basics">Урок 1\. Основы<\/a>/);
    assert.match(html, /Пройдено заданий: 1 из 4\./);
    // Recorded and confirmed by Boomstream, with the student's access code.
    assert.deepEqual(grantsOf(1), [{ video_id: 'basics', confirmed: 1, boomstream_error: null }]);
    const [{ access_code: code }] = w.d1('SELECT access_code FROM users WHERE id = 1');
    assert.ok(code && code.length >= 22);
    const buyers = boom.buyers().filter((b) => b.email === 'anna@example.com');
    assert.equal(buyers.length, 1);
    // «intro» (open to everyone) is granted and pushed as the sync would, with «basics».
    assert.deepEqual([...buyers[0].media].sort(), ['DEMObasics', 'DEMOintro']);
    assert.equal(buyers[0].hash, code);
    const add = boom.requests.find((r) => r.api === 'ppv/addbuyer');
    assert.equal(add.method, 'POST');
    // The watch page: a player pre-authorised for her.
    const page = await (await w.fetch('/me/videos/basics', { headers: headers(cookie) })).text();
    assert.ok(page.includes(`play.boomstream.com/DEMObasics?id_recovery=${code}`), page);
    // Progress as the sync would store it, checked now.
    const [p] = w.d1('SELECT steps_passed, steps_total, unlocked, next_video_id, updated_at FROM learner_progress WHERE stepik_user_id = 100002');
    assert.deepEqual({ ...p, updated_at: undefined }, { steps_passed: 1, steps_total: 4, unlocked: '["intro","basics"]', next_video_id: 'practice', updated_at: undefined });
    // Subrequests: one token, one grade-book row, one addbuyer per video.
    // (The token of the background check is reused.)
    assert.equal(stepik.tokensIssued(), 1);
    assert.equal(grades(), 2);
    const gradeQuery = stepik.requests.find((r) => r.path.startsWith('/api/course-grades')).query;
    assert.equal(String(gradeQuery.user), '100002');
    assert.equal(String(gradeQuery.course), String(COURSE));
    // The token is in D1 only sealed.
    const [cache] = w.d1(`SELECT value, expires_at - unixepoch() AS left FROM worker_cache WHERE name = 'stepik_token'`);
    assert.match(cache.value, /^[A-Za-z0-9_-]{60,}$/);
    assert.ok(cache.left > 30_000 && cache.left <= 36_000, `${cache.left}`);

    // Pressed again at once: the cooldown.
    const again = await press(cookie);
    assert.equal(again.status, 429);
    const wait = Number(again.headers.get('retry-after'));
    assert.ok(wait >= 30 && wait <= 60, `${wait}`);
    assert.match(await again.text(), /Прогресс только что проверялся\. Попробуйте снова через \d+ с\./);
    assert.equal(grades(), 2);

    // Nothing new: said so, with what the next video needs; the token is reused.
    endCooldown(1);
    const same = await press(cookie);
    assert.equal(flashOf(same), 'ok.0.0');
    const sameHtml = await meAfter(cookie, 'ok.0.0');
    assert.match(sameHtml, /Прогресс проверен: новых видео пока нет\./);
    assert.match(sameHtml, /Следующее видео — «Урок 2\. Практика»/);
    assert.equal(stepik.tokensIssued(), 1);
  });

  test('over the site budget: 429 for everyone, and the refused student keeps no cooldown', async () => {
    const cookie = await signIn('boris@example.com');
    stepik.setLearner(100003, { 90012: true });
    const window = Math.floor(Date.now() / 1000 / 60) * 60;
    w.d1(`INSERT INTO rate_windows (name, window_start, used, last_id) VALUES ('stepik', ${window}, 30, 'x')
          ON CONFLICT (name) DO UPDATE SET window_start = excluded.window_start, used = 30, last_id = 'x'`);
    const res = await press(cookie);
    try {
    if (Math.floor(Date.now() / 1000 / 60) * 60 === window) {
      assert.equal(res.status, 429);
      assert.match(await res.text(), /Сейчас прогресс проверяют слишком многие/);
      const wait = Number(res.headers.get('retry-after'));
      assert.ok(wait >= 1 && wait <= 60, `${wait}`);
      // Refused by the budget: nothing of the student's changed.
      assert.deepEqual(w.d1('SELECT checked_at FROM progress_checks WHERE user_id = 2'), []);
      assert.deepEqual(grantsOf(2), []);
    }
    } finally {
      w.d1(`DELETE FROM rate_windows`);
    }
    const ok = await press(cookie);
    assert.equal(flashOf(ok), 'ok.1.0');
  });

  for (const kind of ['500', 'malformed', 'timeout']) {
    test(`Stepik ${kind}: nothing changes, and /me says so`, async () => {
      const cookie = await signIn('dina@example.com');
      endCooldown(5);
      stepik.setLearner(100005, { 90012: true });
      const progressBefore = w.d1('SELECT * FROM learner_progress WHERE stepik_user_id = 100005');
      stepik.fail(kind);
      const res = await press(cookie);
      assert.equal(res.status, 303);
      assert.equal(flashOf(res), 'stepik');
      assert.deepEqual(grantsOf(5), []);
      assert.deepEqual(w.d1('SELECT * FROM learner_progress WHERE stepik_user_id = 100005'), progressBefore);
      assert.match(await meAfter(cookie, 'stepik'), /Stepik сейчас не ответил, ничего не изменилось\./);
    });
  }

  test('a Boomstream failure keeps the grant for the sync and says so', async () => {
    const cookie = await signIn('egor@example.com');
    stepik.setLearner(100006, { 90012: true });
    boom.fail('failed');
    const res = await press(cookie);
    assert.equal(flashOf(res), 'ok.1.1');
    const [grant] = grantsOf(6);
    assert.equal(grant.video_id, 'basics');
    assert.equal(grant.confirmed, 0);
    assert.ok(grant.boomstream_error);
    const html = await meAfter(cookie, 'ok.1.1');
    assert.match(html, /Открыто новых видео: 1\./);
    assert.match(html, /Boomstream пока не подтвердил доступ к новым видео \(1\)/);
  });

  test('a student not linked to Stepik sees how to link, and cannot check', async () => {
    const cookie = await signIn('vera@example.com');
    const html = await meAfter(cookie);
    assert.doesNotMatch(html, /action="\/me\/refresh"/);
    assert.match(html, /аккаунт Stepik нужно связать/);
    const res = await press(cookie);
    assert.equal(res.status, 409);
  });

  test('a disabled student cannot check, and a cross-site POST is refused', async () => {
    const cookie = await signIn('gleb@example.com');
    const before = stepik.requests.length;
    const cross = await w.fetch('/me/refresh', { method: 'POST', headers: { cookie: `session=${cookie}`, origin: 'https://evil.example' } });
    assert.equal(cross.status, 403);
    w.d1('UPDATE users SET disabled_at = unixepoch() WHERE id = 4');
    const res = await press(cookie);
    assert.equal(res.status, 303);
    assert.match(res.headers.get('location'), /^\/login/);
    assert.equal(stepik.requests.length, before);
  });

  test('a stale /me checks in the background, so the next visit is current', async () => {
    // Anna's progress is made old, and she has solved lesson 2 and 3 meanwhile.
    w.d1('UPDATE learner_progress SET updated_at = unixepoch() - 3600 WHERE stepik_user_id = 100002');
    endCooldown(1);
    stepik.setLearner(100002, { 90012: true, 90022: true, 90032: true });
    const cookie = await signIn('anna@example.com');
    const first = await meAfter(cookie);
    assert.doesNotMatch(first, /href="\/me\/videos\/practice"/);
    let grants = [];
    for (let i = 0; i < 50 && !grants.some((g) => g.video_id === 'practice'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      grants = grantsOf(1);
    }
    assert.ok(grants.some((g) => g.video_id === 'practice' && g.confirmed === 1), JSON.stringify(grants));
    const next = await meAfter(cookie);
    assert.match(next, /href="\/me\/videos\/practice"/);
  });

  test('nothing secret reaches the worker log', () => {
    const logs = w.logs();
    for (const secret of [CLIENT_SECRET, BS_KEY]) assert.ok(!logs.includes(secret), secret);
    const codes = w.d1('SELECT access_code FROM users WHERE access_code IS NOT NULL').map((r) => r.access_code);
    for (const code of codes) assert.ok(!logs.includes(code));
  });
});
