#!/usr/bin/env bash
# Builds the container images the Kubernetes manifests use (edge/router,
# edge/registrar, edge/vipd) from this repository's release binaries, with
# no base image: a root filesystem holding the binary, the shared libraries
# it links (as `ldd` reports them), CA certificates and /etc/passwd, imported
# with `docker import`. No registry is needed to build, so it works on
# machines that cannot pull images; push the result wherever your cluster
# pulls from.
#
#   deploy/images.sh [TAG]          # default tag: latest
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-latest}
cargo build --release --bins

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for bin in router registrar vipd; do
  root="$work/$bin"
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
  install -m 0755 "target/release/$bin" "$root/usr/local/bin/$bin"
  # The release profile keeps line tables for backtraces; images need not.
  if command -v strip >/dev/null 2>&1; then strip "$root/usr/local/bin/$bin"; fi
  # The dynamic loader and every library the binary links, at their paths.
  for lib in $(ldd "target/release/$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  if [ -e /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
  printf 'root:x:0:0:root:/:/usr/local/bin/%s\nnobody:x:65534:65534:nobody:/:/usr/local/bin/%s\n' "$bin" "$bin" >"$root/etc/passwd"
  tar -C "$root" -cf - . | docker import \
    --change "ENTRYPOINT [\"/usr/local/bin/$bin\"]" \
    --change "LABEL org.opencontainers.image.title=edge-$bin" \
    - "edge/$bin:$tag" >/dev/null
  echo "built edge/$bin:$tag ($(docker image inspect -f '{{.Size}}' "edge/$bin:$tag") bytes)"
done
