#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the daemons (the
# integration tests start the real binaries), runs unit and integration
# tests, then checks that the tests left no process, container or network
# namespace behind.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install.sh
cargo build --workspace --bins

status=0
if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs each test in its own process (a hung test is killed with
  # its children) but not doc tests: run those first, so the run closes on
  # nextest's summary.
  cargo test --workspace --doc -q || status=$?
  cargo nextest run --workspace "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi

./scripts/check-clean.sh || status=$?
exit $status
