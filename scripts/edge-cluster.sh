#!/usr/bin/env bash
# The whole edge on one machine, in network namespaces: three edge nodes, each
# with a Consul server, the router and vipd (100 ms adverts, --check-url on
# the router's /health, --track-url on /health/consul with weight 20), a
# worker with a Consul client agent, the registrar and Docker containers, and
# a client namespace to curl the VIP from. Needs root (ip netns), consul,
# python3, curl and a Docker engine (without one, app.example.com is a plain
# backend registered by hand and the rest works the same).
#
# The worker's containers: two busybox httpd containers (an image built
# locally from /bin/busybox, nothing is pulled) labelled
# SERVICE_TAGS=urlprefix-app.example.com/, registered by the registrar
# running on the worker with --internal in the worker's Consul agent. They
# sit on the cluster network itself: a Docker macvlan network whose parent is
# a veth (edge-cl-dk) plugged into the cluster's bridge, so each container
# gets its own address in 10.78.0.192/27, next to the nodes, and the routers
# reach it directly, as with a flat container network (macvlan, a routed CNI)
# in production. Nothing of the host's own network is touched: no route,
# no iptables rule, no published port (Docker runs in the host's namespace,
# not the worker's, so a port published on the host would not be the
# worker's address).
#
#   scripts/edge-cluster.sh up                 build what is missing, start everything
#   scripts/edge-cluster.sh status             VIP holder, Consul leader, each node's health, containers
#   scripts/edge-cluster.sh curl [HOST]        one request through the VIP from the client
#   scripts/edge-cluster.sh watch [HOST]       the client polls the VIP every 10 ms (Ctrl-C)
#   scripts/edge-cluster.sh fail NODE          node N (0-2) dies: all its processes, link down
#   scripts/edge-cluster.sh fail-router NODE   only the router on node N
#   scripts/edge-cluster.sh fail-consul NODE   only the Consul server on node N
#   scripts/edge-cluster.sh restore NODE       start whatever is missing on node N again
#   scripts/edge-cluster.sh register NAME      register NAME.example.com by hand (the worker's plain backend)
#   scripts/edge-cluster.sh container NAME     start a container the registrar registers as NAME.example.com
#   scripts/edge-cluster.sh down               stop everything, remove every namespace, container,
#                                              Docker network, image and file it made
#
# EDGE_BIN: directory with router, vipd and registrar (default target/release,
# built if missing). Namespaces are named edge-cl-*, Docker objects edge-cl-*
# with the label edge-cluster; state and logs live in .run/edge-cluster/.
# Addresses: nodes 10.78.0.1-3, worker 10.78.0.4, client 10.78.0.100,
# VIP 10.78.0.50, containers 10.78.0.192-223.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state="$root/.run/edge-cluster"
# The binaries `up` used, for restore.
bin=${EDGE_BIN:-$(cat "$state/bin" 2>/dev/null || echo "$root/target/release")}

prefix=edge-cl
net=10.78.0
vip=$net.50
vrid=78
priorities=(150 140 130)
edge_nodes=(0 1 2)
worker=3
# Docker: the containers' network (macvlan over the veth $host_link, whose
# peer is on the cluster bridge), their label, and the range they get.
docker_net=$prefix-containers
docker_label=edge-cluster
host_link=$prefix-dk
containers=$net.192/27

ns() { echo "$prefix-$1"; }             # ns n0 / ns w / ns c / ns br
node_ns() { if [ "$1" = "$worker" ]; then ns w; else ns "n$1"; fi; }
node_ip() { echo "$net.$(($1 + 1))"; }
inns() { local n=$1; shift; ip netns exec "$n" "$@"; }

log() { echo "edge-cluster: $*"; }
die() { echo "edge-cluster: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"; }

