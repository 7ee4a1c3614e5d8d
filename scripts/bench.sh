#!/usr/bin/env bash
# Benchmarks (not tests): release wasm size, password-verify time and page throughput in
# workerd, and the sync at scale.
set -euo pipefail
SKIP_BROWSER=1
# Installs what is missing and puts the tools it installed on this shell's PATH.
source "$(dirname "$0")/setup.sh"
# build-worker.sh renders the static site (generator build) and builds the worker.
bash scripts/build-worker.sh
cargo run --quiet --release -p course-core --example password_bench
node scripts/bench.mjs
node scripts/throughput.mjs
node scripts/bench-check.mjs
cargo run --quiet --release -p generator --example sync_bench
