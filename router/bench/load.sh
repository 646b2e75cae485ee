#!/usr/bin/env bash
# Load benchmark for the router, in one run so every figure has a baseline
# measured on the same machine at the same moment:
#   1. direct to the backend (nginx serving a small file)
#   2. through the router
#   3. through nginx as a reverse proxy with a keepalive upstream
#   3b. through a router writing the access log (common format, to a file),
#      against the router without one in the same rounds
#   4. through the router again with 10,000 host routes loaded (requests
#      spread over all 10,000 hosts, and to one), each round also through a
#      second router whose table holds only the one route, and the router's
#      RSS at that size.
# Each figure is also given as a ratio: to direct (2, 3) and to the 1-host
# router figure (4).
#
# The backend, the router and the proxy nginx are pinned to one core, wrk
# (and Consul) to the other: a proxy and its backend share a core, so a
# proxy that cost nothing would reach 1.0 of direct and one that costs as
# much as nginx serving the file reaches about 0.5.
#
# Loopback only; everything (Consul dev agent, nginx, router, temp dir) is
# started here on free ports and removed on exit, also on failure or Ctrl-C.
#
# Usage: router/bench/load.sh   (env: DURATION=5s CONNECTIONS=64 ROUNDS=3 HOSTS=10000)
set -euo pipefail

HOSTS=${HOSTS:-10000}

# Defaults, temp dir and cleanup, free ports, Consul, nginx, the figures'
# arithmetic: shared with tls.sh.
# shellcheck source=router/bench/common.sh
source "$(dirname "$0")/common.sh"
require consul nginx wrk taskset curl jq python3

build_router
start_consul

# --- backend and proxy nginx ----------------------------------------------
start_backend
nginx_port=$(free_port)
mkdir -p "$work/proxy"
nginx_conf "$work/proxy" "upstream backend { server 127.0.0.1:$backend_port; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port; location / {
    proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" >"$work/proxy/nginx.conf"
start_nginx proxy
proxy_worker=$nginx_worker
wait_for 10 curl -sf "http://127.0.0.1:$nginx_port/index.html"

# --- router ---------------------------------------------------------------
router_port=$(free_port)
admin_port=$(free_port)
RUST_LOG=warn taskset -c "$SERVER_CORE" "$router_bin" --consul-addr "$consul_addr" \
  --proxy-addr "127.0.0.1:$router_port" --admin-addr "127.0.0.1:$admin_port" >"$work/router.log" 2>&1 &
router_pid=$!
pids+=("$router_pid")
admin=http://127.0.0.1:$admin_port
# A second router that sees only service 0 (its tag prefix is on that
# service alone): the 1-host figure measured in the same rounds as the
# 10,000-host ones, so a slow phase of the machine hits both.
solo_port=$(free_port)
solo_admin_port=$(free_port)
RUST_LOG=warn taskset -c "$SERVER_CORE" "$router_bin" --consul-addr "$consul_addr" --tag-prefix solo- \
  --proxy-addr "127.0.0.1:$solo_port" --admin-addr "127.0.0.1:$solo_admin_port" >"$work/solo.log" 2>&1 &
solo_pid=$!
pids+=("$solo_pid")
# A router with the access log on (and request IDs), routing the same one
# service, measured in the same rounds as the router without one.
logged_port=$(free_port)
logged_admin_port=$(free_port)
RUST_LOG=warn taskset -c "$SERVER_CORE" "$router_bin" --consul-addr "$consul_addr" --tag-prefix solo- \
  --proxy-addr "127.0.0.1:$logged_port" --admin-addr "127.0.0.1:$logged_admin_port" \
  --access-log "$work/access.log" --access-log-format common --request-id-header X-Request-Id \
  >"$work/logged.log" 2>&1 &
logged_pid=$!
pids+=("$logged_pid")

