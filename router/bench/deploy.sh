#!/usr/bin/env bash
# Failed requests while backends are deployed, router against nginx in the
# same run, on the same containers:
#   1. rolling deploy: every container of a service is replaced one by one
#      (start the new one, wait until Consul lists it, `docker stop` an old
#      one), through the real registrar and Docker;
#   2. kill: one container is `docker kill`ed.
# During each phase wrk sends GETs and POSTs without pause through the router
# and through nginx (default proxy_next_upstream: error timeout), and the
# failed requests (non-2xx answers and socket errors) are counted.
#
# nginx follows Consul as consul-template would: a watcher does blocking
# queries on the service's passing instances and rewrites nginx's upstream
# block and reloads it on every change, so both proxies learn of a change
# from the same registration at about the same moment.
#
# The containers are busybox httpd with a CGI that answers GET and POST, from
# an image imported locally (nothing is pulled); they listen a second after
# they start and, as PID 1, ignore SIGTERM, so `docker stop -t 1` kills them
# a second after the stop signal, like an application that drains and exits.
#
# Loopback and Docker's default bridge only; everything started here is
# removed on exit, also on failure or Ctrl-C.
#
# Usage: router/bench/deploy.sh   (env: REPLICAS=3 CONNECTIONS=2 PROFILE=release)
set -euo pipefail

REPLICAS=${REPLICAS:-3}
CONNECTIONS=${CONNECTIONS:-2}
PROFILE=${PROFILE:-release}

cd "$(dirname "$0")/../.."
root=$(pwd)
for tool in consul nginx wrk docker curl jq python3 tar; do
  command -v "$tool" >/dev/null || { echo "deploy.sh: $tool is required" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "deploy.sh: /bin/busybox is required (busybox-static)" >&2; exit 1; }

work=$(mktemp -d /tmp/edge-deploy.XXXXXX)
run_id=edge-deploy-$$
image=edge-test-busybox:deploy-$$
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  docker ps -aq --filter "label=$run_id" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=router/bench/lib.sh
source "$root/router/bench/lib.sh"

echo "building router and registrar ($PROFILE)..." >&2
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p router -p registrar
else
  cargo build -q -p router -p registrar
fi
bin=$root/target/$([ "$PROFILE" = release ] && echo release || echo debug)

# --- image ------------------------------------------------------------------
mkdir -p "$work/rootfs/bin" "$work/rootfs/www/cgi-bin" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh httpd sleep cat echo printf; do ln -s busybox "$work/rootfs/bin/$applet"; done
cp "$root/tests/src/cgi-ok.sh" "$work/rootfs/www/cgi-bin/ok"
chmod 755 "$work/rootfs/www/cgi-bin/ok"
tar -C "$work/rootfs" -cf - . |
  docker import --change "LABEL edge-test=true" --change "ENV PATH=/bin" - "$image" >/dev/null

# --- Consul, registrar, router ----------------------------------------------
consul_http=$(free_port)
cat >"$work/consul.hcl" <<EOF
ports { http = $consul_http, dns = -1, serf_lan = $(free_port), serf_wan = -1, server = $(free_port), grpc = -1 }
EOF
consul agent -dev -log-level=warn -bind=127.0.0.1 -client=127.0.0.1 -node=edge-deploy \
  -config-file="$work/consul.hcl" >"$work/consul.log" 2>&1 &
pids+=($!)
consul_addr=http://127.0.0.1:$consul_http
wait_for 20 bash -c "curl -sf $consul_addr/v1/status/leader | grep -q :"

node=edge-deploy-$$
service=deploy-$$
host=$service.local
RUST_LOG=info "$bin/registrar" --consul-addr "$consul_addr" --node-name "$node" --host-ip 127.0.0.1 \
  >"$work/registrar.log" 2>&1 &
pids+=($!)
router_port=$(free_port)
admin_port=$(free_port)
RUST_LOG=warn "$bin/router" --consul-addr "$consul_addr" --proxy-addr "127.0.0.1:$router_port" \
  --admin-addr "127.0.0.1:$admin_port" >"$work/router.log" 2>&1 &
pids+=($!)
admin=http://127.0.0.1:$admin_port
wait_for 20 curl -sf "$admin/health"

