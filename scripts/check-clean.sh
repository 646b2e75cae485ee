#!/usr/bin/env bash
# Fails when tests left something running: every test-owned Consul agent
# (its config sits in an `edge-consul-*` temp dir), debug build of a daemon
# (tests run those; the quick start runs release builds), container or Docker network labelled
# `edge-test`, or network namespace named `edge-*`; and what
# scripts/edge-cluster.sh makes (containers, Docker networks and images
# labelled `edge-cluster`, the host link `edge-cl-dk`).
set -uo pipefail
left=0
procs=$(pgrep -af 'edge-consul-|target/debug/(router|registrar|vipd)( |$)' | grep -v -e pgrep -e check-clean || true)
if [ -n "$procs" ]; then echo "check-clean: processes left behind:"; echo "$procs"; left=1; fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  c=$(docker ps -aq --filter label=edge-test)
  if [ -n "$c" ]; then echo "check-clean: containers left behind: $c"; left=1; fi
  n=$(docker network ls -q --filter label=edge-test)
  if [ -n "$n" ]; then echo "check-clean: docker networks left behind: $n"; left=1; fi
  c=$(docker ps -aq --filter label=edge-cluster; docker network ls -q --filter label=edge-cluster;
    docker images -q --filter label=edge-cluster)
  if [ -n "$c" ]; then echo "check-clean: edge-cluster.sh Docker objects left behind (run its down): $c"; left=1; fi
fi
if ip link show edge-cl-dk >/dev/null 2>&1; then
  echo "check-clean: edge-cluster.sh host link edge-cl-dk left behind (run its down)"
  left=1
fi
ns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^edge-' || true)
if [ -n "$ns" ]; then echo "check-clean: network namespaces left behind: $ns"; left=1; fi
tmp=$(ls -d /tmp/edge-* 2>/dev/null || true)
if [ -n "$tmp" ]; then echo "check-clean: temp dirs left behind: $tmp"; left=1; fi
[ $left -eq 0 ] && echo "check-clean: nothing left behind"
exit $left
