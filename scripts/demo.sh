#!/usr/bin/env bash
# The main job: a local Swarm cluster "demo" (3 managers, 1 worker) behind its load balancer,
# then `docker info` and `docker node ls` through it with nothing but the credentials bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${CARINA_DEMO_NAME:-demo}
HOME_DIR=${CARINA_HOME:-$HOME/.carina}

echo "==> engine $DOCKER_HOST ($(docker version --format '{{.Server.Version}}')), images:"
scripts/image.sh check
echo "==> creating cluster $NAME (3 managers, 1 worker) with the local provider"
start=$(date +%s%N)
ansible-playbook playbooks/create.yml -e "carina_name=$NAME" -e carina_masters=3 -e carina_nodes=1 \
  -e "carina_home=$HOME_DIR"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '==> create took %d.%01d s\n' $((ms / 1000)) $((ms % 1000 / 100))

state="$HOME_DIR/clusters/$NAME"
(
  # shellcheck disable=SC1091
  . "$state/docker.env"
  echo "==> docker info (through the load balancer $DOCKER_HOST, TLS with the bundle)"
  docker info --format 'swarm: {{.Swarm.LocalNodeState}}, managers: {{.Swarm.Managers}}, nodes: {{.Swarm.Nodes}}, answered by: {{.Name}}'
  echo "==> docker node ls"
  docker node ls
)
cat <<EOT

Use the cluster with the plain docker CLI:
    source $state/docker.env     # fish: source $state/docker.fish
    docker info
Delete it:
    ansible-playbook playbooks/delete.yml -e carina_name=$NAME -e carina_home=$HOME_DIR
Stop the Docker engine make started (if it did):
    make engine-stop
EOT
