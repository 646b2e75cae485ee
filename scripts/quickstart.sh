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

# The router, on the ports of docs/router.md (loopback only here).
echo "quickstart: starting router on 127.0.0.1:9999, admin 127.0.0.1:9998 (log: .run/router.log)"
RUST_LOG=${RUST_LOG:-info} "$root/target/release/router" --consul-addr "$CONSUL_HTTP_ADDR" \
  --proxy-addr 127.0.0.1:9999 --admin-addr 127.0.0.1:9998 >"$run/router.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:9998/health >/dev/null 2>&1 && break
  sleep 0.1
done

# The registrar (Docker source) and a demo container it registers from its
# SERVICE_* env: a busybox image built locally (nothing can be pulled here)
# serving a page on a port published on loopback. The trap removes both.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "quickstart: starting registrar (log: .run/registrar.log)"
  RUST_LOG=${RUST_LOG:-info} "$root/target/release/registrar" --consul-addr "$CONSUL_HTTP_ADDR" \
    >"$run/registrar.log" 2>&1 &
  pids+=($!)
  rootfs="$run/demo-rootfs"
  rm -rf "$rootfs" && mkdir -p "$rootfs/bin" "$rootfs/www" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in sh httpd sleep; do ln -s busybox "$rootfs/bin/$applet"; done
  echo "hello from the edge demo container" >"$rootfs/www/index.html"
  demo_image="edge-demo-busybox:$(sha256sum /bin/busybox | cut -c1-12)"
  tar -C "$rootfs" -cf - . | docker import --change 'LABEL edge-demo=true' - "$demo_image" >/dev/null
  demo_container="edge-demo-$$"
  cleanups+=("docker rm -f $demo_container >/dev/null 2>&1; docker rmi $demo_image >/dev/null 2>&1")
  docker run -d --name "$demo_container" --label edge-demo=true -p 127.0.0.1::80 \
    -e SERVICE_NAME=demo -e SERVICE_TAGS=urlprefix-demo.local/ "$demo_image" httpd -f -p 80 -h /www >/dev/null
  echo "quickstart: demo container $demo_container (SERVICE_TAGS=urlprefix-demo.local/), registered by the registrar"
else
  # Without Docker: a static page on a free loopback port, registered in
  # Consul by hand with the same route tag, so the curl below still answers.
  echo "quickstart: Docker is not available: demo backend registered by hand instead of by the registrar"
  demo_dir="$run/demo"
  mkdir -p "$demo_dir"
  echo "hello from the edge demo backend" >"$demo_dir/index.html"
  demo_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m http.server "$demo_port" --bind 127.0.0.1 --directory "$demo_dir" >"$run/demo.log" 2>&1 &
  pids+=($!)
  curl -fsS -X PUT "$CONSUL_HTTP_ADDR/v1/agent/service/register" -d "{\"ID\": \"quickstart-demo\", \"Name\": \"demo\",
    \"Address\": \"127.0.0.1\", \"Port\": $demo_port, \"Tags\": [\"urlprefix-demo.local/\"]}" >/dev/null
  cleanups+=("curl -fsS -X PUT $CONSUL_HTTP_ADDR/v1/agent/service/deregister/quickstart-demo >/dev/null")
fi
for _ in $(seq 1 100); do
  curl -fsS -H 'Host: demo.local' http://127.0.0.1:9999/ >/dev/null 2>&1 && break
  sleep 0.1
done

echo
echo "Consul UI:  $CONSUL_HTTP_ADDR/ui/"
echo "Router UI:  http://127.0.0.1:9998/   (routes, overrides, problems; /api/routes, /metrics, /health)"
echo "Try:        curl -H 'Host: demo.local' http://127.0.0.1:9999/"
echo "Ctrl-C stops everything started here."
wait
