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

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
HOSTS=${HOSTS:-10000}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}

cd "$(dirname "$0")/../.."
root=$(pwd)
for tool in consul nginx wrk taskset curl jq python3; do
  command -v "$tool" >/dev/null || { echo "load.sh: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d /tmp/edge-load.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=router/bench/lib.sh
source "$root/router/bench/lib.sh"

echo "building the router (release)..." >&2
cargo build --release -q -p router --bin router
router_bin=$root/target/release/router

# --- Consul ---------------------------------------------------------------
consul_http=$(free_port)
cat >"$work/consul.hcl" <<EOF
ports { http = $consul_http, dns = -1, serf_lan = $(free_port), serf_wan = -1, server = $(free_port), grpc = -1 }
EOF
taskset -c "$CLIENT_CORE" consul agent -dev -log-level=warn -bind=127.0.0.1 -client=127.0.0.1 \
  -node=edge-load -config-file="$work/consul.hcl" >"$work/consul.log" 2>&1 &
pids+=($!)
consul_addr=http://127.0.0.1:$consul_http
wait_for 20 bash -c "curl -sf $consul_addr/v1/status/leader | grep -q :"

# --- backend and proxy nginx ----------------------------------------------
backend_port=$(free_port)
nginx_port=$(free_port)
mkdir -p "$work/www" "$work/backend" "$work/proxy"
head -c 100 /dev/zero | tr '\0' 'x' >"$work/www/index.html"
# nginx workers run as an unprivileged user when started as root.
chmod 755 "$work" "$work/www"
chmod 644 "$work/www/index.html"
nginx_conf() { # $1 dir, $2 server block
  cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body; proxy_temp_path $1/proxy; fastcgi_temp_path $1/fcgi;
  uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
  keepalive_requests 1000000;
  $2
}
EOF
}
nginx_conf "$work/backend" "server { listen 127.0.0.1:$backend_port; root $work/www; }" >"$work/backend/nginx.conf"
nginx_conf "$work/proxy" "upstream backend { server 127.0.0.1:$backend_port; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port; location / {
    proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" >"$work/proxy/nginx.conf"
taskset -c "$SERVER_CORE" nginx -p "$work/backend" -c "$work/backend/nginx.conf" -e "$work/backend/error.log" &
backend_master=$!
pids+=($!)
taskset -c "$SERVER_CORE" nginx -p "$work/proxy" -c "$work/proxy/nginx.conf" -e "$work/proxy/error.log" &
proxy_master=$!
pids+=($!)
wait_for 10 curl -sf "http://127.0.0.1:$backend_port/index.html"
wait_for 10 curl -sf "http://127.0.0.1:$nginx_port/index.html"
# The processes that do the work (for CPU time per request).
backend_worker=$(pgrep -P "$backend_master" | head -n1)
proxy_worker=$(pgrep -P "$proxy_master" | head -n1)

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
# CPU time (user + system) of a process so far, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
# Prints "req/s p99_ms cpu_us" for a URL; $2 hosts to cycle through; $3 the
# process whose CPU time per request is reported (the proxy, or the backend
# for the direct runs): a figure that the machine's noise moves far less
# than req/s, since it does not count time spent waiting for the core.
measure() {
  local out before after
  before=$(ticks "$3")
  out=$(BENCH_HOSTS=$2 taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s "$work/hosts.lua" "$1/index.html")
  after=$(ticks "$3")
  if grep -q "Non-2xx" <<<"$out"; then echo "load.sh: non-2xx answers from $1:" >&2; echo "$out" >&2; return 1; fi
  awk -v ticks=$((after - before)) -v tick_us="$tick_us" '
    /Requests\/sec:/ { rps = $2 }
    / requests in / { n = $1 }
    $1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
                  p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
    END { printf "%.0f %.2f %.2f\n", rps, p99, ticks * tick_us / n }' <<<"$out"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# Appends the ratio of the last lines' req/s of two files to a third: two
# paths measured back to back in one round, so slow phases of the machine
# hit both.
round_ratio() { ratio "$(tail -n1 "$1" | cut -d' ' -f1)" "$(tail -n1 "$2" | cut -d' ' -f1)" >>"$3"; echo >>"$3"; }

# Runs every measurement $ROUNDS times, interleaved, and keeps the median
# (by req/s) of each: other work on the machine comes and goes, and
# interleaving spreads it over all three paths instead of one.
median() { sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
rss_mb() { awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$router_pid/status"; }

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
rss_1=$(rss_mb)

echo "registering $HOSTS services..." >&2
t0=$SECONDS
register 1 $((HOSTS - 1))
wait_for 120 bash -c "[ \"\$(curl -sf $admin/api/status | jq -r .routes)\" -ge $HOSTS ]"
echo "  $(routes) routes loaded $((SECONDS - t0)) s after registration began" >&2
wait_for 10 curl -sf -H "Host: h$((HOSTS - 1)).bench" "http://127.0.0.1:$router_port/index.html"
rss_big_idle=$(rss_mb)
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
rss_big=$(rss_mb)
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