# Starts "$@" inside namespace $1 in the background, output to $state/$2.log,
# pid to $state/$2.pid.
start() {
  local n=$1 name=$2; shift 2
  ip netns exec "$n" setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

stop() {
  local name=$1 sig=${2:-TERM} pid
  [ -f "$state/$name.pid" ] || return 0
  pid=$(cat "$state/$name.pid")
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$state/$name.pid"
}

running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

http() { # http NODE-NS URL [curl args]: a request from inside a namespace
  local n=$1 url=$2; shift 2
  inns "$n" curl -fsS -m 2 "$@" "$url"
}

build() {
  if [ -x "$bin/router" ] && [ -x "$bin/vipd" ] && [ -x "$bin/registrar" ]; then return; fi
  [ "$bin" = "$root/target/release" ] || die "$bin has no router/vipd/registrar"
  log "building router, vipd and registrar (release)"
  cargo build --release -p router -p vipd -p registrar
}

have_docker() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

attach() { # attach NS PORT IP
  ip -n "$(ns br)" link add "$2" type veth peer name eth0 netns "$1"
  ip -n "$(ns br)" link set "$2" master br0 up
  ip -n "$1" addr add "$3/24" dev eth0
  ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up
}

consul_start() { # consul_start NODE server|client
  local i=$1 kind=$2 n args=()
  n=$(node_ns "$i")
  mkdir -p "$state/consul-$i"
  for j in "${edge_nodes[@]}"; do args+=("-retry-join=$(node_ip "$j")"); done
  if [ "$kind" = server ]; then args+=(-server -bootstrap-expect=3 -ui); fi
  start "$n" "consul-$i" consul agent -node="$( [ "$i" = "$worker" ] && echo worker || echo "edge-n$i")" \
    -bind="$(node_ip "$i")" -client="127.0.0.1 $(node_ip "$i")" -data-dir="$state/consul-$i" -disable-host-node-id \
    -hcl='performance { raft_multiplier = 1 }' -hcl='ports { dns = -1, grpc = -1, serf_wan = -1 }' \
    -hcl='disable_update_check = true' "${args[@]}"
}

registrar_start() { # on the worker: its containers, at their own addresses
  start "$(ns w)" registrar env RUST_LOG="${RUST_LOG:-info}" "$bin/registrar" \
    --consul-addr http://127.0.0.1:8500 --node-name worker --internal
}

# The image: /bin/busybox and the applets the containers use, imported from
# a root filesystem (no registry needed), labelled for `down`.
image() {
  local tag rootfs
  tag="$prefix-busybox:$(sha256sum /bin/busybox | cut -c1-12)"
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    [ -x /bin/busybox ] || die "/bin/busybox is missing (apt install busybox-static)"
    rootfs="$state/rootfs"
    mkdir -p "$rootfs/bin" "$rootfs/www"
    cp /bin/busybox "$rootfs/bin/busybox"
    for a in sh httpd; do ln -s busybox "$rootfs/bin/$a"; done
    tar -C "$rootfs" -cf - . | docker import --change "LABEL $docker_label=true" --change 'ENV PATH=/bin' \
      - "$tag" >/dev/null
    rm -rf "$rootfs"
  fi
  echo "$tag"
}

# The veth from the host into the cluster bridge and the macvlan Docker
# network on it (see the header).
docker_network() {
  ip link add "$host_link" type veth peer name vdk netns "$(ns br)"
  ip -n "$(ns br)" link set vdk master br0 up
  # The host side carries no address of its own: keep IPv6 off it too.
  sysctl -qw "net.ipv6.conf.$host_link.disable_ipv6=1" 2>/dev/null || true
  ip link set "$host_link" up
  docker network create -d macvlan -o parent="$host_link" --subnet "$net.0/24" --ip-range "$containers" \
    --gateway "$net.254" --label "$docker_label=true" "$docker_net" >/dev/null
}

container_start() { # container_start NAME SERVICE: an httpd saying which container answers
  docker run -d --name "$prefix-$1" --hostname "$prefix-$1" --label "$docker_label=true" \
    --network "$docker_net" --expose 80 -e SERVICE_NAME="$2" -e SERVICE_TAGS="urlprefix-$2.example.com/" \
    -e PAGE="hello from container $prefix-$1" "$(image)" \
    sh -c 'echo "$PAGE" >/www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
}

router_start() { # reads from the other nodes' servers while its own Consul is dead
  local fallbacks=() j
  for j in "${edge_nodes[@]}"; do
    [ "$j" = "$1" ] || fallbacks+=(--consul-fallback-addr "http://$(node_ip "$j"):8500")
  done
  start "$(ns "n$1")" "router-$1" env RUST_LOG="${RUST_LOG:-info}" "$bin/router" \
    --consul-addr http://127.0.0.1:8500 "${fallbacks[@]}" --proxy-addr 0.0.0.0:9999 --admin-addr 127.0.0.1:9998 \
    --vipd-addr 127.0.0.1:9997
}

vipd_start() {
  start "$(ns "n$1")" "vipd-$1" env RUST_LOG="${RUST_LOG:-info}" "$bin/vipd" --interface eth0 --vip "$vip" \
    --vrid "$vrid" --priority "${priorities[$1]}" --advert-interval 100ms \
    --check-url http://127.0.0.1:9998/health --check-interval 50ms \
    --track-url http://127.0.0.1:9998/health/consul --track-weight 20
}

leader() { # the raft leader as node index, or "none"
  local i l
  for i in "${edge_nodes[@]}"; do
    l=$(http "$(ns "n$i")" http://127.0.0.1:8500/v1/status/leader 2>/dev/null) || continue
    for j in "${edge_nodes[@]}"; do
      [ "$l" = "\"$(node_ip "$j"):8300\"" ] && { echo "n$j"; return; }
    done
  done
  echo none
}

holder() {
  local i out=""
  for i in "${edge_nodes[@]}"; do
    running "vipd-$i" && ip -n "$(ns "n$i")" -4 addr show dev eth0 2>/dev/null | grep -q "inet $vip/" && out+="n$i "
  done
  echo "${out:-none}"
}

register() { # register NAME: NAME.example.com -> the worker's plain backend
  local body
  body="{\"ID\": \"$1\", \"Name\": \"$1\", \"Address\": \"$(node_ip $worker)\", \"Port\": 8080,
         \"Tags\": [\"urlprefix-$1.example.com/\"]}"
  http "$(ns w)" http://127.0.0.1:8500/v1/agent/service/register -X PUT -d "$body" >/dev/null
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out waiting for $what (logs: $state/)"
}

cmd_up() {
  need_root
  for t in consul python3 curl ip; do command -v "$t" >/dev/null || die "$t is not installed (scripts/install.sh)"; done
  if ip netns list | grep -q "^$(ns br)\b"; then die "already up (run: $0 down)"; fi
  build
  rm -rf "$state" && mkdir -p "$state"
  echo "$bin" >"$state/bin"
  ip netns add "$(ns br)"
  ip -n "$(ns br)" link add br0 type bridge
  ip -n "$(ns br)" link set br0 up
  for i in "${edge_nodes[@]}" "$worker"; do
    ip netns add "$(node_ns "$i")"
    attach "$(node_ns "$i")" "v$i" "$(node_ip "$i")"
    # A node that lost the VIP must not forward to the new owner.
    inns "$(node_ns "$i")" sysctl -qw net.ipv4.ip_forward=0
  done
  ip netns add "$(ns c)"
  attach "$(ns c)" vc "$net.100"

  log "starting three Consul servers and the worker's client agent"
  for i in "${edge_nodes[@]}"; do consul_start "$i" server; done
  consul_start "$worker" client
  wait_for 60 "a Consul leader" bash -c "[ \"\$($0 _leader)\" != none ]"
  log "starting the worker's backend (python3 http.server on $(node_ip $worker):8080)"
  mkdir -p "$state/www"
  echo "hello from the edge worker" >"$state/www/index.html"
  # http.server with a listen backlog of 128 (socketserver's 5 drops SYNs when
  # the clients queued during a failover arrive at once).
  start "$(ns w)" backend python3 -c 'import functools, http.server, sys
http.server.ThreadingHTTPServer.request_queue_size = 128
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), h).serve_forever()' "$state/www"
  wait_for 30 "the worker agent" http "$(ns w)" http://127.0.0.1:8500/v1/agent/self
  if have_docker; then
    log "starting the registrar on the worker and two app containers on $docker_net ($containers)"
    registrar_start
    docker_network
    container_start app-1 app
    container_start app-2 app
    page="hello from container"
  else
    log "WARNING: no Docker engine: app.example.com is the worker's plain backend, registered by hand"
    register app
    page="hello from the edge worker"
  fi
  log "starting routers and vipds"
  for i in "${edge_nodes[@]}"; do router_start "$i"; done
  for i in "${edge_nodes[@]}"; do vipd_start "$i"; done
  wait_for 60 "app.example.com through the VIP" bash -c "ip netns exec $(ns c) curl -fsS -m 1 \
    -H 'Host: app.example.com' http://$vip:9999/ | grep -q '$page'"
  cmd_status
  cat <<EOF

The edge is up. From the client namespace:
  ip netns exec $(ns c) curl -H 'Host: app.example.com' http://$vip:9999/
  $0 watch                 # poll every 10 ms and print each failure
  $0 fail 0                # node 0 (the VIP holder) dies; restore with: $0 restore 0
  $0 fail-consul 1         # a Consul server dies (kill the leader: see status)
  $0 fail-router 0         # only the router on node 0
  $0 container web         # one more container, registered by the registrar as web.example.com
  $0 down                  # remove everything
Router page of node 0: ip netns exec $(ns n0) curl -s http://127.0.0.1:9998/api/status
Consul UI: ip netns exec $(ns n0) curl -s http://127.0.0.1:8500/ui/
EOF
}

