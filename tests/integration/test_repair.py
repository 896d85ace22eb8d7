"""Repair: hosts of a local Swarm cluster are lost for real (containers and their disks removed), and
`carina repair`, or a rerun of the create playbook on the same spec, brings the cluster back whole:
the dead entries gone from the swarm, the new hosts in it, the survivors' state kept."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, docker, env, recap_changed, wait_until

NAME = "it-repair"
KUBE = "it-repair-kube"
CLUSTERS = (NAME, KUBE)
KUBECTL = ROOT / ".cache" / "kubernetes" / "v1.20.2" / "bin" / "kubectl"
MANAGERS = [f"{NAME}-manager-{i}" for i in (1, 2, 3)]
WORKER = f"{NAME}-worker-1"


def carina(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["carina", *args], env=os.environ | {"CARINA_HOME": str(home)}, capture_output=True,
                          text=True, timeout=timeout, check=False)


def get(home: Path) -> dict:
    proc = carina(home, "get", NAME, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def through_bundle(home: Path, command: str) -> subprocess.CompletedProcess:
    """A docker command as the user runs it: the credentials bundle, through the load balancer."""
    return subprocess.run(["bash", "-c", f'eval "$(carina env {NAME})" && {command}'],
                          env=os.environ | {"CARINA_HOME": str(home)}, capture_output=True, text=True, timeout=120,
                          check=False)


def swarm_nodes(home: Path) -> list[dict]:
    def listing():
        proc = through_bundle(home, "docker node ls --format '{{json .}}'")
        return [json.loads(line) for line in proc.stdout.splitlines()] if proc.returncode == 0 else None
    return wait_until(listing, 60, "the swarm's node list through the load balancer")


def lose(*hosts: str) -> None:
    """The hosts are gone for good: their containers and their disks."""
    docker("rm", "-f", "-v", *hosts)
    docker("volume", "rm", *[f"{host}-engine" for host in hosts])


def assert_whole(nodes: list[dict]) -> None:
    """Three managers, all in the quorum, one worker, every node ready, one entry per host."""
    hostnames = sorted(n["Hostname"] for n in nodes)
    assert hostnames == sorted([*MANAGERS, WORKER]), nodes
    assert all(n["Status"] == "Ready" for n in nodes), nodes
    managers = sorted(n["Hostname"] for n in nodes if n["ManagerStatus"] in ("Leader", "Reachable"))
    assert managers == MANAGERS, nodes


def create_playbook(home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["ansible-playbook", "playbooks/create.yml", "-e", f"carina_name={NAME}",
                           "-e", f"carina_home={home}"], cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"},
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("carina-repair")
    proc = carina(home, "create", NAME, "--masters", "3", "--nodes", "1", "--wait")
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield home
    finally:
        if carina(home, "rm", NAME, "--wait").returncode != 0:
            subprocess.run(["ansible-playbook", "playbooks/delete.yml", "-e", f"carina_name={NAME}",
                            "-e", f"carina_home={home}"], cwd=ROOT, env=env(), capture_output=True, check=False)


def test_repair_replaces_a_lost_manager_and_a_worker_recreated_on_its_disk(home):
    before = {n["Hostname"]: n["ID"] for n in swarm_nodes(home)}
    lose(MANAGERS[1])
    docker("rm", "-f", WORKER)  # its disk (the engine volume) stays
    # The fault is real: the swarm sees the manager go.
    wait_until(lambda: any(n["Hostname"] == MANAGERS[1] and n["Status"] == "Down" for n in swarm_nodes(home)),
               60, "the lost manager to be Down")
    # `carina create` of the same name is refused; repair is the verb.
    assert carina(home, "create", NAME).returncode == 1

    proc = carina(home, "repair", NAME, "--wait")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = get(home)
    assert (data["status"], data["health"], data["masters"], data["nodes"]) == \
        ("UPDATE_COMPLETE", "HEALTHY", 3, 1), data
    runs = json.loads(carina(home, "runs", NAME, "-o", "json").stdout)
    assert runs[-1]["action"] == "repair" and runs[-1]["status"] == "successful", runs[-1]

    after = swarm_nodes(home)
    assert_whole(after)
    ids = {n["Hostname"]: n["ID"] for n in after}
    assert ids[MANAGERS[1]] != before[MANAGERS[1]], "the lost manager came back as a new node"
    assert ids[WORKER] == before[WORKER], "the worker recreated on its kept disk is the same node"
    assert ids[MANAGERS[0]] == before[MANAGERS[0]] and ids[MANAGERS[2]] == before[MANAGERS[2]]


def test_a_lost_majority_is_restored_from_the_survivor_by_the_create_playbook(home):
    created = through_bundle(home, "docker service create -d --name kept --replicas 1 busybox true")
    assert created.returncode == 0, created.stderr
    survivor = {n["Hostname"]: n["ID"] for n in swarm_nodes(home)}[MANAGERS[1]]
    lose(MANAGERS[0], MANAGERS[2])

    def leaderless():
        proc = subprocess.run(["docker", "exec", MANAGERS[1], "docker", "node", "ls"], capture_output=True,
                              text=True, timeout=60, check=False)
        return proc.returncode != 0 and "does not have a leader" in proc.stderr
    wait_until(leaderless, 90, "the survivor to see the quorum lost")

    proc = create_playbook(home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    nodes = swarm_nodes(home)
    assert_whole(nodes)
    assert {n["Hostname"]: n["ID"] for n in nodes}[MANAGERS[1]] == survivor
    services = through_bundle(home, "docker service ls --format '{{.Name}}'")
    assert services.stdout.split() == ["kept"], services.stdout + services.stderr

    again = create_playbook(home)
    assert again.returncode == 0, again.stdout[-4000:]
    assert not any(recap_changed(again.stdout).values()), again.stdout[-3000:]


def etcd_members(master: str) -> list[dict]:
    """The etcd member list as a master's own etcd reports it."""
    pki = "/etc/kubernetes/pki/etcd"
    out = docker("exec", master, "etcdctl", "--endpoints=https://127.0.0.1:2379", f"--cacert={pki}/ca.pem",
                 f"--cert={pki}/apiserver-client.pem", f"--key={pki}/apiserver-client-key.pem",
                 "member", "list", "-w", "json")
    return json.loads(out)["members"]