# Services live on $nodes external catalog nodes (no checks: routed), written
# with Consul transactions of at most 64 operations, several at a time.
nodes=20
register() { # $1 first service index, $2 last
  mkdir -p "$work/txn-$1"
  python3 - "$1" "$2" "$nodes" "$backend_port" "$work/txn-$1" <<'EOF'
import json, sys
first, last, nodes, port = (int(a) for a in sys.argv[1:5])
out = sys.argv[5]
ops, batches = [], []
for i in range(first, last + 1):
    node = f"edge-load-{i % nodes}"
    ops.append({"Service": {"Verb": "set", "Node": node, "Service": {
        "ID": f"bench-{i}", "Service": f"bench-{i}", "Address": "127.0.0.1", "Port": port,
        "Tags": [f"urlprefix-h{i}.bench/"] + (["solo-h0.bench/"] if i == 0 else [])}}})
    if len(ops) == 64:
        batches.append(ops); ops = []
if ops:
    batches.append(ops)
for k, b in enumerate(batches):
    with open(f"{out}/{k}.json", "w") as f:
        json.dump(b, f)
EOF
  # 8 transactions in flight.
  find "$work/txn-$1" -name '*.json' -print0 |
    xargs -0 -P 8 -I{} curl -sf -X PUT "$consul_addr/v1/txn" -o /dev/null -d @{}
}
routes() { curl -sf "$admin/api/status" | jq -r .routes; }
nodes_json=$(python3 -c "import json; print(json.dumps([{'Node': {'Verb': 'set', 'Node': {'Node': f'edge-load-{n}', 'Address': '127.0.0.1'}}} for n in range($nodes)]))")
curl -sf -X PUT "$consul_addr/v1/txn" -o /dev/null -d "$nodes_json"
register 0 0
wait_for 30 bash -c "[ \"\$(curl -sf $admin/api/status | jq -r .routes)\" -ge 1 ]"
wait_for 10 curl -sf -H 'Host: h0.bench' "http://127.0.0.1:$router_port/index.html"
wait_for 30 curl -sf -H 'Host: h0.bench' "http://127.0.0.1:$solo_port/index.html"
wait_for 30 curl -sf -H 'Host: h0.bench' "http://127.0.0.1:$logged_port/index.html"

# --- measurements ---------------------------------------------------------
# Every run uses the same Lua request generator so the client does the same
# work: Host hN.bench for N cycling over the first $BENCH_HOSTS hosts, every
# request built once before the run (building them per request costs wrk
# more for 10,000 different hosts than for one, and wrk shares its core).
cat >"$work/hosts.lua" <<'EOF'
local n = tonumber(os.getenv("BENCH_HOSTS") or "1")
local reqs = {}
for i = 0, n - 1 do
  reqs[i] = wrk.format("GET", "/index.html", { Host = "h" .. i .. ".bench" })
end
local i = 0
request = function()
  i = (i + 1) % n
  return reqs[i]
end
EOF
# Prints "req/s p99_ms cpu_us" for a URL (common.sh's wrk_measure); $2 hosts
# to cycle through; $3 the process whose CPU time per request is reported
# (the proxy, or the backend for the direct runs).
measure() {
  BENCH_HOSTS=$2 wrk_measure "$3" -s "$work/hosts.lua" "$1/index.html"
}

# Runs every measurement $ROUNDS times, interleaved, and keeps the median
# (by req/s) of each: other work on the machine comes and goes, and
# interleaving spreads it over all three paths instead of one.

echo "measuring: wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, servers on core $SERVER_CORE, wrk on core $CLIENT_CORE" >&2
: >"$work/direct" >"$work/router" >"$work/nginx" >"$work/router_vs_nginx" >"$work/logged" >"$work/logged_vs_router"
for ((r = 1; r <= ROUNDS; r++)); do
  measure "http://127.0.0.1:$backend_port" 1 "$backend_worker" >>"$work/direct"
  measure "http://127.0.0.1:$router_port" 1 "$router_pid" >>"$work/router"
  measure "http://127.0.0.1:$logged_port" 1 "$logged_pid" >>"$work/logged"
  measure "http://127.0.0.1:$nginx_port" 1 "$proxy_worker" >>"$work/nginx"
  round_ratio "$work/router" "$work/nginx" "$work/router_vs_nginx"
  round_ratio "$work/logged" "$work/router" "$work/logged_vs_router"
done
read -r logged_rps logged_p99 logged_cpu <<<"$(median <"$work/logged")"
logged_vs_router=$(median <"$work/logged_vs_router")
logged_lines=$(wc -l <"$work/access.log")
read -r direct_rps direct_p99 direct_cpu <<<"$(median <"$work/direct")"
read -r router_rps router_p99 router_cpu <<<"$(median <"$work/router")"
read -r nginx_rps nginx_p99 nginx_cpu <<<"$(median <"$work/nginx")"
router_vs_nginx=$(median <"$work/router_vs_nginx")
rss_1=$(rss_mb "$router_pid")