cmd_status() {
  echo "VIP $vip held by: $(holder)   Consul leader: $(leader)"
  local i h c v
  for i in "${edge_nodes[@]}"; do
    h=$(http "$(ns "n$i")" http://127.0.0.1:9998/health 2>&1 | head -1) || true
    c=$(http "$(ns "n$i")" http://127.0.0.1:9998/health/consul 2>&1 | head -1) || true
    v=$(http "$(ns "n$i")" http://127.0.0.1:9997/status 2>/dev/null |
      python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["state"], "priority", s["priority"])' 2>/dev/null) ||
      v="vipd not answering"
    printf 'n%s  consul:%-4s router:%-4s vipd:%-4s | /health: %s | /health/consul: %s | %s\n' "$i" \
      "$(running "consul-$i" && echo up || echo down)" "$(running "router-$i" && echo up || echo down)" \
      "$(running "vipd-$i" && echo up || echo down)" "${h:-no answer}" "${c:-no answer}" "$v"
  done
  have_docker || return 0
  local names
  names=$(docker ps --filter "label=$docker_label" --format '{{.Names}}' | sort | tr '\n' ' ')
  echo "worker  registrar:$(running registrar && echo up || echo down)  containers: ${names:-none}"
  # What the registrar put in the worker's agent: one line per container port.
  http "$(ns w)" http://127.0.0.1:8500/v1/agent/services 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin).values():
    if (s.get("Meta") or {}).get("registrar-source"):
        print("  in Consul: %s -> %s:%d %s" % (s["ID"], s["Address"], s["Port"], " ".join(s["Tags"] or [])))
' 2>/dev/null || true
}

cmd_watch() {
  local host=${1:-app.example.com}
  log "GET http://$vip:9999/ Host: $host every 10 ms from the client; Ctrl-C stops"
  inns "$(ns c)" python3 -u - "$vip" "$host" <<'EOF'
# One request every 10 ms, 300 ms allowed each (a slower answer counts as a
# failure); prints when answers stop and how long until they resume.
import datetime, http.client, sys, time
vip, host = sys.argv[1], sys.argv[2]
failed, last_ok = 0, time.monotonic()
while True:
    t = time.monotonic()
    try:
        c = http.client.HTTPConnection(vip, 9999, timeout=0.3)
        c.request("GET", "/", headers={"Host": host})
        good = c.getresponse().status == 200
        c.close()
        why = ""
    except Exception as e:
        good, why = False, type(e).__name__
    now = datetime.datetime.now().time()
    if not good:
        if failed == 0:
            print(f"{now} failing ({why or 'not 200'})")
        failed += 1
    else:
        if failed:
            print(f"{now} served again: {1000 * (t - last_ok):.0f} ms since the last answer, {failed} failed")
        failed, last_ok = 0, t
    time.sleep(max(0, 0.01 - (time.monotonic() - t)))
EOF
}

node_arg() {
  case "${1:-}" in 0|1|2) ;; *) die "NODE is 0, 1 or 2" ;; esac
}

