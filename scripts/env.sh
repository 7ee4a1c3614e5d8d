# Sourced by the other scripts: puts the project's tools on PATH and keeps wrangler
# and worker-build offline (no metrics, no GitHub downloads).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# A Node >= 22.12 installed by setup.sh when the system one is older.
if [ -x "$ROOT/.tools/node/node_modules/.bin/node" ]; then
  PATH="$ROOT/.tools/node/node_modules/.bin:$PATH"
fi
PATH="$ROOT/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export PATH
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
# worker-build would download these from GitHub; use the local ones instead.
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
