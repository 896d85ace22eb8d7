#!/usr/bin/env bash
# Real Kubernetes binaries for the host image carina-host:bookworm-kube. No registry ships them,
# so they are built here from Debian bookworm's *source* package with Debian's golang-go, the way
# Debian's own rules build them (with our few fixes from images/kube/patches on top of Debian's),
# together with two tiny image tarballs that containerd imports
# without a registry (`ctr -n k8s.io images import`):
#   localhost/carina/pause:3.2   build/pause/linux/pause.c of the same tree, static (kubelet 1.20's
#                                default sandbox image is pause:3.2)
#   localhost/carina/shell:1.0   Debian's busybox-static, applets as relative links in /bin
# Usage: kubernetes.sh build|path|check|hash
#   build  build once per recipe hash (this file, the version, images/kube/* with its patches/); restores from the
#          host image instead when .cache is gone but the image carries the same recipe
#   path   print the version folder
#   check  fail when something is missing, stale or does not match its SHA256SUMS
#   hash   print the recipe hash
# The version folder ($CARINA_CACHE, default .cache, then kubernetes/<version>/) holds bin/ (the
# six binaries), SHA256SUMS (of bin/), images/ (pause.tar, shell.tar and their SHA256SUMS),
# build.log, and recipe: the recipe hash, written last.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=v1.20.2
SOURCE_PACKAGE=kubernetes
SOURCE_VERSION=1.20.5+really1.20.2 # Debian's name for the v1.20.2 tree (any Debian revision)
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
PAUSE_REF=localhost/carina/pause:3.2
SHELL_REF=localhost/carina/shell:1.0
KUBE_IMAGE=${CARINA_IMAGE_REPO:-carina-host}:bookworm-kube
CACHE=${CARINA_CACHE:-$PWD/.cache}
case "$CACHE" in /*) ;; *) CACHE=$PWD/$CACHE ;; esac
TOP=$CACHE/kubernetes
OUT=$TOP/$VERSION
LOG=$OUT/build.log

say() { echo "kubernetes.sh: $*" >&2; }

recipe_hash() {
  {
    cat scripts/kubernetes.sh
    echo "$VERSION"
    find images/kube -type f -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' f; do
      echo "$f"
      cat "$f"
    done
  } | sha256sum | cut -c1-16
}
HASH=$(recipe_hash)

# Everything of the recipe is there (cheap: no checksums).
complete() {
  local dir=$1 b f
  [ "$(cat "$dir/recipe" 2>/dev/null)" = "$HASH" ] || return 1
  for b in "${BINARIES[@]}"; do [ -x "$dir/bin/$b" ] || return 1; done
  for f in SHA256SUMS images/SHA256SUMS images/pause.tar images/shell.tar; do [ -s "$dir/$f" ] || return 1; done
}

# The files match their SHA256SUMS, and SHA256SUMS names exactly the six binaries.
verify() {
  local dir=$1
  [ "$(awk '{print $2}' "$dir/SHA256SUMS" | LC_ALL=C sort | tr '\n' ' ')" \
    = "$(printf '%s\n' "${BINARIES[@]}" | LC_ALL=C sort | tr '\n' ' ')" ] || {
    say "$dir/SHA256SUMS does not list exactly: ${BINARIES[*]}"
    return 1
  }
  (cd "$dir/bin" && sha256sum --quiet --strict -c ../SHA256SUMS) &&
    (cd "$dir/images" && sha256sum --quiet --strict -c SHA256SUMS)
}

# A step of the long build: its output goes to the log; on failure, the log's tail.
step() {
  local what=$1
  shift
  say "$what"
  echo "=== $what ($(date -u +%FT%TZ))" >>"$LOG"
  "$@" >>"$LOG" 2>&1 || {
    say "FAILED: $what; last lines of $LOG:"
    tail -n 40 "$LOG" >&2
    exit 1
  }
}

in_dir() { (cd "$1" && shift && "$@"); }

# Debian packages the build needs on this machine (installed only when missing).
need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  mkdir -p "$TOP"
  local log=$TOP/apt-install.log
  say "installing ${missing[*]} (log: $log)"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
    >"$log" 2>&1 || { say "FAILED: apt-get install ${missing[*]}; last lines of $log:"; tail -n 20 "$log" >&2; exit 1; }
}

# apt with a private source list (deb-src, bookworm main, the machine's own mirror) and private
# state: the machine's apt configuration is read, never changed.
APT_DIR=$TOP/apt
private_apt() {
  apt-get -q -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root "$@"
}

fetch_source() {
  local src=$TOP/src mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  compgen -G "$src/${SOURCE_PACKAGE}_${SOURCE_VERSION}-*.dsc" >/dev/null && return 0
  mirror=$(scripts/image.sh mirror)
  mkdir -p "$src" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  if [ -r "$keyring" ]; then
    echo "deb-src [signed-by=$keyring] $mirror bookworm main" >"$APT_DIR/sources.list"
  else
    echo "deb-src $mirror bookworm main" >"$APT_DIR/sources.list"
  fi
  step "apt-get update (deb-src bookworm main on $mirror)" private_apt update
  step "apt-get source --download-only $SOURCE_PACKAGE" in_dir "$src" private_apt source --download-only "$SOURCE_PACKAGE"
  compgen -G "$src/${SOURCE_PACKAGE}_${SOURCE_VERSION}-*.dsc" >/dev/null || {
    say "the mirror's $SOURCE_PACKAGE source is not $SOURCE_VERSION: $(ls "$src")"
    exit 1
  }
  rm -rf "$APT_DIR" # the index was needed for this download only
}

build_binaries() {
  local tree=$1 dsc
  dsc=$(compgen -G "$TOP/src/${SOURCE_PACKAGE}_${SOURCE_VERSION}-*.dsc" | sort -V | tail -n 1)
  step "unpack $(basename "$dsc") (Debian's patches applied)" dpkg-source -x "$dsc" "$tree"
  # Then ours (images/kube/patches, part of the recipe): fixes of this release that later ones have.
  local patch
  for patch in images/kube/patches/*.patch; do
    step "apply $patch" patch -d "$tree" -p1 --forward --batch -i "$PWD/$patch"
  done
  # As debian/rules does: the tree seen as k8s.io/kubernetes in a GOPATH, no cgo. The version
  # (v1.20.2) comes from the tree's own git-archive stamp in hack/lib/version.sh; its build date
  # from SOURCE_DATE_EPOCH (the Debian changelog's, as dpkg-buildpackage sets it), so that a
  # rebuild in the same cache folder gives the same bytes (the binaries record the tree's path:
  # another CARINA_CACHE gives other bytes).
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  local epoch
  epoch=$(dpkg-parsechangelog -l "$tree/debian/changelog" -STimestamp)
  step "make WHAT=\"${BINARIES[*]/#/cmd/}\" (minutes)" \
    in_dir "$tree" env GOPATH="$tree/.go" CGO_ENABLED=0 GOPROXY=off HOME="$tree/.home" SOURCE_DATE_EPOCH="$epoch" \
    GIT_CEILING_DIRECTORIES="$TOP" make WHAT="${BINARIES[*]/#/cmd/}"
  local b
  for b in "${BINARIES[@]}"; do install -m 0755 "$tree/_output/bin/$b" "$OUT/bin/$b"; done
  (cd "$OUT/bin" && sha256sum "${BINARIES[@]}") >"$OUT/SHA256SUMS"
}

# A one-layer image from a folder, saved in docker-archive format, then removed from the engine.
save_image() {
  local root=$1 ref=$2 tarball=$3 changes=$4 args=() line
  while IFS= read -r line; do
    case "$line" in '' | '#'*) ;; *) args+=(-c "$line") ;; esac
  done <"$changes"
  docker image rm "$ref" >/dev/null 2>&1 || true
  tar -C "$root" --numeric-owner --owner=0 --group=0 -c . | docker import "${args[@]}" - "$ref" >/dev/null
  docker save -o "$tarball" "$ref"
  chmod 0644 "$tarball"
  docker image rm "$ref" >/dev/null
}

# With the machine's package lists, refreshed when they are missing or stale.
download_busybox() {
  local get=(apt-get -q -o APT::Sandbox::User=root download busybox-static)
  in_dir "$1" "${get[@]}" || { apt-get update -q && in_dir "$1" "${get[@]}"; }
}

build_images() {
  local tree=$1 work=$TOP/build/images tag
  rm -rf "$work" && mkdir -p "$work/pause/root" "$work/shell/root/bin" "$work/shell/root/tmp" "$OUT/images"

  # pause: the pause.c of the Kubernetes tree, static; its -v names the tree's pause version.
  tag=$(sed -n 's/^TAG = //p' "$tree/build/pause/Makefile")
  step "gcc -static build/pause/linux/pause.c (pause $tag)" \
    gcc -Os -Wall -Werror -static -DVERSION="v$tag-$VERSION" -o "$work/pause/root/pause" "$tree/build/pause/linux/pause.c"
  strip "$work/pause/root/pause"
  step "image $PAUSE_REF" save_image "$work/pause/root" "$PAUSE_REF" "$OUT/images/pause.tar" images/kube/pause.changes

  # shell: Debian's busybox-static, downloaded (not installed on this machine).
  step "apt-get download busybox-static" download_busybox "$work/shell"
  step "unpack busybox-static" dpkg-deb -x "$(compgen -G "$work/shell/busybox-static_*.deb")" "$work/shell/deb"
  install -m 0755 "$work/shell/deb/bin/busybox" "$work/shell/root/bin/busybox"
  chmod 1777 "$work/shell/root/tmp"
  # `busybox --install -s` would make absolute links to /bin/busybox: relative ones instead.
  local applet
  for applet in $("$work/shell/root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/shell/root/bin/$applet"
  done
  step "image $SHELL_REF" save_image "$work/shell/root" "$SHELL_REF" "$OUT/images/shell.tar" images/kube/shell.changes
  (cd "$OUT/images" && sha256sum pause.tar shell.tar) >"$OUT/images/SHA256SUMS"
}

build() {
  need_packages golang-go make rsync jq gcc libc6-dev dpkg-dev binutils patch
  docker version >/dev/null # the image tarballs need the engine; fail early without one
  local start=$SECONDS
  rm -rf "$TOP/build" "${OUT:?}/bin" "$OUT/images" "$OUT/SHA256SUMS" "$OUT/recipe"
  mkdir -p "$TOP/build" "$OUT/bin"
  : >"$LOG"
  fetch_source
  build_binaries "$TOP/build/src"
  build_images "$TOP/build/src"
  verify "$OUT"
  echo "$HASH" >"$OUT/recipe"
  rm -rf "$TOP/build"
  say "built Kubernetes $VERSION ($HASH) in $((SECONDS - start)) s: $OUT"
}

# .cache is per clone, the engine's images are not: take the artifacts back from the host image
# when it was built from the same recipe.
restore() {
  local label cid tmp=$TOP/restore.$$
  label=$(docker image inspect --format '{{ index .Config.Labels "carina.kube-recipe" }}' "$KUBE_IMAGE" 2>/dev/null) || return 1
  [ "$label" = "$HASH" ] || return 1
  say "restoring $OUT from $KUBE_IMAGE"
  rm -rf "$tmp" && mkdir -p "$tmp/bin" "$OUT"
  echo "=== restore from $KUBE_IMAGE ($(date -u +%FT%TZ))" >>"$LOG"
  cid=$(docker create "$KUBE_IMAGE" /bin/true)
  local ok=0
  (
    for b in "${BINARIES[@]}"; do docker cp "$cid:/usr/local/bin/$b" "$tmp/bin/$b" || exit 1; done
    docker cp "$cid:/usr/local/share/carina/kubernetes-SHA256SUMS" "$tmp/SHA256SUMS" &&
      docker cp "$cid:/usr/local/share/carina/images" "$tmp/images"
  ) >>"$LOG" 2>&1 || ok=1
  docker rm "$cid" >/dev/null
  if [ "$ok" = 0 ] && verify "$tmp"; then
    rm -rf "${OUT:?}/bin" "$OUT/images" "$OUT/SHA256SUMS"
    mkdir -p "$OUT"
    mv "$tmp/bin" "$tmp/images" "$tmp/SHA256SUMS" "$OUT/"
    rm -rf "$tmp"
    echo "$HASH" >"$OUT/recipe"
    return 0
  fi
  rm -rf "$tmp"
  say "could not restore from $KUBE_IMAGE (see $LOG): building instead"
  return 1
}

case "${1:-build}" in
  build)
    complete "$OUT" && exit 0
    mkdir -p "$OUT"
    exec 9>"$TOP/lock"
    flock 9 # one build at a time; a waiting one finds the work done
    complete "$OUT" && exit 0
    restore || build
    ;;
  path) echo "$OUT" ;;
  hash) echo "$HASH" ;;
  check)
    complete "$OUT" || { say "missing or stale (recipe $HASH): $OUT; run: scripts/kubernetes.sh build"; exit 1; }
    verify "$OUT"
    echo "Kubernetes $VERSION ($HASH): $OUT"
    ;;
  *)
    echo "usage: $0 build|path|check|hash" >&2
    exit 2
    ;;
esac
