#!/usr/bin/env bash
# carina serve in the background for the demo: `serve.sh start` starts it once (pidfile
# .cache/serve/carina.pid, log .cache/serve/serve.log) on CARINA_SERVE_PORT (default 9511, Magnum's;
# a free port when that one is taken) and prints its addresses; `serve.sh stop` stops the one it
# started, by that pidfile, and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.cache/serve
PIDFILE=$DIR/carina.pid
PORT=${CARINA_SERVE_PORT:-9511}

running() {
  [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
    && tr '\0' ' ' < "/proc/$(cat "$PIDFILE")/cmdline" | grep -q "carina serve"
}

start_on() {
  : > "$DIR/url"
  nohup .venv/bin/carina serve --port "$1" --pidfile "$PIDFILE" > "$DIR/url" 2> "$DIR/serve.log" < /dev/null &
  local pid=$! i
  for i in $(seq 1 100); do
    grep -q "carina serve:" "$DIR/url" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

case "${1:-}" in
  start)
    mkdir -p "$DIR"
    if running; then
      echo "==> carina serve runs already (pid $(cat "$PIDFILE"))"
    elif ! start_on "$PORT"; then
      echo "==> port $PORT is taken; carina serve takes a free one" >&2
      start_on 0 || { cat "$DIR/serve.log" >&2; exit 1; }
    fi
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$DIR/url" | head -1)
    echo "==> carina serve (pid $(cat "$PIDFILE"), log $DIR/serve.log)"
    echo "    control panel: $url/panel/"
    echo "    Magnum API:    $url/v1   (export OS_AUTH_TYPE=none OS_ENDPOINT=$url/v1; openstack coe cluster list)"
    echo "    stop it with:  make serve-stop" ;;
  stop)
    if running; then
      kill "$(cat "$PIDFILE")"
      for _ in $(seq 1 100); do running || break; sleep 0.1; done
      echo "==> carina serve stopped"
    else
      echo "==> carina serve is not running (no live pid in $PIDFILE)"
    fi ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2 ;;
esac
