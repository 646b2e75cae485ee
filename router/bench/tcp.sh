#!/usr/bin/env bash
# TCP route benchmark: the router's TCP routes (`urlprefix-:PORT proto=tcp`)
# against HAProxy (`mode tcp`) and nginx (`stream`, `proxy_pass`) in front of
# the same backends, in one run so every figure has its baselines measured
# at the same moment:
#   1. bulk throughput, one 1 GB transfer (iperf3 -n 1G through the proxy);
#   2. bulk throughput, 64 parallel streams (iperf3 -P 64 for $DURATION);
#   3. new connections/s: wrk with `Connection: close` through the proxy to
#      the nginx backend, so every request is a new TCP connection relayed.
# The three proxies run side by side; each round measures them one after
# the other (router, HAProxy, nginx), and ratios are router / HAProxy and
# router / nginx from the same round, so a busy phase of the shared machine
# hits all three alike. Medians of $ROUNDS rounds. Proxies and backends on
# one core, clients on the other, as load.sh does.
#
# Usage: router/bench/tcp.sh   (env: DURATION=5s CONNECTIONS=64 ROUNDS=3 BULK=1G)
set -euo pipefail

BULK=${BULK:-1G}
source "$(dirname "$0")/common.sh"
require consul nginx haproxy wrk iperf3 taskset curl jq python3
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
[ -e "$stream_module" ] || { echo "tcp.sh: nginx's stream module ($stream_module) is required" >&2; exit 1; }
build_router
start_consul
start_backend

# --- the bulk backend: iperf3 -------------------------------------------------
iperf_port=$(free_port)
taskset -c "$SERVER_CORE" iperf3 -s -B 127.0.0.1 -p "$iperf_port" >"$work/iperf.log" 2>&1 &
iperf_pid=$!
pids+=("$iperf_pid")

# --- HAProxy mode tcp and nginx stream ---------------------------------------
hp_bulk=$(free_port)
hp_conn=$(free_port)
{
  haproxy_head tcp 60s
  cat <<EOF
listen bulk
  bind 127.0.0.1:$hp_bulk
  server s1 127.0.0.1:$iperf_port
listen conn
  bind 127.0.0.1:$hp_conn
  server s1 127.0.0.1:$backend_port
EOF
} >"$work/haproxy.cfg"
start_haproxy

ng_bulk=$(free_port)
ng_conn=$(free_port)
mkdir -p "$work/stream"
{
  echo "load_module $stream_module;"
  nginx_main "$work/stream" 8192
  cat <<EOF
stream {
  server { listen 127.0.0.1:$ng_bulk; proxy_pass 127.0.0.1:$iperf_port; }
  server { listen 127.0.0.1:$ng_conn; proxy_pass 127.0.0.1:$backend_port; }
}
EOF
} >"$work/stream/nginx.conf"
start_nginx stream
nginx_pid=$nginx_worker

# --- router: two TCP routes from Consul ----------------------------------------
rt_bulk=$(free_port)
rt_conn=$(free_port)
admin_port=$(free_port)
register() { # id, port, route port
  curl -sf -X PUT "$consul_addr/v1/agent/service/register" -o /dev/null \
    -d "{\"ID\": \"$1\", \"Name\": \"$1\", \"Address\": \"127.0.0.1\", \"Port\": $2, \"Tags\": [\"urlprefix-:$3 proto=tcp\"]}"
}
register bulk "$iperf_port" "$rt_bulk"
register conn "$backend_port" "$rt_conn"
start_router --proxy-addr "127.0.0.1:$(free_port)" --admin-addr "127.0.0.1:$admin_port" \
  --tcp-bind 127.0.0.1 --tcp-ports "$rt_bulk,$rt_conn"

for port in "$rt_conn" "$hp_conn" "$ng_conn"; do
  wait_for 30 curl -sf "http://127.0.0.1:$port/index.html" ||
    { tail -n 20 "$work/router.log" "$work/haproxy.log" "$work/stream/error.log" >&2; exit 1; }
done

