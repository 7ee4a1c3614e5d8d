#!/usr/bin/env bash
# One command from a fresh clone to a running site at http://127.0.0.1:8787:
# installs the tools (scripts/setup.sh), renders the static pages, migrates the local
# D1, seeds demo data and starts `wrangler dev` (which builds the worker).
set -euo pipefail
SKIP_BROWSER=1 # the browser is only for the tests
# Installs what is missing and puts the tools it installed on this shell's PATH.
source "$(dirname "$0")/setup.sh"

DEMO_EMAIL=demo@example.com
DEMO_PASSWORD=demo-password
GENERATOR="$TARGET_DIR/debug/generator"

# (wrangler dev renders the static pages and builds the worker itself, through
# scripts/build-worker.sh; the generator is needed here for the password and the sync.)
say "building the generator"
cargo build --quiet -p generator

say "migrating the local D1 database"
wrangler d1 migrations apply DB --local

say "seeding demo data"
hash=$(printf '%s' "$DEMO_PASSWORD" | "$GENERATOR" hash-password)
seed=$(mktemp)
trap 'rm -f "$seed"' EXIT
sed "s|@DEMO_PASSWORD_HASH@|$hash|" site/demo/seed.sql > "$seed"
wrangler d1 execute DB --local --file "$seed" > /dev/null

if [ -n "${STEPIK_CLIENT_ID:-}" ] && [ -n "${STEPIK_CLIENT_SECRET:-}" ]; then
  say "syncing Stepik progress into the local D1"
  "$GENERATOR" sync --d1 local
else
  say "syncing the bundled demo course (set STEPIK_CLIENT_ID and STEPIK_CLIENT_SECRET to sync the real one)"
  "$GENERATOR" sync --d1 local --demo
fi

say "starting the site on http://127.0.0.1:8787 — sign in as $DEMO_EMAIL / $DEMO_PASSWORD (Ctrl-C stops)"
exec wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" --inspector-ip 127.0.0.1 --show-interactive-dev-session=false
