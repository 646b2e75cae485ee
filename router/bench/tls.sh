#!/usr/bin/env bash
# TLS load benchmark: the router terminating TLS against nginx
# (`ssl_certificate`, keepalive upstream) and HAProxy (`ssl crt`) doing the
# same work in front of the same backend, with one ECDSA P-256 certificate,
# in one run so every figure has its baselines measured at the same moment:
#   1. HTTPS keep-alive requests/s (wrk over TLS 1.3);
#   2. new TLS connections/s, one request each (wrk with `Connection:
#      close`; wrk keeps its session, so most of these resume: the router's
#      counts of full and resumed handshakes are printed);
#   3. new TLS connections/s from $S_TIME parallel `openssl s_time`
#      clients, full handshakes (`-new`) and resumed (`-reuse`);
#   4. HTTP/2 over TLS (h2load, 10 connections x 10 streams);
#   5. the router's RSS and load time with $CERTS certificates.
# Rounds are interleaved and the median kept; ratios are router / nginx and
# router / HAProxy from the same round. Servers (backend, proxies) on one
# core, clients on the other, as load.sh does.
#
# Usage: router/bench/tls.sh   (env: DURATION=5s CONNECTIONS=64 ROUNDS=3 CERTS=1000)
set -euo pipefail

CERTS=${CERTS:-1000}
source "$(dirname "$0")/common.sh"
require consul nginx haproxy wrk h2load openssl taskset curl jq python3
build_router
start_consul
start_backend

# --- one ECDSA P-256 certificate -------------------------------------------
mkdir -p "$work/certs"
ec_cert bench.test "$work/certs/bench.pem"

