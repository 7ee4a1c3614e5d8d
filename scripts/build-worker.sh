#!/usr/bin/env bash
# wrangler's [build] command (run before `wrangler dev` and `wrangler deploy`, and again
# whenever a watched file changes): renders the static pages with `generator build` and
# compiles the worker to wasm with the size-tuned profile, so that templates, texts and
# configuration never go out of step between the two.
# SKIP_WORKER_BUILD=1 reuses an existing build (the tests build once, then start
# several workerd instances; the sync workflow builds in a step without secrets and then
# deploys). GENERATOR_BIN runs an already built generator instead of `cargo run`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
if [ "${SKIP_WORKER_BUILD:-}" = 1 ] && [ -f edge-worker/build/index.js ] && [ -f dist/index.html ]; then
  exit 0
fi
if [ -n "${GENERATOR_BIN:-}" ]; then
  "$GENERATOR_BIN" build --out dist
else
  cargo run --quiet -p generator -- build --out dist
fi
cd edge-worker
worker-build --profile wasm-release
# Without the wasm name section (~220 KiB raw, ~55 KiB gzip): a panic in the Workers
# logs then shows function indexes instead of names (BENCHMARKS.md, "Worker size").
"$WASM_OPT_BIN" --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  --strip-debug build/index_bg.wasm -o build/index_bg.wasm