# --- nginx following Consul -------------------------------------------------
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body; proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fcgi; uwsgi_temp_path $work/nginx/uwsgi; scgi_temp_path $work/nginx/scgi;
  include $work/nginx/upstream.conf;
  server { listen 127.0.0.1:$nginx_port; location / {
    proxy_pass http://svc; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
EOF
# Until the first instance registers, an upstream nothing listens on.
echo "upstream svc { server 127.0.0.1:1; keepalive 16; }" >"$work/nginx/upstream.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
wait_for 10 test -s "$work/nginx/nginx.pid"
python3 - "$consul_addr" "$service" "$work/nginx" <<'EOF' &
import json, subprocess, sys, urllib.request
consul, service, d = sys.argv[1:4]
index = "0"
while True:
    try:
        url = f"{consul}/v1/health/service/{service}?passing=1&index={index}&wait=30s"
        with urllib.request.urlopen(url, timeout=40) as r:
            index = r.headers.get("X-Consul-Index", "0")
            entries = json.load(r)
    except Exception:
        continue
    servers = sorted(f"{e['Service']['Address']}:{e['Service']['Port']}" for e in entries) or ["127.0.0.1:1"]
    with open(f"{d}/upstream.conf", "w") as f:
        f.write("upstream svc { " + " ".join(f"server {s};" for s in servers) + " keepalive 16; }\n")
    subprocess.run(["nginx", "-p", d, "-c", f"{d}/nginx.conf", "-e", f"{d}/error.log", "-s", "reload"],
                   stderr=subprocess.DEVNULL)
EOF
pids+=($!)

# --- containers ---------------------------------------------------------------
start_container() { # $1 name
  docker run -d --name "$1" --label "$run_id" --label edge-test -p 80 \
    -e "SERVICE_NAME=$service" -e "SERVICE_TAGS=urlprefix-$host/" "$image" \
    sh -c 'sleep 1; exec httpd -f -p 80 -h /www' >/dev/null
}
in_consul() { # $1 container name
  curl -sf "$consul_addr/v1/health/service/$service?passing=1" | jq -e --arg n "$1" \
    '[.[] | select(.Service.ID | endswith(":" + $n + ":80"))] | length == 1' >/dev/null
}

cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "payload=1"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
EOF
# Starts the four wrk runs for $1 seconds; outputs in $work/wrk-<proxy>-<method>.
load() {
  local proxy port method
  for proxy in router nginx; do
    port=$([ "$proxy" = router ] && echo "$router_port" || echo "$nginx_port")
    for method in GET POST; do
      local script=()
      [ "$method" = POST ] && script=(-s "$work/post.lua")
      wrk -t1 -c"$CONNECTIONS" -d"$1s" "${script[@]}" -H "Host: $host" \
        "http://127.0.0.1:$port/cgi-bin/ok" >"$work/wrk-$proxy-$method" 2>&1 &
      loaders+=($!)
    done
  done
}
# "requests failed" of one wrk output.
tally() {
  local f=$1 total non2xx sock
  total=$(awk '/requests in/ { print $1 }' "$f")
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$f")
  sock=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$f")
  echo "${total:-0} $(( ${non2xx:-0} + ${sock:-0} ))"
}
report() { # $1 phase
  local proxy method
  for proxy in router nginx; do
    for method in GET POST; do
      read -r total failed < <(tally "$work/wrk-$proxy-$method")
      printf '%-8s %-6s %-5s requests %7d  failed %5d\n' "$1" "$proxy" "$method" "$total" "$failed"
    done
  done
}

names=()
for i in $(seq 1 "$REPLICAS"); do
  names+=("$run_id-v1-$i")
  start_container "$run_id-v1-$i"
done
wait_for 30 bash -c "[ \"\$(curl -sf $admin/api/routes | jq -r --arg h $host '[.[] | select(.host == \$h)] | length')\" = $REPLICAS ]"
wait_for 10 curl -sf -H "Host: $host" "http://127.0.0.1:$nginx_port/cgi-bin/ok"
sleep 1

# --- 1. rolling deploy --------------------------------------------------------
per_step=4
loaders=()
load $((2 + REPLICAS * per_step + 2))
sleep 2
for i in $(seq 1 "$REPLICAS"); do
  step_start=$SECONDS
  start_container "$run_id-v2-$i"
  wait_for 20 in_consul "$run_id-v2-$i"
  docker stop -t 1 "$run_id-v1-$i" >/dev/null
  docker rm "$run_id-v1-$i" >/dev/null
  while ((SECONDS - step_start < per_step)); do sleep 0.1; done
done
wait "${loaders[@]}"
report deploy

# --- 2. kill ----------------------------------------------------------------------
loaders=()
load 8
sleep 3
docker kill "$run_id-v2-1" >/dev/null
wait "${loaders[@]}"
report kill
