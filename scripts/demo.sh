#!/usr/bin/env bash
# The main job: a local Swarm cluster "demo" (3 managers, 1 worker) behind its load balancer,
# created with `carina create --wait`, then `docker info` and `docker node ls` through the load
# balancer with nothing but what `carina env` prints.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${CARINA_DEMO_NAME:-demo}

echo "==> engine $DOCKER_HOST ($(docker version --format '{{.Server.Version}}')), images:"
scripts/image.sh check
status=$(carina get "$NAME" -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' || true)
case "$status" in
  *_COMPLETE)
    echo "==> cluster $NAME exists ($status)" ;;
  *_IN_PROGRESS)
    echo "carina: cluster $NAME is $status; follow it with: carina runs $NAME; carina logs RUN --follow" >&2
    exit 1 ;;
  *)
    echo "==> carina create $NAME --masters 3 --nodes 1 --wait"
    start=$(date +%s%N)
    carina create "$NAME" --masters 3 --nodes 1 --wait
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '==> create took %d.%01d s\n' $((ms / 1000)) $((ms % 1000 / 100)) ;;
esac

eval "$(carina env "$NAME")"
echo "==> docker info (through the load balancer $DOCKER_HOST, TLS with the bundle)"
docker info --format 'swarm: {{.Swarm.LocalNodeState}}, managers: {{.Swarm.Managers}}, nodes: {{.Swarm.Nodes}}, answered by: {{.Name}}'
echo "==> docker node ls"
docker node ls
echo "==> carina get $NAME"
carina get "$NAME"
cat <<EOT

Use the cluster with the plain docker CLI (the carina command is in .venv/bin):
    eval "\$(.venv/bin/carina env $NAME)"      # fish: .venv/bin/carina env $NAME --shell fish | source
    docker info
Scale it:   .venv/bin/carina grow $NAME --by 1 --wait ; .venv/bin/carina resize $NAME --nodes 1 --wait
Delete it:  .venv/bin/carina rm $NAME --wait
Stop the Docker engine make started (if it did):  make engine-stop
EOT
echo
scripts/serve.sh start