# --- measurements ------------------------------------------------------------
secs=${DURATION%s}
# iperf3 through port $1 with ARGS...: received MB/s (10^6 bytes) and the
# proxy's ($2) CPU time per MB in us. The client's own sending and the
# receiving backend are iperf3's; only the middle differs.
iperf_measure() {
  local port=$1 pid=$2 before after out
  shift 2
  before=$(ticks "$pid")
  out=$(taskset -c "$CLIENT_CORE" iperf3 -c 127.0.0.1 -p "$port" -J "$@")
  after=$(ticks "$pid")
  jq -r --argjson ticks $((after - before)) --argjson tick_us "$tick_us" \
    '.end.sum_received | "\(.bits_per_second / 8e6 | floor) \($ticks * $tick_us / (.bytes / 1e6) | floor)"' <<<"$out"
}

names=(router haproxy nginx)
bulk_ports=("$rt_bulk" "$hp_bulk" "$ng_bulk")
conn_ports=("$rt_conn" "$hp_conn" "$ng_conn")
procs=("$router_pid" "$haproxy_pid" "$nginx_pid")
for kind in one par conn; do
  for n in "${names[@]}"; do : >"$work/$kind.$n"; done
  : >"$work/$kind.vs_haproxy" >"$work/$kind.vs_nginx"
done
echo 'wrk.headers["Connection"] = "close"' >"$work/close.lua"
echo "measuring: $ROUNDS rounds of iperf3 -n $BULK, iperf3 -P 64 -t $secs, wrk -t1 -c$CONNECTIONS -d$DURATION (Connection: close)" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= ROUNDS; r++)); do
  for i in 0 1 2; do
    iperf_measure "${bulk_ports[$i]}" "${procs[$i]}" -n "$BULK" >>"$work/one.${names[$i]}"
    iperf_measure "${bulk_ports[$i]}" "${procs[$i]}" -P 64 -t "$secs" >>"$work/par.${names[$i]}"
    wrk_measure "${procs[$i]}" -s "$work/close.lua" "http://127.0.0.1:${conn_ports[$i]}/index.html" >>"$work/conn.${names[$i]}"
  done
  for kind in one par conn; do
    round_ratio "$work/$kind.router" "$work/$kind.haproxy" "$work/$kind.vs_haproxy"
    round_ratio "$work/$kind.router" "$work/$kind.nginx" "$work/$kind.vs_nginx"
  done
  echo "round $r: 1 GB $(tail -qn1 "$work"/one.{router,haproxy,nginx} | cut -d' ' -f1 | paste -sd/) MB/s," \
    "64 streams $(tail -qn1 "$work"/par.{router,haproxy,nginx} | cut -d' ' -f1 | paste -sd/) MB/s," \
    "new conns $(tail -qn1 "$work"/conn.{router,haproxy,nginx} | cut -d' ' -f1 | paste -sd/)/s (router/haproxy/nginx)" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

med() { median <"$work/$1" | cut -d' ' -f1; }
cat <<EOF

TCP routes; median of $ROUNDS interleaved rounds; proxies and backends (iperf3 -s, nginx) on core $SERVER_CORE, clients on core $CLIENT_CORE; load average $load_before before, $load_after after

| measure | router | HAProxy | nginx | router / HAProxy | router / nginx |
| --- | ---: | ---: | ---: | ---: | ---: |
| one $BULK transfer, MB/s (iperf3 -n $BULK) | $(med one.router) | $(med one.haproxy) | $(med one.nginx) | $(med one.vs_haproxy) | $(med one.vs_nginx) |
| 64 parallel streams, MB/s (iperf3 -P 64 -t $secs) | $(med par.router) | $(med par.haproxy) | $(med par.nginx) | $(med par.vs_haproxy) | $(med par.vs_nginx) |
| new connections/s, one HTTP request each (wrk -t1 -c$CONNECTIONS, Connection: close) | $(med conn.router) | $(med conn.haproxy) | $(med conn.nginx) | $(med conn.vs_haproxy) | $(med conn.vs_nginx) |

CPU per MB (one transfer, us): router $(median <"$work/one.router" | cut -d' ' -f2), HAProxy $(median <"$work/one.haproxy" | cut -d' ' -f2), nginx $(median <"$work/one.nginx" | cut -d' ' -f2).
CPU per new connection (us): router $(median <"$work/conn.router" | cut -d' ' -f3), HAProxy $(median <"$work/conn.haproxy" | cut -d' ' -f3), nginx $(median <"$work/conn.nginx" | cut -d' ' -f3).
EOF
