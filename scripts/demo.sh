#!/usr/bin/env bash
# The main job. Until the cluster playbooks land it proves the set-up: the engine answers and
# the host images are present.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "engine: $DOCKER_HOST ($(docker version --format '{{.Server.Version}}'))"
scripts/image.sh check