# --- nginx and HAProxy terminating TLS -------------------------------------
nginx_port=$(free_port)
mkdir -p "$work/proxy"
nginx_conf "$work/proxy" "upstream backend { server 127.0.0.1:$backend_port; keepalive 64; }
  server { listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $work/bench.test-cert.pem; ssl_certificate_key $work/bench.test-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" \
  >"$work/proxy/nginx.conf"
start_nginx proxy
nginx_pid=$nginx_worker

haproxy_port=$(free_port)
{
  haproxy_head http
  cat <<EOF
  http-reuse always
frontend fe
  bind 127.0.0.1:$haproxy_port ssl crt $work/certs/bench.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:$backend_port
EOF
} >"$work/haproxy.cfg"
start_haproxy

# --- router ------------------------------------------------------------------
router_port=$(free_port)
router_tls=$(free_port)
admin_port=$(free_port)
admin=http://127.0.0.1:$admin_port
register_service bench "$backend_port" "urlprefix-/"
start_router --proxy-addr "127.0.0.1:$router_port" --admin-addr "127.0.0.1:$admin_port" \
  --tls-addr "127.0.0.1:$router_tls" --cert-source "dir:$work/certs"

for port in "$router_tls" "$nginx_port" "$haproxy_port"; do
  wait_for 30 curl -sfk "https://127.0.0.1:$port/index.html" ||
    { tail -n 20 "$work/router.log" "$work/haproxy.log" "$work/proxy/error.log" >&2; exit 1; }
done

# --- measurements ------------------------------------------------------------
echo 'wrk.headers["Connection"] = "close"' >"$work/close.lua"
handshakes() { curl -sf "$admin/metrics" | awk -v r="$1" '$1 == "router_tls_handshakes_total{result=\"" r "\"}" { print $2 }'; }
secs=${DURATION%s}
# h2load: "req/s cpu_us" for process $2.
h2_measure() {
  local before after out
  before=$(ticks "$2")
  out=$(taskset -c "$CLIENT_CORE" h2load -t1 -c10 -m10 -D "$secs" "$1/index.html")
  after=$(ticks "$2")
  awk -v ticks=$((after - before)) -v tick_us="$tick_us" '
    /^finished in/ { rps = $4 }
    /^requests:/ { n = $8 }
    END { printf "%.0f %.2f\n", rps, ticks * tick_us / (n ? n : 1) }' <<<"$out"
}
# openssl s_time: connections/s (one request each, HTTP/1.0) of $S_TIME
# clients in parallel, each opening one connection after the other; $2 -new
# (full handshakes) or -reuse (resumed).
S_TIME=${S_TIME:-8}
s_time() {
  local i
  for ((i = 0; i < S_TIME; i++)); do
    taskset -c "$CLIENT_CORE" openssl s_time -connect "$1" "$2" -time "$secs" -www /index.html 2>/dev/null |
      awk '/connections in .* real seconds/ { printf "%.0f\n", $1 / $4 }' | tail -n1 &
  done | awk '{ s += $1 } END { print s }'
}

names=(router nginx haproxy)
ports=("$router_tls" "$nginx_port" "$haproxy_port")
procs=("$router_pid" "$nginx_pid" "$haproxy_pid")
for kind in ka new h2 full reuse; do
  for n in "${names[@]}"; do : >"$work/$kind.$n"; done
  : >"$work/$kind.vs_nginx" >"$work/$kind.vs_haproxy"
done
echo "measuring: $ROUNDS rounds of wrk -t1 -c$CONNECTIONS -d$DURATION, h2load -c10 -m10, s_time" >&2
full_before=$(handshakes ok)
resumed_before=$(handshakes resumed)
for ((r = 1; r <= ROUNDS; r++)); do
  for i in 0 1 2; do
    url=https://127.0.0.1:${ports[$i]}
    wrk_measure "${procs[$i]}" "$url/index.html" >>"$work/ka.${names[$i]}"
    wrk_measure "${procs[$i]}" -s "$work/close.lua" "$url/index.html" >>"$work/new.${names[$i]}"
    h2_measure "$url" "${procs[$i]}" >>"$work/h2.${names[$i]}"
    s_time "127.0.0.1:${ports[$i]}" -new >>"$work/full.${names[$i]}"
    s_time "127.0.0.1:${ports[$i]}" -reuse >>"$work/reuse.${names[$i]}"
  done
  for kind in ka new h2 full reuse; do
    round_ratio "$work/$kind.router" "$work/$kind.nginx" "$work/$kind.vs_nginx"
    round_ratio "$work/$kind.router" "$work/$kind.haproxy" "$work/$kind.vs_haproxy"
  done
done
full_after=$(handshakes ok)
resumed_after=$(handshakes resumed)
for kind in ka new h2 full reuse; do
  for n in "${names[@]}"; do echo "rounds $kind $n: $(tr '\n' ';' <"$work/$kind.$n")" >&2; done
done
rss_1=$(rss_mb "$router_pid")

# --- $CERTS certificates: load time and RSS --------------------------------
echo "making $CERTS certificates..." >&2
mkdir -p "$work/many"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/many.key" 2>/dev/null
seq 1 "$CERTS" | xargs -P 2 -I{} sh -c "openssl req -x509 -key '$work/many.key' -days 2 -subj /CN=h{}.bench \
  -addext subjectAltName=DNS:h{}.bench -out '$work/many/h{}-cert.pem' 2>/dev/null && cp '$work/many.key' '$work/many/h{}-key.pem'"
many_admin=$(free_port)
t0=$(date +%s.%N)
RUST_LOG=info taskset -c "$SERVER_CORE" "$router_bin" --consul-addr "$consul_addr" \
  --proxy-addr "127.0.0.1:$(free_port)" --admin-addr "127.0.0.1:$many_admin" \
  --tls-addr "127.0.0.1:$(free_port)" --cert-source "dir:$work/many" >"$work/many.log" 2>&1 &
many_pid=$!
pids+=("$many_pid")
wait_for 120 bash -c "[ \"\$(curl -sf http://127.0.0.1:$many_admin/api/certs | jq length)\" -ge $CERTS ]"
t1=$(date +%s.%N)
load_took=$(grep -o 'took=[0-9.]*[a-zµ]*' "$work/many.log" | tail -n1)
rss_many=$(rss_mb "$many_pid")

med() { median <"$work/$1" | cut -d' ' -f1; }
cat <<EOF
TLS 1.3, one ECDSA P-256 certificate; median of $ROUNDS interleaved rounds; backend and proxies on core $SERVER_CORE, clients on core $CLIENT_CORE

| measurement | router | nginx | HAProxy | router / nginx | router / HAProxy |
| --- | ---: | ---: | ---: | ---: | ---: |
| HTTPS keep-alive req/s (wrk -t1 -c$CONNECTIONS) | $(med ka.router) | $(med ka.nginx) | $(med ka.haproxy) | $(med ka.vs_nginx) | $(med ka.vs_haproxy) |
| new TLS connections/s, one request each (wrk -c$CONNECTIONS, Connection: close; mostly resumed) | $(med new.router) | $(med new.nginx) | $(med new.haproxy) | $(med new.vs_nginx) | $(med new.vs_haproxy) |
| full TLS 1.3 handshakes/s, one request each ($S_TIME x openssl s_time -new) | $(med full.router) | $(med full.nginx) | $(med full.haproxy) | $(med full.vs_nginx) | $(med full.vs_haproxy) |
| resumed handshakes/s, one request each ($S_TIME x openssl s_time -reuse) | $(med reuse.router) | $(med reuse.nginx) | $(med reuse.haproxy) | $(med reuse.vs_nginx) | $(med reuse.vs_haproxy) |
| HTTP/2 req/s (h2load -c10 -m10) | $(med h2.router) | $(med h2.nginx) | $(med h2.haproxy) | $(med h2.vs_nginx) | $(med h2.vs_haproxy) |

CPU per request (keep-alive, us): router $(median <"$work/ka.router" | cut -d' ' -f3), nginx $(median <"$work/ka.nginx" | cut -d' ' -f3), HAProxy $(median <"$work/ka.haproxy" | cut -d' ' -f3).
Router handshakes during the runs: $((full_after - full_before)) full, $((resumed_after - resumed_before)) resumed.
Router RSS: $rss_1 MB with 1 certificate (after the runs); $rss_many MB idle with $CERTS certificates.
$CERTS certificates: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s from process start to all listed in /api/certs (store read $load_took).
EOF
