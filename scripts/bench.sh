#!/usr/bin/env bash
# Benchmarks (not tests): release wasm size and password-verify time in workerd.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SKIP_BROWSER=1 bash scripts/setup.sh
source scripts/env.sh
cargo build --quiet -p generator
target/debug/generator build --out dist > /dev/null
bash scripts/build-worker.sh
cargo run --quiet --release -p course-core --example password_bench
node scripts/bench.mjs
cargo run --quiet --release -p generator --example sync_bench
