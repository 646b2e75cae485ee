#!/usr/bin/env bash
# Installs what this project needs and is missing; safe to run again.
#
# - Debian packages used by the tests, the quick start and the benchmarks.
# - A `consul` binary. Debian's bookworm has none, bullseye has `consul` 1.8.7
#   (API v1, web UI built in). We fetch that one .deb through a temporary apt
#   configuration derived from this machine's own sources (same mirror, suite
#   switched to bullseye), extract only the binary, and leave the system's apt
#   sources untouched.
# - The Docker engine is expected to be there already; we only say so when not.
set -euo pipefail

log() { printf 'install: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "not root and no sudo: cannot install packages"; exit 1; fi
fi

# Debian package -> a command (or file) that proves it is installed.
declare -A PKGS=(
  [iproute2]=ip
  [keepalived]=keepalived
  [busybox-static]=/bin/busybox
  [wrk]=wrk
  [nginx]=/usr/sbin/nginx
  [tcpdump]=tcpdump
  [curl]=curl
  [procps]=pkill
  [openssl]=openssl
  [jq]=jq
  [python3]=python3
  [tar]=tar
  # ACME tests: the Pebble test CA and its DNS stand-in (pebble-challtestsrv).
  [pebble]=pebble
  # Benchmark baselines and load generators (router/bench/*.sh).
  [haproxy]=/usr/sbin/haproxy
  [nghttp2-client]=h2load
  [libnginx-mod-stream]=/usr/lib/nginx/modules/ngx_stream_module.so
  [iperf3]=iperf3
  # gRPC tests: real grpcio peers (tests/grpc/peer.py) run by Debian's
  # /usr/bin/python3, so nothing goes into a system-wide pip.
  [python3-grpcio]=/usr/lib/python3/dist-packages/grpc/__init__.py
)

missing=()
for pkg in "${!PKGS[@]}"; do
  probe=${PKGS[$pkg]}
  if [[ $probe == /* ]]; then [ -e "$probe" ] && continue
  else command -v "$probe" >/dev/null 2>&1 && continue; fi
  missing+=("$pkg")
done

apt_updated=0
apt_update() {
  [ $apt_updated -eq 1 ] && return 0
  log "apt-get update"
  $SUDO apt-get update -qq >/dev/null
  apt_updated=1
}

if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  log "installing ${missing[*]}"
  # nginx's package starts a service on port 80 where an init system runs;
  # policy-rc.d 101 keeps it (and keepalived) from starting on install.
  prc=/usr/sbin/policy-rc.d
  had_prc=0; [ -e $prc ] && had_prc=1
  if [ $had_prc -eq 0 ]; then printf '#!/bin/sh\nexit 101\n' | $SUDO tee $prc >/dev/null; $SUDO chmod +x $prc; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ $had_prc -eq 0 ]; then $SUDO rm -f $prc; fi
fi

# The mirror URI of this machine's Debian sources: deb822 (.sources) or
# one-line format, the first non-security entry.
debian_mirror() {
  local f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    uri=$(awk '/^URIs:/ {print $2}' "$f" | grep -v security | head -n1 || true)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    uri=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f" | grep -v security | head -n1 || true)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
}

if ! command -v consul >/dev/null 2>&1; then
  mirror=$(debian_mirror)
  if [ -z "$mirror" ]; then log "no Debian mirror found in /etc/apt to fetch consul from"; exit 1; fi
  log "fetching consul from bullseye at $mirror (temporary apt config)"
  tmp=$(mktemp -d)
  chmod 755 "$tmp"   # apt's download user must reach it
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial" "$tmp/etc"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  opt="[trusted=yes]"; [ -e $keyring ] && opt="[signed-by=$keyring]"
  echo "deb $opt $mirror bullseye main" > "$tmp/etc/sources.list"
  aptopts=(-o Dir::Etc::SourceList="$tmp/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o Dir::State::Lists="$tmp/lists" -o Dir::Cache::Archives="$tmp/archives"
           -o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache="" -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
  apt-get "${aptopts[@]}" update -qq >/dev/null
  (cd "$tmp" && apt-get "${aptopts[@]}" download consul >/dev/null)
  deb=$(ls "$tmp"/consul_*.deb | head -n1)
  dpkg-deb -x "$deb" "$tmp/root"
  $SUDO install -m 0755 "$tmp/root/usr/bin/consul" /usr/local/bin/consul
  log "installed $(consul version | head -n1)"
fi

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  log "WARNING: the Docker engine is not running or not installed; the registrar's"
  log "Docker tests and the quick start's demo container need it (install docker.io and start dockerd)."
fi

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install a Rust toolchain (rustup) first"; exit 1
fi
log "ok"
