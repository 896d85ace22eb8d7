#!/usr/bin/env bash
# Build the host images locally (no registry is reachable) and keep them cached:
#   carina-host:bookworm         Debian 12, systemd, sshd, python3 (a bare host)
#   carina-host:bookworm-engine  the same with Debian's docker.io installed
#   carina-host:bookworm-lb      the same with HAProxy installed (the local "amphora")
# Each image carries the label carina.recipe=<hash of its recipe>; an image is rebuilt only
# when that hash changes. Usage: image.sh [build|check|remove]
set -euo pipefail
cd "$(dirname "$0")/.."

REPO=${CARINA_IMAGE_REPO:-carina-host}
MIRROR=${CARINA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${CARINA_CACHE:-$PWD/.cache}
PACKAGES=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,iputils-ping,ca-certificates,sudo,procps,curl,gnupg
RECIPE_FILES=(scripts/image.sh images/host/setup-rootfs.sh)

base_hash=$( { cat "${RECIPE_FILES[@]}"; echo "$PACKAGES $MIRROR"; } | sha256sum | cut -c1-16)

label_of() { docker image inspect --format '{{ index .Config.Labels "carina.recipe" }}' "$1" 2>/dev/null || true; }

build_base() {
  local tag="$REPO:bookworm"
  [ "$(label_of "$tag")" = "$base_hash" ] && return 0
  command -v debootstrap >/dev/null || { apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2; }
  local rootfs="$CACHE/rootfs-$base_hash"
  echo "image.sh: debootstrap bookworm into $rootfs" >&2
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
  cp images/host/setup-rootfs.sh "$rootfs/tmp/setup-rootfs.sh"
  chroot "$rootfs" /bin/sh /tmp/setup-rootfs.sh
  tar -C "$rootfs" --numeric-owner -c . | docker import \
    -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
    -c "LABEL carina.recipe=$base_hash" - "$tag" >/dev/null
  rm -rf "$rootfs"
  echo "image.sh: built $tag ($base_hash)" >&2
}

# A derived tag: start the base image, install packages with apt through the engine's NAT,
# commit with the base image's settings.
build_derived() {
  local tag="$1" packages="$2" script="$3"
  local hash; hash=$(echo "$base_hash $packages $script" | sha256sum | cut -c1-16)
  [ "$(label_of "$tag")" = "$hash" ] && return 0
  local name="carina-image-build-$$"
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" "$REPO:bookworm" sleep infinity >/dev/null
  trap 'docker rm -f "$name" >/dev/null 2>&1 || true' RETURN
  docker exec -e DEBIAN_FRONTEND=noninteractive "$name" sh -ec \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages >/dev/null && $script
     apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*"
  docker stop -t 1 "$name" >/dev/null
  docker commit -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
    -c "LABEL carina.recipe=$hash" "$name" "$tag" >/dev/null
  echo "image.sh: built $tag ($hash)" >&2
}

case "${1:-build}" in
  build)
    mkdir -p "$CACHE"
    build_base
    # The engine image: docker.io enabled at boot; iptables legacy/nft left at Debian's default.
    build_derived "$REPO:bookworm-engine" "docker.io" "systemctl enable docker.service >/dev/null 2>&1 || true"
    build_derived "$REPO:bookworm-lb" "haproxy" "systemctl disable haproxy.service >/dev/null 2>&1 || true"
    ;;
  check)
    for t in bookworm bookworm-engine bookworm-lb; do docker image inspect "$REPO:$t" >/dev/null; done
    echo "images present: $REPO:{bookworm,bookworm-engine,bookworm-lb}"
    ;;
  remove)
    docker image rm "$REPO:bookworm-lb" "$REPO:bookworm-engine" "$REPO:bookworm" 2>/dev/null || true ;;
  *) echo "usage: $0 build|check|remove" >&2; exit 2 ;;
esac
