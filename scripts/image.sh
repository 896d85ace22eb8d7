#!/usr/bin/env bash
# Build the host images locally (no registry is reachable) and keep them cached:
#   carina-host:bookworm         Debian 12, systemd, sshd, python3 (a bare host)
#   carina-host:bookworm-engine  the same with Debian's docker.io installed
#   carina-host:bookworm-lb      the same with HAProxy installed (the local "amphora")
#   carina-host:bookworm-kube    the same with containerd, etcd, the CNI plugins and the
#                                Kubernetes v1.20.2 binaries and image tarballs that
#                                scripts/kubernetes.sh builds from Debian's source package
# Each image carries the label carina.recipe=<hash of its recipe>; an image is rebuilt only
# when that hash changes (the base's recipe: build_base, setup-rootfs.sh, packages, mirror).
# Debian comes from the machine's own mirror: the first `deb` URI for bookworm in its apt
# configuration (CARINA_APT_ETC, default /etc/apt), or CARINA_DEBIAN_MIRROR.
# Usage: image.sh [build|check|remove|mirror]
set -euo pipefail
cd "$(dirname "$0")/.."

REPO=${CARINA_IMAGE_REPO:-carina-host}
CACHE=${CARINA_CACHE:-$PWD/.cache}
PACKAGES=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,iputils-ping,ca-certificates,sudo,procps,curl,gnupg
TAGS=(bookworm bookworm-engine bookworm-lb bookworm-kube)
# What kubelet 1.20 and kube-proxy (iptables mode) look for, besides containerd and etcd:
# iptables(-save/-restore), conntrack (stale UDP entries), mount/nsenter (util-linux, in the
# base), ipset and modprobe (kmod) for ipvs mode, socat and ethtool (port-forward, hairpin).
KUBE_PACKAGES="containerd runc etcd-server etcd-client containernetworking-plugins conntrack iptables ipset socat ethtool kmod"

