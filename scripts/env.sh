# The project's tool environment, sourced by the other scripts (scripts/setup.sh first
# of all): puts the project's tools on PATH and keeps wrangler and worker-build offline
# (no metrics, no GitHub downloads). Scripts that run tools do not source this file
# directly: they source scripts/setup.sh, which installs what is missing and then calls
# `use_tools` again, so the PATH that setup prepared is in force before any tool runs.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

# Puts the project's tools first on PATH: a Node >= 22.12 that setup installed into
# .tools/node (when the system one is older), the npm packages' binaries and cargo's.
# Idempotent; call it again after installing anything.
use_tools() {
  local dir
  for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" "$ROOT/node_modules/.bin" "$ROOT/.tools/node/node_modules/.bin"; do
    case ":$PATH:" in
      *":$dir:"*) ;;
      *) [ -d "$dir" ] && PATH="$dir:$PATH" ;;
    esac
  done
  export PATH
}
use_tools

export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
# worker-build would download these from GitHub; use the local ones instead.
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$ROOT/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild}"
# Where cargo puts binaries (CARGO_TARGET_DIR moves it).
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