echo "registering $HOSTS services..." >&2
t0=$SECONDS
register 1 $((HOSTS - 1))
wait_for 120 bash -c "[ \"\$(curl -sf $admin/api/status | jq -r .routes)\" -ge $HOSTS ]"
echo "  $(routes) routes loaded $((SECONDS - t0)) s after registration began" >&2
wait_for 10 curl -sf -H "Host: h$((HOSTS - 1)).bench" "http://127.0.0.1:$router_port/index.html"
rss_big_idle=$(rss_mb "$router_pid")
# The first pass over $HOSTS hosts is reported apart: it includes what the
# router does once per route (e.g. creating per-route metric series).
read -r cold_rps cold_p99 cold_cpu <<<"$(measure "http://127.0.0.1:$router_port" "$HOSTS" "$router_pid")"
: >"$work/big" >"$work/big1" >"$work/solo" >"$work/direct2" >"$work/spread_vs_one"
: >"$work/spread_vs_solo" >"$work/one_vs_solo"
for ((r = 1; r <= ROUNDS; r++)); do
  measure "http://127.0.0.1:$solo_port" 1 "$solo_pid" >>"$work/solo"
  measure "http://127.0.0.1:$router_port" "$HOSTS" "$router_pid" >>"$work/big"
  measure "http://127.0.0.1:$router_port" 1 "$router_pid" >>"$work/big1"
  round_ratio "$work/big" "$work/big1" "$work/spread_vs_one"
  round_ratio "$work/big" "$work/solo" "$work/spread_vs_solo"
  round_ratio "$work/big1" "$work/solo" "$work/one_vs_solo"
  measure "http://127.0.0.1:$backend_port" 1 "$backend_worker" >>"$work/direct2"
done
read -r big_rps big_p99 big_cpu <<<"$(median <"$work/big")"
read -r big1_rps big1_p99 big1_cpu <<<"$(median <"$work/big1")"
read -r solo_rps solo_p99 solo_cpu <<<"$(median <"$work/solo")"
read -r direct2_rps direct2_p99 direct2_cpu <<<"$(median <"$work/direct2")"
spread_vs_one=$(median <"$work/spread_vs_one")
spread_vs_solo=$(median <"$work/spread_vs_solo")
one_vs_solo=$(median <"$work/one_vs_solo")
rss_big=$(rss_mb "$router_pid")
for f in direct router logged nginx solo big big1 direct2; do
  echo "rounds $f (req/s p99 cpu): $(tr '\n' ';' <"$work/$f")" >&2
done

cat <<EOF
wrk -t1 -c$CONNECTIONS -d$DURATION, median of $ROUNDS interleaved rounds; backend, router and proxy nginx on core $SERVER_CORE, wrk on core $CLIENT_CORE

| path | req/s | p99 (ms) | ratio | CPU per request |
| --- | ---: | ---: | --- | ---: |
| direct to nginx serving a 100-byte file | $direct_rps | $direct_p99 | 1.00 of direct | $direct_cpu us (backend) |
| through the router (1 host) | $router_rps | $router_p99 | $(ratio "$router_rps" "$direct_rps") of direct | $router_cpu us (router) |
| through a router writing the access log (common, to a file) | $logged_rps | $logged_p99 | $(ratio "$logged_rps" "$router_rps") of the router without | $logged_cpu us (router) |
| through nginx (keepalive upstream) | $nginx_rps | $nginx_p99 | $(ratio "$nginx_rps" "$direct_rps") of direct | $nginx_cpu us (nginx) |
| a second router with only that 1 route, in the same rounds as the next two | $solo_rps | $solo_p99 | $(ratio "$solo_rps" "$router_rps") of the 1-host router | $solo_cpu us |
| through the router, $HOSTS hosts, first pass | $cold_rps | $cold_p99 | $(ratio "$cold_rps" "$router_rps") of the 1-host router | $cold_cpu us |
| through the router, $HOSTS hosts (requests spread over all) | $big_rps | $big_p99 | $(ratio "$big_rps" "$router_rps") of the 1-host router | $big_cpu us |
| through the router, $HOSTS hosts loaded, requests to one | $big1_rps | $big1_p99 | $(ratio "$big1_rps" "$router_rps") of the 1-host router | $big1_cpu us |
| direct again (drift check) | $direct2_rps | $direct2_p99 | $(ratio "$direct2_rps" "$direct_rps") of the first direct | $direct2_cpu us |

Same-round ratios (median over the rounds): router / nginx $router_vs_nginx;
access log on / off $logged_vs_router ($logged_lines lines written; CPU per request on / off $(ratio "$logged_cpu" "$router_cpu"));
$HOSTS hosts loaded, requests spread over all / the 1-route router $spread_vs_solo;
$HOSTS hosts loaded, requests to one / the 1-route router $one_vs_solo;
$HOSTS hosts spread / requests to one host $spread_vs_one.
CPU per request, router / nginx: $(ratio "$router_cpu" "$nginx_cpu").

router RSS: $rss_1 MB with 1 service; $rss_big_idle MB with $HOSTS services loaded; $rss_big MB after the $HOSTS-host runs
EOF
