// Benchmark (not a test): what the progress check («Проверить прогресс», POST /me/refresh)
// costs in workerd with a local D1 against the local Stepik and Boomstream stand-ins,
// beside a plain /me in the same run. Run with `node scripts/bench-check.mjs` after
// `bash scripts/build-worker.sh`; record the figures in BENCHMARKS.md.
import { form, hashPassword, sessionCookie, sql, startWorker, TEST_VARS } from '../tests/e2e/harness.mjs';
import { startBoomstream, startStepik } from '../tests/e2e/standins.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const stepik = await startStepik({ clientId: 'bench-app', clientSecret: 'bench-secret', courseId: 9001 });
const boom = await startBoomstream({ apiKey: 'bench-key' });
const w = await startWorker({
  vars: {
    ...TEST_VARS,
    STEPIK_CLIENT_ID: 'bench-app',
    STEPIK_CLIENT_SECRET: 'bench-secret',
    STEPIK_API_URL: stepik.url,
    BOOMSTREAM_API_KEY: 'bench-key',
    BOOMSTREAM_API_URL: boom.url,
    STEPIK_REFRESH_PER_MINUTE: '10000',
  },
});
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))].toFixed(1);
  return `median ${at(0.5)} ms, p90 ${at(0.9)} ms, min ${s[0].toFixed(1)} ms (${s.length} rounds)`;
};
try {
  const users = Array.from({ length: ROUNDS }, (_, i) => i + 1);
  const hash = hashPassword('bench-password');
  w.d1(`
    INSERT INTO videos (id, title, position, media_code) VALUES ('intro', 'Intro', 1, 'DEMOintro'),
      ('basics', 'Basics', 2, 'DEMObasics'), ('practice', 'Practice', 3, 'DEMOpractice'), ('final', 'Final', 4, 'DEMOfinal');
    INSERT INTO users (id, email, password_hash, name, stepik_user_id) VALUES
      ${users.map((i) => `(${i}, 'b${i}@example.com', ${sql(hash)}, 'B${i}', ${200000 + i})`).join(',\n')};
    INSERT INTO learner_progress (stepik_user_id, steps_passed, steps_total, score, unlocked, updated_at)
      SELECT stepik_user_id, 0, 4, 0, '[]', unixepoch() FROM users;
  `);
  const cookies = [];
  for (const i of users) {
    const res = await w.fetch('/login', form({ email: `b${i}@example.com`, password: 'bench-password' }));
    cookies.push(sessionCookie(res));
  }
  const headers = (c) => ({ cookie: `session=${c}`, origin: w.url });
  // Warm up: an isolate, a token.
  await (await w.fetch('/me', { headers: headers(cookies[0]) })).arrayBuffer();
  const me = [];
  const same = [];
  const opened = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c = cookies[r];
    let t0 = performance.now();
    await (await w.fetch('/me', { headers: headers(c) })).arrayBuffer();
    me.push(performance.now() - t0);
    // Nothing new on Stepik: the check, no Boomstream call.
    stepik.setLearner(200000 + users[r], {});
    w.d1(`UPDATE progress_checks SET pressed_at = 0 WHERE user_id = ${users[r]}`);
    t0 = performance.now();
    let res = await w.fetch('/me/refresh', { method: 'POST', headers: headers(c) });
    await res.arrayBuffer();
    same.push(performance.now() - t0);
    if (res.status !== 303) throw new Error(`check: ${res.status}`);
    // Lessons 1–3 solved: two videos open, three addbuyer calls (intro, basics, practice).
    stepik.setLearner(200000 + users[r], { 90012: true, 90022: true, 90032: true });
    w.d1(`UPDATE progress_checks SET pressed_at = 0 WHERE user_id = ${users[r]}`);
    t0 = performance.now();
    res = await w.fetch('/me/refresh', { method: 'POST', headers: headers(c) });
    await res.arrayBuffer();
    opened.push(performance.now() - t0);
    if (!res.headers.getSetCookie().some((l) => l.startsWith('check=ok.2.0'))) {
      throw new Error(`opened: ${res.headers.getSetCookie()}`);
    }
  }
  const grades = stepik.requests.filter((r) => r.path.startsWith('/api/course-grades')).length;
  console.log(`GET /me (no check):                     ${stats(me)}`);
  console.log(`POST /me/refresh, nothing new:          ${stats(same)}`);
  console.log(`POST /me/refresh, 2 videos, 3 addbuyer: ${stats(opened)}`);
  console.log(`Stepik: ${stepik.tokensIssued()} token(s), ${grades} grade-book rows; Boomstream: ${boom.requests.length} requests`);
} finally {
  await w.stop();
  await stepik.stop();
  await boom.stop();
}
