// Benchmark (not a test): requests per second of the worker's pages in one `wrangler dev`
// run, each beside a static asset measured in the same run, and the ratio. Run with
// `bash scripts/bench.sh` (or `node scripts/throughput.mjs` after a worker build);
// record the figures in BENCHMARKS.md. CONNECTIONS (16) keep-alive connections, SECONDS
// (8) per route, after a warm-up; any status other than the expected one is counted as
// an error. D1_READ_REPLICATION=auto measures with the worker's D1 sessions on (see
// README, "Read replication"); without it, as deployed by default.
import http from 'node:http';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { form, hashPassword, sessionCookie, sql, startWorker, ROOT, TEST_VARS } from '../tests/e2e/harness.mjs';

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);
const SECONDS = Number(process.env.SECONDS ?? 8);

const replication = process.env.D1_READ_REPLICATION;
const w = await startWorker({ vars: replication ? { ...TEST_VARS, D1_READ_REPLICATION: replication } : TEST_VARS });
try {
  w.d1(`INSERT INTO users (id, email, password_hash, name, stepik_user_id) VALUES (1, 'bench@example.com', ${sql(hashPassword('bench-password'))}, 'Bench', 4242);
INSERT INTO videos (id, title, position, media_code) VALUES ('intro', 'Intro', 1, 'AAAA1111'), ('basics', 'Basics', 2, 'BBBB2222'), ('final', 'Final', 3, 'CCCC3333');
INSERT INTO grants (user_id, video_id, source) VALUES (1, 'intro', 'stepik'), (1, 'basics', 'manual');
INSERT INTO learner_progress (stepik_user_id, steps_passed, steps_total, score, unlocked, next_video_id, next_missing, updated_at) VALUES (4242, 3, 9, 3.0, '["intro","basics"]', 'final', 6, 1795612998);`);
  const login = await w.fetch('/login', form({ email: 'bench@example.com', password: 'bench-password' }));
  const cookie = sessionCookie(login);
  if (login.status !== 303 || !cookie) throw new Error(`sign-in failed: ${login.status}`);
  const css = readdirSync(join(ROOT, 'dist/assets')).find((f) => f.endsWith('.css'));
  const { port } = new URL(w.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });

  const one = (path, headers) =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      });
      req.on('error', () => resolve(0));
    });
  const measure = async ({ path, headers = {}, status }) => {
    const until = Date.now() + 1000;
    await Promise.all(Array.from({ length: CONNECTIONS }, async () => { while (Date.now() < until) await one(path, headers); }));
    let done = 0;
    let errors = 0;
    const start = performance.now();
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (Date.now() < end) {
          const got = await one(path, headers);
          done += 1;
          if (got !== status) errors += 1;
        }
      }),
    );
    return { rps: done / ((performance.now() - start) / 1000), errors };
  };
  const signedIn = { cookie: `session=${cookie}` };
  // The floor of any page that reads D1: a validly signed cookie whose session is gone
  // costs one batch that finds nothing, and a redirect (no page rendered).
  const gone = await w.fetch('/login', form({ email: 'bench@example.com', password: 'bench-password' }));
  const goneCookie = { cookie: `session=${sessionCookie(gone)}` };
  await w.fetch('/logout', { method: 'POST', headers: goneCookie });
  const goneStatus = (await w.fetch('/me', { headers: goneCookie, redirect: 'manual' })).status;
  const routes = [
    ['static asset', { path: `/assets/${css}`, status: 200 }],
    ['GET /login?next=/me (worker, no D1)', { path: '/login?next=/me', status: 200 }],
    ['GET /me, session gone (1 D1 batch, no page)', { path: '/me', headers: goneCookie, status: goneStatus }],
    ['GET /me', { path: '/me', headers: signedIn, status: 200 }],
    ['GET /me/videos/intro', { path: '/me/videos/intro', headers: signedIn, status: 200 }],
  ];
  console.log(`wrangler dev${replication ? ` (D1_READ_REPLICATION=${replication})` : ''}, ${CONNECTIONS} keep-alive connections, ${SECONDS} s per route:`);
  let staticRps;
  for (const [name, route] of routes) {
    const r = await measure(route);
    staticRps ??= r.rps;
    const ratio = (r.rps / staticRps).toFixed(2);
    console.log(`  ${name.padEnd(46)} ${r.rps.toFixed(0).padStart(5)} req/s  ${ratio} of static  errors ${r.errors}`);
  }
  agent.destroy();
} finally {
  await w.stop();
}
