#!/usr/bin/env bash
# Quick start: installs what is missing, builds the daemons, and runs the
# whole edge locally in the foreground: a Consul dev agent and the daemons
# (see README). Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/.run"
mkdir -p "$run"

./scripts/install.sh
cargo build --release --bins

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo "quickstart: stopping"
  for hook in "${cleanups[@]:-}"; do [ -n "$hook" ] && eval "$hook" || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
cleanups=()
trap cleanup EXIT INT TERM

CONSUL_HTTP_ADDR=${CONSUL_HTTP_ADDR:-http://127.0.0.1:8500}
export CONSUL_HTTP_ADDR
if curl -fsS "$CONSUL_HTTP_ADDR/v1/status/leader" 2>/dev/null | grep -q '"'; then
  echo "quickstart: using the Consul already answering at $CONSUL_HTTP_ADDR"
else
  echo "quickstart: starting consul agent -dev (log: .run/consul.log)"
  consul agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node edge-demo >"$run/consul.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "$CONSUL_HTTP_ADDR/v1/status/leader" 2>/dev/null | grep -q ':' && break
    sleep 0.1
  done
fi

echo
echo "Consul UI:  $CONSUL_HTTP_ADDR/ui/"
echo "Ctrl-C stops everything started here."
wait
