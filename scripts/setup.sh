#!/usr/bin/env bash
# Installs everything the build and tests need, idempotently: the wasm target,
# worker-build, the wasm-bindgen-cli matching Cargo.lock, a Node >= 22.12 (only when
# the system one is older), the npm packages, and a local .dev.vars with a random
# SECRET_KEY. Needs only rustup, Node/npm and the package registries.
#
# The one entry point of every script that runs the project's tools (dev.sh, test.sh,
# bench.sh): they `source` this file, so the PATH it prepares (.tools/node, the npm
# binaries) is in force in their shell from then on. `bash scripts/setup.sh` alone
# only installs. SKIP_BROWSER=1 skips Chromium (only the browser test needs it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

WORKER_BUILD_VERSION=0.8.7
NODE_VERSION=22.23.3

command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first (https://rustup.rs)"
command -v npm >/dev/null || die "npm not found: install Node.js first"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# On GitHub Actions (crates.io itself) tools are installed with the versions of their
# own lockfiles (--locked). The package mirror of the development machines lacks some
# of those exact versions (see the toolchain notes), so there it resolves afresh.
LOCKED=()
if [ "${GITHUB_ACTIONS:-}" = true ]; then LOCKED=(--locked); fi

installed_version() { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1; }

if [ "$(installed_version worker-build)" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (takes a few minutes, once)"
  cargo install "${LOCKED[@]}" worker-build --version "$WORKER_BUILD_VERSION"
fi

# The CLI must equal the wasm-bindgen library version locked in Cargo.lock.
BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
[ -n "$BINDGEN_VERSION" ] || die "no wasm-bindgen in Cargo.lock"
if [ "$(installed_version wasm-bindgen)" != "$BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $BINDGEN_VERSION (takes a few minutes, once)"
  cargo install "${LOCKED[@]}" wasm-bindgen-cli --version "$BINDGEN_VERSION"
fi

node_ok() {
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}
if ! node_ok node; then
  if ! node_ok "$ROOT/.tools/node/node_modules/.bin/node"; then
    say "system Node $(node --version 2>/dev/null || echo none) is older than 22.12: installing Node $NODE_VERSION into .tools/node"
    npm install --silent --no-save --prefix "$ROOT/.tools/node" "node@$NODE_VERSION"
  fi
  use_tools
  node_ok node || die "Node $NODE_VERSION in .tools/node does not run: $(node --version 2>&1 || true)"
fi

if [ ! -d node_modules/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --silent --no-fund --no-audit
fi
use_tools

# Debian's Chromium for the browser test (playwright-core drives it; browser
# downloads from elsewhere are not possible here). SKIP_BROWSER=1 skips it (deploy jobs).
if [ "${SKIP_BROWSER:-}" != 1 ] && ! command -v "${CHROMIUM_PATH:-chromium}" >/dev/null 2>&1; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
  else
    die "the browser test needs Chromium: install Debian's 'chromium' package (or set CHROMIUM_PATH)"
  fi
fi

# The real SMTP server of the e-mail notification tests: aiosmtpd from PyPI, pinned, in
# .tools/py (a venv). Only the tests use it; without python3 the rest still works.
if [ -x "$ROOT/.tools/py/bin/python" ] && "$ROOT/.tools/py/bin/python" -c 'import aiosmtpd' 2>/dev/null \
   && [ ! tests/smtp/requirements.txt -nt "$ROOT/.tools/py/.installed" ]; then
  :
elif command -v python3 >/dev/null; then
  say "installing aiosmtpd (the e-mail tests' SMTP server) into .tools/py"
  if python3 -m venv "$ROOT/.tools/py" \
     && "$ROOT/.tools/py/bin/pip" install --quiet --disable-pip-version-check -r tests/smtp/requirements.txt; then
    touch "$ROOT/.tools/py/.installed"
  else
    say "could not install aiosmtpd: the e-mail tests will fail (needs python3 with venv and pip)"
  fi
else
  say "python3 not found: the e-mail tests need it (Debian: python3 python3-venv)"
fi

# Local settings and secrets (git-ignored). Each missing entry is added, none is changed.
random_secret() { node -e 'console.log(require("crypto").randomBytes(32).toString("base64url"))'; }
add_dev_var() {
  if ! grep -q "^$1=" .dev.vars 2>/dev/null; then
    say "adding $1 to .dev.vars (local only, git-ignored)"
    printf '%s=%s\n' "$1" "$2" >> .dev.vars
  fi
}
(umask 077; touch .dev.vars)
add_dev_var SECRET_KEY "$(random_secret)"
# A local stand-in for the bot token: /dev/telegram signs test logins with it.
add_dev_var TELEGRAM_BOT_TOKEN "000000:local-$(random_secret)"
add_dev_var DEV_TELEGRAM_LOGIN 1
