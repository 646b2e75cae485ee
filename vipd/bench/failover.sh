#!/usr/bin/env bash
# Failover gap a client sees, vipd against keepalived at equal advert
# intervals (1 s and 100 ms), master stopped by SIGKILL (node dies) and by
# SIGTERM. Needs root (network namespaces) and /usr/sbin/keepalived.
# VIPD_BENCH_RUNS=N sets the runs per case (default 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -p vipd --bins
cargo nextest run -p integration-tests --test vipd_failover_bench --run-ignored only --no-capture "$@"
