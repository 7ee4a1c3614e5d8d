#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (scripts/setup.sh),
# checks formatting and lints, runs the native Rust tests, builds the site and the
# worker, and runs the end-to-end tests against the worker in workerd with a local D1.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

bash scripts/setup.sh
source scripts/env.sh # picks up a Node installed by setup

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (native and wasm32), warnings are errors"
cargo clippy --quiet --workspace --all-targets -- -D warnings
cargo clippy --quiet -p edge-worker --target wasm32-unknown-unknown -- -D warnings

say "native tests"
cargo test --quiet

say "building the static site and the worker"
# build-worker.sh renders the static site (generator build) and builds the worker.
bash scripts/build-worker.sh

say "end-to-end tests in workerd"
node --test --test-concurrency=2 --test-reporter=spec 'tests/e2e/*.test.mjs'
