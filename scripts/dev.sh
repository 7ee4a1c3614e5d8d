#!/usr/bin/env bash
# One command from a fresh clone to a running site at http://127.0.0.1:8787:
# installs the tools (scripts/setup.sh), renders the static pages, migrates the local
# D1, seeds demo data and starts `wrangler dev` (which builds the worker).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

DEMO_EMAIL=demo@example.com
DEMO_PASSWORD=demo-password

SKIP_BROWSER=1 bash scripts/setup.sh  # the browser is only for the tests

# (wrangler dev renders the static pages and builds the worker itself, through
# scripts/build-worker.sh; the generator is needed here for the password and the sync.)
say "building the generator"
cargo build --quiet -p generator

say "migrating the local D1 database"
wrangler d1 migrations apply DB --local

say "seeding demo data"
hash=$(printf '%s' "$DEMO_PASSWORD" | target/debug/generator hash-password)
seed=$(mktemp)
trap 'rm -f "$seed"' EXIT
sed "s|@DEMO_PASSWORD_HASH@|$hash|" site/demo/seed.sql > "$seed"
wrangler d1 execute DB --local --file "$seed" > /dev/null

if [ -n "${STEPIK_CLIENT_ID:-}" ] && [ -n "${STEPIK_CLIENT_SECRET:-}" ]; then
  say "syncing Stepik progress into the local D1"
  target/debug/generator sync --d1 local
else
  say "syncing the bundled demo course (set STEPIK_CLIENT_ID and STEPIK_CLIENT_SECRET to sync the real one)"
  target/debug/generator sync --d1 local --demo
fi

say "starting the site on http://127.0.0.1:8787 — sign in as $DEMO_EMAIL / $DEMO_PASSWORD (Ctrl-C stops)"
exec wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" --inspector-ip 127.0.0.1 --show-interactive-dev-session=false
