#!/usr/bin/env bash
# wrangler's [build] command: compiles the worker to wasm with the size-tuned profile.
# SKIP_WORKER_BUILD=1 reuses an existing build (the tests build once, then start
# several workerd instances).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/edge-worker"
if [ "${SKIP_WORKER_BUILD:-}" = 1 ] && [ -f build/index.js ]; then
  exit 0
fi
exec worker-build --profile wasm-release
