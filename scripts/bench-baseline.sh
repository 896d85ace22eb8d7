#!/usr/bin/env bash
# The bare baseline the benchmark compares with: the same host containers (3 managers, 1 worker)
# forming the same swarm with plain `docker swarm init/join`: no TLS, no load balancer, no Ansible.
# Prints the seconds it took, then removes everything it made.
set -euo pipefail
NET=carina-bench-baseline
SUBNET=${1:-198.18.230.0/24}
IMAGE=carina-host:bookworm-engine
NODES=(baseline-m1 baseline-m2 baseline-m3 baseline-w1)
FLAGS=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined --security-opt apparmor=unconfined
       --security-opt systempaths=unconfined --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:rw
       --cgroupns=host --stop-signal SIGRTMIN+3 --label carina.cluster=bench-baseline)

cleanup() {
  docker rm -f -v "${NODES[@]}" >/dev/null 2>&1 || true
  docker volume rm "${NODES[@]/%/-engine}" >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

start=$(date +%s%N)
docker network create --subnet "$SUBNET" --label carina.cluster=bench-baseline "$NET" >/dev/null
for n in "${NODES[@]}"; do
  docker volume create --label carina.cluster=bench-baseline "$n-engine" >/dev/null
  docker run -d --name "$n" --hostname "$n" --network "$NET" -v "$n-engine:/var/lib/docker" "${FLAGS[@]}" "$IMAGE" >/dev/null &
done
wait
for n in "${NODES[@]}"; do
  until docker exec "$n" docker info >/dev/null 2>&1; do sleep 0.1; done &
done
wait
addr() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"; }
lead=$(addr baseline-m1)
docker exec baseline-m1 docker swarm init --advertise-addr "$lead" >/dev/null
mtoken=$(docker exec baseline-m1 docker swarm join-token -q manager)
wtoken=$(docker exec baseline-m1 docker swarm join-token -q worker)
for n in baseline-m2 baseline-m3; do
  docker exec "$n" docker swarm join --token "$mtoken" --advertise-addr "$(addr "$n")" "$lead:2377" >/dev/null
done
docker exec baseline-w1 docker swarm join --token "$wtoken" --advertise-addr "$(addr baseline-w1)" "$lead:2377" >/dev/null
until [ "$(docker exec baseline-m1 docker info --format '{{.Swarm.Nodes}}')" = 4 ]; do sleep 0.1; done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '%d.%03d\n' $((ms / 1000)) $((ms % 1000))
