#!/usr/bin/env bash
# Make sure a Docker engine answers, starting a private one when none does.
#   engine.sh up    -> prints the DOCKER_HOST to use (reuses an engine that answers)
#   engine.sh down  -> stops the engine this script started (by its pidfile), nothing else
#   engine.sh host  -> prints the DOCKER_HOST of an engine that answers, or fails
# The private engine keeps its own socket, pidfile, data and exec roots, and address pools
# inside 198.18.0.0/15 so that no test traffic goes to other ranges.
set -euo pipefail

RUN_DIR=${CARINA_ENGINE_RUN_DIR:-/run/carina-engine}
DATA_ROOT=${CARINA_ENGINE_DATA_ROOT:-/var/lib/carina-engine}
SOCK="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$RUN_DIR/dockerd.log"
OWN_HOST="unix://$SOCK"

answers() { DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

find_engine() {
  local candidates=()
  [ -n "${DOCKER_HOST:-}" ] && candidates+=("$DOCKER_HOST")
  candidates+=("$OWN_HOST" "unix:///var/run/docker.sock")
  for h in "${candidates[@]}"; do
    if answers "$h"; then echo "$h"; return 0; fi
  done
  return 1
}

install_engine() {
  command -v dockerd >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { echo "engine.sh: dockerd is missing and installing it needs root" >&2; exit 1; }
  echo "engine.sh: installing Debian's docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq docker.io >&2
}

start_engine() {
  install_engine
  # docker.io's package pulls in the CLI too; a newer CLI elsewhere on PATH is fine.
  command -v docker >/dev/null 2>&1 || { echo "engine.sh: no docker CLI" >&2; exit 1; }
  mkdir -p "$RUN_DIR" "$DATA_ROOT"
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "engine.sh: dockerd $(cat "$PIDFILE") runs but does not answer on $SOCK" >&2
  else
    rm -f "$PIDFILE" "$SOCK"
    # setsid: the engine outlives the make/pytest process that started it.
    setsid dockerd \
      --host "$OWN_HOST" \
      --pidfile "$PIDFILE" \
      --data-root "$DATA_ROOT" \
      --exec-root "$RUN_DIR/exec" \
      --bip 198.19.255.1/24 \
      --default-address-pool base=198.18.0.0/16,size=24 \
      --storage-driver overlay2 \
      >"$LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 100); do
    if answers "$OWN_HOST"; then echo "$OWN_HOST"; return 0; fi
    sleep 0.2
  done
  echo "engine.sh: dockerd did not answer on $SOCK within 20 s; see $LOG" >&2
  tail -n 20 "$LOG" >&2 || true
  exit 1
}

stop_engine() {
  if [ ! -s "$PIDFILE" ]; then echo "engine.sh: no engine of ours is running"; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { echo "engine.sh: dockerd $pid did not stop" >&2; exit 1; }
  fi
  rm -f "$PIDFILE" "$SOCK"
  echo "engine.sh: stopped dockerd $pid"
}

# Every host container's systemd, containerd and kubelet hold inotify instances (a Kubernetes host about
# 13, a Swarm host about 8), all counted against root's fs.inotify.max_user_instances. The kernel's default
# (128) runs out at about ten Kubernetes hosts, and a kubelet that cannot make its watcher dies ("too many
# open files"), so its node never registers. Like kind's documented prerequisite, raise it (never lower it).
INOTIFY_INSTANCES=1024
inotify_room() {
  local knob=/proc/sys/fs/inotify/max_user_instances have
  have=$(cat "$knob" 2>/dev/null) || return 0
  [ "$have" -ge "$INOTIFY_INSTANCES" ] && return 0
  if [ "$(id -u)" = 0 ] && echo "$INOTIFY_INSTANCES" > "$knob" 2>/dev/null; then
    echo "engine.sh: fs.inotify.max_user_instances raised from $have to $INOTIFY_INSTANCES (host containers hold many)" >&2
  else
    echo "engine.sh: fs.inotify.max_user_instances is $have; Kubernetes hosts past about ten fail to start until it" \
         "is raised: sysctl -w fs.inotify.max_user_instances=$INOTIFY_INSTANCES" >&2
  fi
}

case "${1:-up}" in
  up) inotify_room; find_engine || start_engine ;;
  host) find_engine ;;
  down) stop_engine ;;
  *) echo "usage: $0 up|host|down" >&2; exit 2 ;;
esac
