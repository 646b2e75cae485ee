#!/usr/bin/env bash
# gRPC benchmark: unary calls/s through the router (`proto=grpc`, h2c to
# the instance) against nginx (`grpc_pass`, keepalive upstream) in front of
# the same gRPC backend, h2load sending one small protobuf message from a
# file on every call. The backend is router/examples/grpc_echo.rs (hyper,
# one thread, echoes the message with `grpc-status: 0` in the trailers):
# fast enough that the proxies, not the backend, are what is measured. Each
# round measures the router then nginx; the ratio router / nginx is from
# the same round; medians of $ROUNDS rounds. Backend and proxies on one
# core, h2load on the other, as load.sh does. Every call's answer is
# checked once by a real grpcio client through each proxy before measuring.
#
# Usage: router/bench/grpc.sh   (env: DURATION=5s ROUNDS=3 H2_CONNS=10 H2_STREAMS=10)
set -euo pipefail

H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
source "$(dirname "$0")/common.sh"
require consul nginx h2load taskset curl jq python3
build_router
cargo build --release -q -p router --example grpc_echo
start_consul

# --- backend -------------------------------------------------------------------
backend_port=$(free_port)
taskset -c "$SERVER_CORE" "$root/target/release/examples/grpc_echo" "$backend_port" >"$work/backend.log" 2>&1 &
backend_pid=$!
pids+=("$backend_pid")

# One message of t.T/Unary: a protobuf with field 1 (string) "hello, edge
# router" and field 2 (varint) 150, gRPC-framed (uncompressed flag, length).
python3 - "$work" <<'EOF'
import struct, sys
msg = b"\x0a\x12hello, edge router\x10\x96\x01"
open(sys.argv[1] + "/message.pb", "wb").write(msg)
open(sys.argv[1] + "/call.bin", "wb").write(b"\x00" + struct.pack(">I", len(msg)) + msg)
EOF

# --- nginx grpc_pass -------------------------------------------------------------
nginx_port=$(free_port)
mkdir -p "$work/proxy"
nginx_conf "$work/proxy" "upstream grpcb { server 127.0.0.1:$backend_port; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$nginx_port http2; location / { grpc_pass grpc://grpcb; } }" >"$work/proxy/nginx.conf"
start_nginx proxy
nginx_pid=$nginx_worker

# --- router ------------------------------------------------------------------------
router_port=$(free_port)
admin_port=$(free_port)
curl -sf -X PUT "$consul_addr/v1/agent/service/register" -o /dev/null \
  -d "{\"ID\": \"greeter\", \"Name\": \"greeter\", \"Address\": \"127.0.0.1\", \"Port\": $backend_port, \"Tags\": [\"urlprefix-/t.T/ proto=grpc\"]}"
start_router --proxy-addr "127.0.0.1:$router_port" --admin-addr "127.0.0.1:$admin_port"

# A real grpcio call through each proxy: the answer is the message sent.
grpc_check() {
  /usr/bin/python3 - "$1" "$work/message.pb" <<'EOF'
import sys, grpc
msg = open(sys.argv[2], "rb").read()
with grpc.insecure_channel(sys.argv[1]) as ch:
    assert ch.unary_unary("/t.T/Unary")(msg, timeout=2) == msg
EOF
}
for port in "$router_port" "$nginx_port"; do
  wait_for 30 grpc_check "127.0.0.1:$port" ||
    { tail -n 20 "$work/router.log" "$work/proxy/error.log" >&2; exit 1; }
done

# --- measurements --------------------------------------------------------------------
secs=${DURATION%s}
# h2load: "calls/s cpu_us" for process $2; fails unless every call got a 2xx.
h2_measure() {
  local before after out
  before=$(ticks "$2")
  out=$(taskset -c "$CLIENT_CORE" h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$secs" -d "$work/call.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$1/t.T/Unary")
  after=$(ticks "$2")
  awk -v ticks=$((after - before)) -v tick_us="$tick_us" '
    /^finished in/ { rps = $4 }
    /^requests:/ { n = $8; failed = $10 + $12 }
    /^status codes:/ { non2xx = $5 + $7 + $9 }
    END { if (failed + non2xx > 0 || n == 0) { print "failed calls: " failed + non2xx > "/dev/stderr"; exit 1 }
          printf "%.0f %.2f\n", rps, ticks * tick_us / n }' <<<"$out"
}

: >"$work/router" >"$work/nginx" >"$work/ratio"
echo "measuring: $ROUNDS rounds of h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D $secs" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= ROUNDS; r++)); do
  h2_measure "$router_port" "$router_pid" >>"$work/router"
  h2_measure "$nginx_port" "$nginx_pid" >>"$work/nginx"
  round_ratio "$work/router" "$work/nginx" "$work/ratio"
  echo "round $r: router $(tail -n1 "$work/router" | cut -d' ' -f1)/s, nginx $(tail -n1 "$work/nginx" | cut -d' ' -f1)/s" >&2
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

med() { median <"$work/$1" | cut -d' ' -f1; }
cat <<EOF

gRPC unary calls, $(stat -c %s "$work/call.bin")-byte message; median of $ROUNDS interleaved rounds; backend and proxies on core $SERVER_CORE, h2load on core $CLIENT_CORE; load average $load_before before, $load_after after

| measure | router | nginx grpc_pass | router / nginx |
| --- | ---: | ---: | ---: |
| unary calls/s (h2load -t1 -c$H2_CONNS -m$H2_STREAMS) | $(med router) | $(med nginx) | $(med ratio) |

CPU per call (us): router $(median <"$work/router" | cut -d' ' -f2), nginx $(median <"$work/nginx" | cut -d' ' -f2).
EOF
