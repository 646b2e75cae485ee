# Shared by the load scripts (load.sh, tls.sh, tcp.sh, grpc.sh): sourced, not run. A temp
# dir and cleanup of every process started, free ports, waiting, a Consul
# dev agent, nginx configuration, the backend nginx serving a 100-byte
# file, and the figures' arithmetic. Loopback only.

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}

cd "$(dirname "$0")/../.."
root=$(pwd)

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

require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$(basename "$0"): $tool is required" >&2; exit 1; }
  done
}

# free_port, wait_for
# shellcheck source=router/bench/lib.sh
source "$root/router/bench/lib.sh"

build_router() {
  echo "building the router (release)..." >&2
  cargo build --release -q -p router --bin router
  router_bin=$root/target/release/router
}

# A Consul dev agent on the client core; sets consul_addr.
start_consul() {
  local consul_http
  consul_http=$(free_port)
  cat >"$work/consul.hcl" <<EOF
ports { http = $consul_http, dns = -1, serf_lan = $(free_port), serf_wan = -1, server = $(free_port), grpc = -1 }
EOF
  taskset -c "$CLIENT_CORE" consul agent -dev -log-level=warn -bind=127.0.0.1 -client=127.0.0.1 \
    -node=edge-load -config-file="$work/consul.hcl" >"$work/consul.log" 2>&1 &
  pids+=($!)
  consul_addr=http://127.0.0.1:$consul_http
  wait_for 20 bash -c "curl -sf $consul_addr/v1/status/leader | grep -q :"
}

# nginx's main context: one worker in the foreground, pid and error log in $1.
nginx_main() { # $1 dir, $2 worker_connections
  cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections ${2:-4096}; }
EOF
}

nginx_conf() { # $1 dir, $2 server block
  nginx_main "$1"
  cat <<EOF
http {
  access_log off;
  client_body_temp_path $1/body; proxy_temp_path $1/proxy; fastcgi_temp_path $1/fcgi;
  uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
  keepalive_requests 1000000;
  $2
}
EOF
}

# Starts nginx from $work/$1/nginx.conf on the server core; sets
# nginx_master and nginx_worker (the process that does the work).
start_nginx() {
  taskset -c "$SERVER_CORE" nginx -p "$work/$1" -c "$work/$1/nginx.conf" -e "$work/$1/error.log" &
  nginx_master=$!
  pids+=($!)
  wait_for 10 pgrep -P "$nginx_master"
  nginx_worker=$(pgrep -P "$nginx_master" | head -n1)
}

# Starts the router on the server core with --consul-addr and ARGS...,
# logging to $work/router.log; sets router_pid.
start_router() {
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$router_bin" --consul-addr "$consul_addr" "$@" >"$work/router.log" 2>&1 &
  router_pid=$!
  pids+=("$router_pid")
}

# The start of a HAProxy configuration: one thread, mode $1, client and
# server timeouts $2 (default 30s); the caller adds its sections.
haproxy_head() {
  cat <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode $1
  timeout connect 5s
  timeout client ${2:-30s}
  timeout server ${2:-30s}
EOF
}

# Starts HAProxy from $work/haproxy.cfg on the server core; sets haproxy_pid.
start_haproxy() {
  taskset -c "$SERVER_CORE" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  haproxy_pid=$!
  pids+=("$haproxy_pid")
}

# The backend: nginx serving a 100-byte file; sets backend_port and
# backend_worker. With $1 (nginx `ssl_*` directives) it serves over TLS.
start_backend() {
  local tls=${1:-}
  backend_port=$(free_port)
  mkdir -p "$work/www" "$work/backend"
  head -c 100 /dev/zero | tr '\0' 'x' >"$work/www/index.html"
  # nginx workers run as an unprivileged user when started as root.
  chmod 755 "$work" "$work/www"
  chmod 644 "$work/www/index.html"
  nginx_conf "$work/backend" "server { listen 127.0.0.1:$backend_port${tls:+ ssl}; root $work/www; $tls }" \
    >"$work/backend/nginx.conf"
  start_nginx backend
  backend_worker=$nginx_worker
  if [ -n "$tls" ]; then
    wait_for 10 curl -sfk "https://127.0.0.1:$backend_port/index.html"
  else
    wait_for 10 curl -sf "http://127.0.0.1:$backend_port/index.html"
  fi
}

# A self-signed ECDSA P-256 certificate for the DNS name $1:
# $work/$1-cert.pem, $work/$1-key.pem, and both in one file at $2.
ec_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/$1-key.pem" \
    -out "$work/$1-cert.pem" -days 2 -subj "/CN=$1" -addext "subjectAltName=DNS:$1" 2>/dev/null
  chmod 644 "$work/$1-key.pem" "$work/$1-cert.pem"
  cat "$work/$1-cert.pem" "$work/$1-key.pem" >"$2"
}

# Registers service $1 (also its ID) at 127.0.0.1:$2 with the route tag $3.
register_service() {
  curl -sf -X PUT "$consul_addr/v1/agent/service/register" -o /dev/null \
    -d "{\"ID\": \"$1\", \"Name\": \"$1\", \"Address\": \"127.0.0.1\", \"Port\": $2, \"Tags\": [\"$3\"]}"
}

# CPU time (user + system) of a process so far, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# Appends the ratio of the last lines' first fields of two files to a third:
# two paths measured back to back in one round, so slow phases of the
# machine hit both.
round_ratio() { ratio "$(tail -n1 "$1" | cut -d' ' -f1)" "$(tail -n1 "$2" | cut -d' ' -f1)" >>"$3"; echo >>"$3"; }
# The median line (by its first field).
median() { sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
rss_mb() { awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$1/status"; }

# Runs `wrk -t1 -c$CONNECTIONS -d$DURATION --latency ARGS...` on the client
# core and prints "req/s p99_ms cpu_us", cpu_us being the CPU time per
# request of process $1 (the proxy, or the backend for direct runs): a
# figure the machine's noise moves far less than req/s, since it does not
# count time spent waiting for the core. Fails on non-2xx answers.
wrk_measure() {
  local pid=$1 out before after
  shift
  before=$(ticks "$pid")
  out=$(taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  after=$(ticks "$pid")
  if grep -q "Non-2xx" <<<"$out"; then echo "$(basename "$0"): non-2xx answers: $*" >&2; echo "$out" >&2; return 1; fi
  awk -v ticks=$((after - before)) -v tick_us="$tick_us" '
    /Requests\/sec:/ { rps = $2 }
    / requests in / { n = $1 }
    $1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
                  p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
    END { printf "%.0f %.2f %.2f\n", rps, p99, ticks * tick_us / n }' <<<"$out"
}