# The first `deb` URI for bookworm in the machine's apt configuration, in apt's reading order:
# sources.list, then sources.list.d/ (one-line *.list, deb822 *.sources).
apt_mirror() {
  local uri
  while IFS= read -r uri; do
    case "$uri" in http://* | https://* | file://*) echo "${uri%"${uri##*[!/]}"}"; return 0 ;; esac
  done < <(apt_uris)
  return 1
}
apt_uris() {
  local f etc=${CARINA_APT_ETC:-/etc/apt}
  for f in "$etc/sources.list" "$etc"/sources.list.d/*; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sources)
        awk -v want=bookworm '
          function flush() {
            if (!done && enabled != "no" && (types " ") ~ / deb / && (suites " ") ~ (" " want " ") && uris != "") {
              split(uris, u, " "); print u[1]; done = 1
            }
            types = suites = uris = enabled = key = ""
          }
          /^#/ { next }
          /^[ \t]*$/ { flush(); next }
          /^[ \t]/ { val = $0 }
          /^[^ \t]/ { i = index($0, ":"); key = tolower(substr($0, 1, i - 1)); val = substr($0, i + 1) }
          {
            gsub(/[ \t]+/, " ", val)
            if (key == "types") types = types " " val
            else if (key == "suites") suites = suites " " val
            else if (key == "uris") uris = uris " " val
            else if (key == "enabled") { enabled = tolower(val); gsub(/[ \t]/, "", enabled) }
          }
          END { flush() }' "$f" ;;
      *.list)
        awk -v want=bookworm '$1 == "deb" {
            i = 2
            if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
            if ($(i + 1) == want) { print $i; exit }
          }' "$f" ;;
    esac
  done
}

mirror() {
  if [ -n "${CARINA_DEBIAN_MIRROR:-}" ]; then echo "$CARINA_DEBIAN_MIRROR"; return 0; fi
  apt_mirror && return 0
  echo "image.sh: no Debian mirror for bookworm in this machine's apt configuration" \
    "(a 'deb' entry in /etc/apt/sources.list or /etc/apt/sources.list.d/*); set CARINA_DEBIAN_MIRROR" >&2
  return 1
}

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
# commit with the base image's settings. Optional: more recipe input for the hash (files the
# build copies in), a function run with the build container's name before apt (to copy files
# in), and one more label.
build_derived() {
  local tag="$1" packages="$2" script="$3" extra="${4:-}" prepare="${5:-}" label="${6:-}"
  local hash; hash=$(echo "$base_hash $packages $script${extra:+ $extra}" | sha256sum | cut -c1-16)
  [ "$(label_of "$tag")" = "$hash" ] && return 0
  local name="carina-image-build-$$"
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" "$REPO:bookworm" sleep infinity >/dev/null
  # (the trap clears itself: it would otherwise fire again when the caller returns)
  trap 'docker rm -f "$name" >/dev/null 2>&1 || true; trap - RETURN' RETURN
  [ -z "$prepare" ] || "$prepare" "$name"
  docker exec -e DEBIAN_FRONTEND=noninteractive "$name" sh -ec \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages >/dev/null && $script
     apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/*"
  docker stop -t 1 "$name" >/dev/null
  docker commit -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
    -c "LABEL carina.recipe=$hash" ${label:+-c "LABEL $label"} "$name" "$tag" >/dev/null
  echo "image.sh: built $tag ($hash)" >&2
}

# The Kubernetes host: scripts/kubernetes.sh's artifacts copied in; no service may start while
# apt installs (etcd-server's init script would start a default single-node etcd) nor at boot:
# the collection configures and starts containerd and etcd.
KUBE_DIR=
kube_files() {
  docker exec "$1" sh -ec 'mkdir -p /usr/local/share/carina/images
    printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d'
  quiet docker cp "$KUBE_DIR/bin/." "$1:/usr/local/bin/"
  quiet docker cp "$KUBE_DIR/images/." "$1:/usr/local/share/carina/images/"
  quiet docker cp "$KUBE_DIR/SHA256SUMS" "$1:/usr/local/share/carina/kubernetes-SHA256SUMS"
}
# A command's output only when it fails (newer docker CLIs report every cp).
quiet() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }
KUBE_SCRIPT='cd /usr/local/bin && chown root:root kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
  chmod 0755 kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
  sha256sum --quiet --strict -c /usr/local/share/carina/kubernetes-SHA256SUMS
  chown -R root:root /usr/local/share/carina && chmod 0644 /usr/local/share/carina/kubernetes-SHA256SUMS /usr/local/share/carina/images/*
  systemctl disable containerd.service etcd.service >/dev/null 2>&1
  rm -f /usr/sbin/policy-rc.d && cd /'

build_kube() {
  scripts/kubernetes.sh build
  KUBE_DIR=$(scripts/kubernetes.sh path)
  local recipe sums
  recipe=$(scripts/kubernetes.sh hash)
  sums=$(cat "$KUBE_DIR/SHA256SUMS" "$KUBE_DIR/images/SHA256SUMS" | sha256sum | cut -c1-16)
  build_derived "$REPO:bookworm-kube" "$KUBE_PACKAGES" "$KUBE_SCRIPT" "kube=$recipe sums=$sums" \
    kube_files "carina.kube-recipe=$recipe"
}

case "${1:-build}" in
  build)
    mkdir -p "$CACHE"
    MIRROR=$(mirror)
    base_hash=$( { cat images/host/setup-rootfs.sh; declare -f build_base; echo "$PACKAGES $MIRROR"; } | sha256sum | cut -c1-16)
    build_base
    # The engine image: docker.io enabled at boot; iptables legacy/nft left at Debian's default.
    build_derived "$REPO:bookworm-engine" "docker.io" "systemctl enable docker.service >/dev/null 2>&1 || true"
    build_derived "$REPO:bookworm-lb" "haproxy" "systemctl disable haproxy.service >/dev/null 2>&1 || true"
    build_kube
    # Images that rebuilds replaced (untagged, ours by their label), unless a container uses them.
    docker image prune -f --filter label=carina.recipe >/dev/null
    ;;
  check)
    for t in "${TAGS[@]}"; do docker image inspect "$REPO:$t" >/dev/null; done
    echo "images present: $REPO:{$(IFS=,; echo "${TAGS[*]}")}"
    ;;
  remove)
    docker image rm "$REPO:bookworm-kube" "$REPO:bookworm-lb" "$REPO:bookworm-engine" "$REPO:bookworm" 2>/dev/null || true ;;
  mirror) mirror ;;
  *) echo "usage: $0 build|check|remove|mirror" >&2; exit 2 ;;
esac
