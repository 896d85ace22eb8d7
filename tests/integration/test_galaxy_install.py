"""The collection as a Galaxy user has it: built into a tarball, installed into a path of its own and run
from another folder, with no ansible.cfg, no inventory and an empty home. SSH to the hosts is strictly
checked against the host keys the collection recorded (nothing turns host key checking off), the
cluster works through its bundle, and a host whose key does not match is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import bare_env, install_collection, owned_objects

NAME = "it-galaxy"
CLUSTERS = (NAME,)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("galaxy")
    assert (install_collection(base) / "LICENSE").exists()
    return base


def user_env(base: Path) -> dict[str, str]:
    """The caller's environment without any Ansible setting, a home of its own, the installed collection."""
    home = base / "home"
    home.mkdir(exist_ok=True)
    return bare_env(HOME=str(home), ANSIBLE_COLLECTIONS_PATH=str(base / "collections"))


def playbook(base: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    workdir = base / "elsewhere"
    workdir.mkdir(exist_ok=True)
    assert not (workdir / "ansible.cfg").exists()
    return subprocess.run(["ansible-playbook", f"rax.carina.{name}", "-e", f"carina_name={NAME}",
                           "-e", f"carina_home={base / 'state'}", *extra],
                          cwd=workdir, env=user_env(base), capture_output=True, text=True, timeout=900, check=False)


def test_create_use_and_delete_from_the_installed_tarball(installed):
    state = installed / "state" / "clusters" / NAME
    try:
        created = playbook(installed, "create")
        assert created.returncode == 0, created.stdout[-5000:] + created.stderr[-3000:]
        command = f"source {state}/docker.env && docker node ls --format '{{{{.Status}}}}'"
        nodes = subprocess.run(["bash", "-c", command], env=user_env(installed), capture_output=True, text=True,
                               timeout=120, check=False)
        assert nodes.returncode == 0 and nodes.stdout.split() == ["Ready", "Ready"], nodes.stdout + nodes.stderr

        # Every host's key is pinned: one entry per host, each its own key.
        known_hosts = state / "ssh" / "known_hosts"
        entries = [line.split() for line in known_hosts.read_text().splitlines() if not line.startswith("#")]
        assert sorted(e[0].split(",")[0] for e in entries) == [f"{NAME}-lb", f"{NAME}-manager-1", f"{NAME}-worker-1"]
        assert len({e[2] for e in entries}) == 3

        # The worker's entry now holds the manager's key: the next run must refuse to talk to the worker
        # (as it would to a host that took the worker's address) and say the cluster is not whole.
        keys = {e[0].split(",")[0]: e[2] for e in entries}
        known_hosts.write_text(known_hosts.read_text().replace(keys[f"{NAME}-worker-1"], keys[f"{NAME}-manager-1"]))
        # Ansible's SSH master connections of the first run would carry on without a new key exchange.
        for socket in (installed / "home" / ".ansible" / "cp").iterdir():
            socket.unlink()
        refused = playbook(installed, "create")
        assert refused.returncode != 0
        assert "Host key verification failed" in refused.stdout, refused.stdout[-5000:]
        said = [line for line in refused.stdout.splitlines() if "failed or could not be reached" in line]
        assert said and f"{NAME}-worker-1" in said[0], refused.stdout[-3000:]
    finally:
        deleted = playbook(installed, "delete")
    assert deleted.returncode == 0, deleted.stdout[-3000:] + deleted.stderr[-2000:]
    assert owned_objects(NAME) == {"containers": [], "volumes": [], "networks": []}
