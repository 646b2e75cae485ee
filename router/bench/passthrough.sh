#!/usr/bin/env bash
# TLS passthrough benchmark: the router passing TLS through by SNI
# (`urlprefix-localhost/ tls=passthrough`) against HAProxy doing the same
# (`mode tcp`, `req_ssl_sni`), both in front of one nginx that terminates
# TLS 1.3 itself (ECDSA P-256), with nginx reached directly as the floor:
#   1. HTTPS keep-alive requests/s through the passed-through connections
#      (wrk over TLS: the relay's byte copying);
#   2. new connections/s, one request each (wrk with `Connection: close`:
#      reading the ClientHello, choosing the route, connecting, relaying;
#      wrk keeps its TLS session, so nginx mostly resumes).
# The SNI name is `localhost` (wrk sends the URL's host as SNI and resolves
# it to 127.0.0.1). Rounds are interleaved and the median kept; ratios are
# router / HAProxy and router / direct from the same round. CPU per
# request is the proxy's own (the backend's for direct). Servers on one
# core, clients on the other, as load.sh does.
#
# Usage: router/bench/passthrough.sh   (env: DURATION=5s CONNECTIONS=64 ROUNDS=3)
set -euo pipefail

source "$(dirname "$0")/common.sh"
require consul nginx haproxy wrk openssl taskset curl python3
build_router
start_consul

# --- the instance: nginx terminating TLS, serving 100 bytes -----------------
ec_cert localhost "$work/localhost.pem"
start_backend "ssl_certificate $work/localhost-cert.pem; ssl_certificate_key $work/localhost-key.pem;
    ssl_protocols TLSv1.3; ssl_session_cache shared:SSL:10m;"

# --- HAProxy passing through by SNI ----------------------------------------
haproxy_port=$(free_port)
{
  haproxy_head tcp
  cat <<EOF
frontend fe
  bind 127.0.0.1:$haproxy_port
  tcp-request inspect-delay 5s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend be if { req_ssl_sni -i localhost }
backend be
  server s1 127.0.0.1:$backend_port
EOF
} >"$work/haproxy.cfg"
start_haproxy

# --- router -------------------------------------------------------------------
mkdir -p "$work/certs"
ec_cert router.test "$work/certs/router.pem"
register_service kube "$backend_port" "urlprefix-localhost/ tls=passthrough"
router_tls=$(free_port)
admin_port=$(free_port)
admin=http://127.0.0.1:$admin_port
start_router --proxy-addr "127.0.0.1:$(free_port)" --admin-addr "127.0.0.1:$admin_port" \
  --tls-addr "127.0.0.1:$router_tls" --cert-source "dir:$work/certs"

# Every path must show the instance's certificate (CN=localhost), not the router's.
for port in "$router_tls" "$haproxy_port"; do
  wait_for 30 bash -c "openssl s_client -connect 127.0.0.1:$port -servername localhost </dev/null 2>/dev/null | grep -q 'subject=CN = localhost'" ||
    { tail -n 20 "$work/router.log" "$work/haproxy.log" >&2; exit 1; }
  wait_for 10 curl -sfk "https://localhost:$port/index.html"
done

# --- measurements --------------------------------------------------------------
echo 'wrk.headers["Connection"] = "close"' >"$work/close.lua"
names=(router haproxy direct)
ports=("$router_tls" "$haproxy_port" "$backend_port")
procs=("$router_pid" "$haproxy_pid" "$backend_worker")
for kind in ka new; do
  for n in "${names[@]}"; do : >"$work/$kind.$n"; done
  : >"$work/$kind.vs_haproxy" >"$work/$kind.vs_direct"
done
echo "measuring: $ROUNDS rounds of wrk -t1 -c$CONNECTIONS -d$DURATION, keep-alive and Connection: close" >&2
for ((r = 1; r <= ROUNDS; r++)); do
  for i in 0 1 2; do
    url=https://localhost:${ports[$i]}/index.html
    wrk_measure "${procs[$i]}" "$url" >>"$work/ka.${names[$i]}"
    wrk_measure "${procs[$i]}" -s "$work/close.lua" "$url" >>"$work/new.${names[$i]}"
  done
  for kind in ka new; do
    round_ratio "$work/$kind.router" "$work/$kind.haproxy" "$work/$kind.vs_haproxy"
    round_ratio "$work/$kind.router" "$work/$kind.direct" "$work/$kind.vs_direct"
  done
done
for kind in ka new; do
  for n in "${names[@]}"; do echo "rounds $kind $n: $(tr '\n' ';' <"$work/$kind.$n")" >&2; done
done
passed=$(curl -sf "$admin/metrics" | awk '$1 == "router_tls_handshakes_total{result=\"passthrough\"}" { print $2 }')
terminated=$(curl -sf "$admin/metrics" | awk '$1 == "router_tls_handshakes_total{result=\"ok\"}" { print $2 }')

med() { median <"$work/$1" | cut -d' ' -f"${2:-1}"; }
cat <<EOF
TLS passthrough by SNI to an nginx terminating TLS 1.3 (ECDSA P-256); median of $ROUNDS interleaved rounds; backend and proxies on core $SERVER_CORE, clients on core $CLIENT_CORE

| measurement | router | HAProxy | direct | router / HAProxy | router / direct |
| --- | ---: | ---: | ---: | ---: | ---: |
| keep-alive req/s through the passed-through connection (wrk -t1 -c$CONNECTIONS) | $(med ka.router) | $(med ka.haproxy) | $(med ka.direct) | $(med ka.vs_haproxy) | $(med ka.vs_direct) |
| new connections/s, one request each (Connection: close) | $(med new.router) | $(med new.haproxy) | $(med new.direct) | $(med new.vs_haproxy) | $(med new.vs_direct) |
| p99 ms, keep-alive | $(med ka.router 2) | $(med ka.haproxy 2) | $(med ka.direct 2) | | |
| p99 ms, new connections | $(med new.router 2) | $(med new.haproxy 2) | $(med new.direct 2) | | |

CPU per request of the proxy (us): keep-alive router $(med ka.router 3), HAProxy $(med ka.haproxy 3); new connections router $(med new.router 3), HAProxy $(med new.haproxy 3) (direct: the backend's, $(med ka.direct 3) and $(med new.direct 3)).
Router: $passed ClientHellos passed through, $terminated handshakes terminated during the runs.
EOF
