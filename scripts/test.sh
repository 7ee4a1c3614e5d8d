#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (scripts/setup.sh),
# checks formatting and lints, runs the native Rust tests, builds the site and the
# worker, and runs the end-to-end tests against the worker in workerd with a local D1.
set -euo pipefail
# Installs what is missing and puts the tools it installed on this shell's PATH.
source "$(dirname "$0")/setup.sh"

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

say "the first README command in a fresh clone (skipped when the system Node is new enough)"
node --test --test-reporter=spec 'tests/setup/*.test.mjs'