cmd_fail() {
  node_arg "${1:-}"
  stop "vipd-$1" KILL
  stop "router-$1" KILL
  stop "consul-$1" KILL
  ip -n "$(ns "n$1")" link set eth0 down
  log "node $1 is dead (processes killed, link down); $0 restore $1 brings it back"
}

cmd_restore() {
  node_arg "${1:-}"
  # As after a reboot: the VIP a crash left on the interface is gone.
  ip -n "$(ns "n$1")" addr del "$vip/32" dev eth0 2>/dev/null || true
  ip -n "$(ns "n$1")" link set eth0 up
  running "consul-$1" || consul_start "$1" server
  running "router-$1" || router_start "$1"
  running "vipd-$1" || vipd_start "$1"
  log "node $1 restored"
}

cmd_down() {
  need_root
  local n p
  # SIGTERM to all at once, then each gets the rest of 5 s before SIGKILL.
  if [ -d "$state" ]; then
    for f in "$state"/*.pid; do [ -e "$f" ] && { kill -TERM "$(cat "$f")" 2>/dev/null || true; }; done
    for f in "$state"/*.pid; do [ -e "$f" ] && stop "$(basename "$f" .pid)"; done
  fi
  # Anything still inside our namespaces was started by this script.
  for n in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  done
  if have_docker; then
    c=$(docker ps -aq --filter "label=$docker_label")
    [ -z "$c" ] || docker rm -f -v $c >/dev/null
    docker network ls -q --filter "label=$docker_label" | xargs -r docker network rm >/dev/null
    docker images -q --filter "label=$docker_label" | sort -u | xargs -r docker rmi -f >/dev/null
  fi
  ip link del "$host_link" 2>/dev/null || true
  for n in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do ip netns del "$n"; done
  rm -rf "$state"
  log "down: no $prefix-* namespace, process, container, Docker network, image or state left"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  curl) inns "$(ns c)" curl -sS -m 2 -H "Host: ${2:-app.example.com}" "http://$vip:9999/" ;;
  watch) cmd_watch "${2:-}" ;;
  fail) cmd_fail "${2:-}" ;;
  fail-router) node_arg "${2:-}"; stop "router-$2" KILL; log "router on node $2 killed" ;;
  fail-consul) node_arg "${2:-}"; stop "consul-$2" KILL; log "Consul server on node $2 killed" ;;
  restore) cmd_restore "${2:-}" ;;
  register) register "${2:?NAME}"; log "registered ${2}.example.com" ;;
  container)
    have_docker || die "no Docker engine"
    container_start "${2:?NAME}" "$2"
    log "started container $prefix-$2; the registrar registers it as $2.example.com once port 80 accepts" ;;
  _leader) leader ;;
  *) sed -n '2,40p' "$0"; exit 2 ;;
esac
