"""Identity and the lock: a cluster is its id, not its name; one run changes a cluster at a time.

Two state folders (homes) make a cluster of the same name on one engine: the second neither adopts
nor deletes the first's hosts. A run in progress holds the cluster's lock against playbooks and the
carina command alike; a run killed mid-way leaves a lock the next run takes over.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, docker, env, free_subnet, owned_objects, wait_until

NAME = "it-own"
SUBNET = free_subnet()
OTHER = "it-own-x"  # never has hosts: only its state folder is used
CLUSTERS = (NAME, OTHER)


def playbook(name: str, home: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(name, home, *extra), cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"},
                          capture_output=True, text=True, timeout=900, check=False)


def command(name: str, home: Path, *extra: str) -> list[str]:
    return ["ansible-playbook", f"playbooks/{name}.yml", "-e", f"carina_name={NAME}", "-e", f"carina_home={home}",
            "-e", "carina_masters=1", "-e", "carina_nodes=1", "-e", f"carina_subnet={SUBNET}", *extra]


def ids() -> dict[str, str]:
    """{container: its carina.cluster-id label} of the cluster's host containers."""
    names = owned_objects(NAME)["containers"]
    out = docker("inspect", "--format", '{{.Name}} {{index .Config.Labels "carina.cluster-id"}} {{.State.Status}}',
                 *names) if names else ""
    return {line.split()[0].lstrip("/"): " ".join(line.split()[1:]) for line in out.splitlines()}


def swarm_nodes(home: Path) -> list[str]:
    """The swarm's nodes and their state, through the cluster's own bundle and the docker CLI."""
    bundle = dict(re.findall(r"^export (\w+)='(.*)'$", (home / "clusters" / NAME / "docker.env").read_text(), re.M))
    proc = subprocess.run(["docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
                          env=dict(os.environ) | bundle, capture_output=True, text=True, timeout=60, check=True)
    return sorted(proc.stdout.split("\n")[:-1])


def holder(home: Path) -> dict:
    try:
        text = (home / "clusters" / NAME / "lock").read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text) if text.strip() else {}


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    return tmp_path_factory.mktemp("own-a"), tmp_path_factory.mktemp("own-b")


@pytest.fixture(scope="module")
def first(homes):
    """The cluster made from the first home; deleted from it at the end, which must leave nothing."""
    home, _ = homes
    proc = playbook("create", home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    cluster_id = (home / "clusters" / NAME / "id").read_text().strip()
    yield home, cluster_id
    proc = playbook("delete", home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert not any(owned_objects(NAME).values()), owned_objects(NAME)


def test_every_host_carries_the_id_of_the_state_that_made_it(first):
    home, cluster_id = first
    assert len(cluster_id) == 32
    assert set(ids().values()) == {f"{cluster_id} running"}
    assert len(ids()) == 3  # master, worker, load balancer
    assert json.loads((home / "clusters" / NAME / "cluster.json").read_text())["id"] == cluster_id
    assert holder(home) == {}, "the run gave its lock back"


def test_another_state_folder_neither_adopts_nor_deletes(first, homes):
    home, cluster_id = first
    _, other = homes
    before = ids()
    proc = playbook("create", other)
    assert proc.returncode != 0
    assert "made from another state folder" in proc.stdout and cluster_id in proc.stdout, proc.stdout[-4000:]
    assert ids() == before
    state = other / "clusters" / NAME
    assert not state.exists(), "a refused create leaves no state folder, not even an id"
    # The other state's delete (with no id) leaves the first cluster as it is, and says how to delete it.
    proc = playbook("delete", other)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "carry a cluster id and this run knows none" in proc.stdout + proc.stderr
    assert ids() == before
    assert not state.exists()
    # A state folder with an id of its own: the same.
    state.mkdir(parents=True)
    (state / "id").write_text("b" * 32 + "\n")
    proc = playbook("delete", other)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert f"another id than this state's {'b' * 32}" in proc.stdout + proc.stderr
    assert ids() == before
    assert not state.exists()
    assert swarm_nodes(home) == [f"{NAME}-manager-1 Ready", f"{NAME}-worker-1 Ready"]


def test_one_run_at_a_time(first):
    home, _ = first
    first_run = subprocess.Popen(command("create", home), cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        held = wait_until(lambda: holder(home).get("pid"), 120, "the first run to take the lock")
        started = time.time()
        second = playbook("create", home)
        assert second.returncode != 0
        assert f"cluster {NAME} is busy: a create run (pid {held}" in second.stdout, second.stdout[-4000:]
        assert time.time() - started < 60
        # The carina command sees the same lock (a run it did not start).
        proc = subprocess.run(["carina", "create", NAME], env=dict(os.environ) | {"CARINA_HOME": str(home)},
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1 and f"cluster {NAME} is busy" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        output, _ = first_run.communicate(timeout=600)
        assert first_run.returncode == 0, output[-6000:]
    finally:
        if first_run.poll() is None:
            first_run.kill()
            first_run.wait()
    assert holder(home) == {}


def test_a_run_killed_mid_way_leaves_a_lock_the_next_run_takes(first):
    home, _ = first
    run = subprocess.Popen(command("create", home), cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    held = wait_until(lambda: holder(home).get("pid"), 120, "the run to take the lock")
    assert held == run.pid
    time.sleep(3)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert holder(home).get("pid") == held, "a killed run cannot give its lock back"
    proc = playbook("create", home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert holder(home) == {}
    assert swarm_nodes(home) == [f"{NAME}-manager-1 Ready", f"{NAME}-worker-1 Ready"]


def test_a_delete_removes_only_what_carina_put_in_a_state_folder(tmp_path):
    """carina_state_dir may name any folder (a survey variable): a delete never removes it whole."""
    folder = tmp_path / "mine"
    (folder / "docs").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine\n")
    (folder / "pki").mkdir()
    (folder / "cluster.json").write_text(json.dumps({"name": OTHER, "coe": "swarm", "provider": "local"}))
    proc = subprocess.run(["ansible-playbook", "playbooks/delete.yml", "-e", f"carina_name={OTHER}",
                           "-e", f"carina_state_dir={folder}"], cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in folder.iterdir()) == ["docs", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine\n"


def test_a_lost_state_deletes_nothing_that_carries_an_id_and_a_damaged_record_blocks_no_delete(first, tmp_path):
    home, cluster_id = first
    before = ids()
    (home / "clusters" / NAME).rename(tmp_path / "saved")
    proc = playbook("delete", home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert f"give its id: -e carina_cluster_id={cluster_id}" in " ".join((proc.stdout + proc.stderr).split())
    assert ids() == before
    # Given the id, the delete with no state goes ahead.
    proc = playbook("delete", tmp_path / "empty-home", "-e", f"carina_cluster_id={cluster_id}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert not any(owned_objects(NAME).values()), owned_objects(NAME)
    # The state put back, a run makes the hosts again, with the same id.
    (tmp_path / "saved").rename(home / "clusters" / NAME)
    proc = playbook("create", home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert set(ids().values()) == {f"{cluster_id} running"}
    (home / "clusters" / NAME / "cluster.json").write_text("{not json")
    proc = playbook("delete", home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "finds the cluster by its labels" in proc.stdout + proc.stderr
    assert not any(owned_objects(NAME).values()), owned_objects(NAME)
    assert not (home / "clusters" / NAME).exists()