def lose_master(master: str) -> None:
    """The master's host is gone for good: etcd's data lived in the container, so its member is lost."""
    docker("rm", "-f", "-v", master)
    docker("volume", "rm", f"{master}-containerd")


def assert_whole_kubernetes(home: Path, tmp_path: Path, masters: list[str]) -> list[dict]:
    """HEALTHY, one serving etcd member per master, every node Ready; returns the etcd members."""
    data = json.loads(carina(home, "get", KUBE, "-o", "json").stdout)
    assert (data["status"], data["health"]) == ("UPDATE_COMPLETE", "HEALTHY"), data.get("health_reason")
    members = etcd_members(masters[0])
    assert sorted(m["name"] for m in members) == masters, members
    health = subprocess.run(
        ["docker", "exec", masters[0], "etcdctl", "--cacert=/etc/kubernetes/pki/etcd/ca.pem",
         "--cert=/etc/kubernetes/pki/etcd/apiserver-client.pem",
         "--key=/etc/kubernetes/pki/etcd/apiserver-client-key.pem", "endpoint", "health", "--cluster"],
        capture_output=True, text=True, timeout=60, check=False)
    # etcdctl reports health on stderr.
    assert health.returncode == 0 and (health.stdout + health.stderr).count("is healthy") == 3, health.stderr
    nodes = kubectl(home, tmp_path, "get nodes --no-headers")
    rows = [line.split() for line in nodes.stdout.splitlines()]
    assert sorted(r[0] for r in rows) == [*masters, f"{KUBE}-node-1"], nodes.stdout + nodes.stderr
    assert all(r[1] == "Ready" for r in rows), nodes.stdout
    return members


def kubectl(home: Path, tmp_path: Path, args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'eval "$(carina env {KUBE})" && {KUBECTL} {args}'],
                          env=os.environ | {"CARINA_HOME": str(home), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120, check=False)


def test_repair_replaces_lost_kubernetes_masters_and_restores_etcd_after_a_lost_majority(tmp_path):
    home = tmp_path / "home"
    masters = [f"{KUBE}-master-{i}" for i in (1, 2, 3)]
    proc = carina(home, "create", KUBE, "--coe", "kubernetes", "--masters", "3", "--nodes", "1", "--wait")
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        before = {m["name"]: m["ID"] for m in etcd_members(masters[0])}
        assert sorted(before) == masters
        lose_master(masters[1])

        proc = carina(home, "repair", KUBE, "--wait")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # One member per master, the lost one replaced by a new identity, every member serving.
        after = {m["name"]: m["ID"] for m in assert_whole_kubernetes(home, tmp_path, masters)}
        assert after[masters[1]] != before[masters[1]]
        assert after[masters[0]] == before[masters[0]] and after[masters[2]] == before[masters[2]]

        # Two of the three masters lost for good: etcd has no majority left, and is restored from the survivor
        # with the cluster's objects.
        made = kubectl(home, tmp_path, "create configmap kept-through-restore --from-literal=answer=42")
        assert made.returncode == 0, made.stderr
        lose_master(masters[1])
        lose_master(masters[2])
        proc = carina(home, "repair", KUBE, "--wait")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        restored = {m["name"]: m["ID"] for m in assert_whole_kubernetes(home, tmp_path, masters)}
        assert restored[masters[0]] == before[masters[0]]
        assert restored[masters[1]] not in (before[masters[1]], after[masters[1]])
        assert restored[masters[2]] != before[masters[2]]
        kept = kubectl(home, tmp_path, "get configmap kept-through-restore -o jsonpath={.data.answer}")
        assert (kept.returncode, kept.stdout) == (0, "42"), kept.stderr
        # Nothing of the restore is left on the survivor: the next etcd restart is an ordinary one.
        assert docker("exec", masters[0], "ls", "/run/systemd/system/etcd.service.d/") == ""
    finally:
        if carina(home, "rm", KUBE, "--wait").returncode != 0:
            subprocess.run(["ansible-playbook", "playbooks/delete.yml", "-e", f"carina_name={KUBE}",
                            "-e", f"carina_home={home}"], cwd=ROOT, env=env(), capture_output=True, check=False)
