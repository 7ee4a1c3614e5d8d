// Benchmark (not a test): the release worker's size and what a password check costs in
// workerd. Run with `bash scripts/bench.sh`; record the figures in BENCHMARKS.md.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { form, hashPassword, sql, startWorker, ROOT, TEST_VARS } from '../tests/e2e/harness.mjs';

const wasm = readFileSync(join(ROOT, 'edge-worker/build/index_bg.wasm'));
const js = readFileSync(join(ROOT, 'edge-worker/build/index.js'));
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`wasm: ${kb(wasm.length)} raw, ${kb(gzipSync(wasm, { level: 9 }).length)} gzip -9`);
console.log(`js glue: ${kb(js.length)} raw, ${kb(gzipSync(js, { level: 9 }).length)} gzip -9`);
{
  // Cold start's share that is the wasm's: compiling the module in V8 (workerd's engine),
  // as a new isolate does (Workers may cache the compiled code; this is the uncached cost).
  const times = [];
  for (let i = 0; i < 12; i++) {
    const t0 = performance.now();
    await WebAssembly.compile(wasm);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  console.log(`wasm compile (V8, Node ${process.versions.node}): median ${times[6].toFixed(1)} ms, min ${times[0].toFixed(1)} ms of 12`);
}

const ROUNDS = Number(process.env.ROUNDS ?? 40);
// Throttle limits raised so that repeated failures keep measuring the password check.
const w = await startWorker({
  vars: { ...TEST_VARS, LOGIN_MAX_FAILURES_PER_ACCOUNT: '1000', LOGIN_MAX_FAILURES_PER_ADDRESS: '100000' },
});
try {
  w.d1(`INSERT INTO users (email, password_hash, name) VALUES ('bench@example.com', ${sql(hashPassword('bench-password'))}, 'Bench');`);
  const time = async (fields, expected) => {
    const samples = [];
    for (let i = 0; i < ROUNDS + 5; i++) {
      const t0 = performance.now();
      const res = await w.fetch('/login', form(fields));
      await res.arrayBuffer();
      const dt = performance.now() - t0;
      if (res.status !== expected) throw new Error(`expected ${expected}, got ${res.status}`);
      if (i >= 5) samples.push(dt); // the first requests warm the isolate
    }
    samples.sort((a, b) => a - b);
    return { median: samples[samples.length >> 1], p90: samples[Math.floor(samples.length * 0.9)] };
  };
  const noVerify = await time({ email: 'bench@example.com', password: '' }, 400);
  const wrong = await time({ email: 'bench@example.com', password: 'wrong-password' }, 401);
  const unknown = await time({ email: 'nobody@example.com', password: 'wrong-password' }, 401);
  const ok = await time({ email: 'bench@example.com', password: 'bench-password' }, 303);
  const f = (x) => `median ${x.median.toFixed(1)} ms, p90 ${x.p90.toFixed(1)} ms`;
  console.log(`POST /login, ${ROUNDS} rounds each, wall time on loopback:`);
  console.log(`  missing password (no verify, no D1):        ${f(noVerify)}`);
  console.log(`  wrong password (throttle + lookup + verify): ${f(wrong)}`);
  console.log(`  unknown e-mail (D1 lookup + dummy verify):  ${f(unknown)}`);
  console.log(`  right password (lookup + verify + session): ${f(ok)}`);
  console.log(`one password verify in workerd ≈ ${(wrong.median - noVerify.median).toFixed(1)} ms (wrong − missing; includes the local D1 reads and the failure write)`);
} finally {
  await w.stop();
}
