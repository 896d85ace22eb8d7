"""Provider static end to end: "existing machines" made from the host image, handed over as an
inventory, a Swarm on them used with the docker CLI through the bundle, scaled by editing the
inventory, and deleted, after which the machines still run with carina's traces gone."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, docker, env, run_module, ssh

NAME = "it-static"
MACHINES = "it-static-machines"  # the machines' own label: carina's cluster must never touch them
KUBE_MACHINES = "it-static-kube-machines"
CLUSTERS = (MACHINES, KUBE_MACHINES)  # the labels this module's objects carry (conftest removes a killed run's)
LB_MACHINES = ["st-m1", "st-w1", "st-w2", "st-lb"]
VIP_MACHINES = ["st-v1", "st-v2", "st-v3"]


def playbook(name: str, inventory: Path, home: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["ansible-playbook", "-i", str(inventory), f"playbooks/{name}.yml", "-e", f"carina_name={NAME}",
           "-e", f"carina_home={home}", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"}, capture_output=True, text=True,
                          timeout=1200, check=False)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """Seven machines with sshd and a key, as someone's existing servers would be."""
    folder = tmp_path_factory.mktemp("machines")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts = [{"name": n, "role": "machine"} for n in LB_MACHINES + VIP_MACHINES if n != "st-lb"]
    # The load balancer machine is a bare host: carina installs HAProxy on it, and removes it again.
    hosts.append({"name": "st-lb", "role": "machine", "image": "carina-host:bookworm", "engine_volume": False})
    rc, made = run_module("rax.carina.local_hosts", {
        "cluster": MACHINES, "image": "carina-host:bookworm-engine",
        "public_key": (folder / "id_ed25519.pub").read_text(), "hosts": hosts,
        "known_hosts": str(folder / "known_hosts")})
    try:
        assert rc == 0, made
        yield {"key": key, "folder": folder, "subnet": made["network"]["subnet"],
               "address": {h["name"]: h["address"] for h in made["hosts"]}}
    finally:
        rc, gone = run_module("rax.carina.local_hosts", {"cluster": MACHINES, "state": "absent"})
        assert rc == 0, gone.get("msg", gone)


def inventory(machines, path: Path, masters, workers, *, lb=None, vip="") -> Path:
    def group(names):
        return {"hosts": {n: {"ansible_host": machines["address"][n]} for n in names}}

    children = {"masters": group(masters), "workers": group(workers)}
    if lb:
        children["lb"] = group([lb])
    data = {"all": {
        "hosts": {"localhost": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
        "vars": {"carina_provider": "static", "ansible_user": "root",
                 "ansible_ssh_private_key_file": str(machines["key"]),
                 # The owner knows the machines' host keys; carina checks them strictly.
                 "ansible_ssh_common_args": f"-o UserKnownHostsFile={machines['folder'] / 'known_hosts'} "
                                            "-o StrictHostKeyChecking=yes",
                 **({"carina_vip": vip} if vip else {})},
        "children": children}}
    path.write_text(yaml.safe_dump(data))
    return path


def docker_env(state: Path) -> dict[str, str]:
    out = dict(env())
    for line in (state / "docker.env").read_text().splitlines():
        if line.startswith("export "):
            key, _sep, value = line[len("export "):].partition("=")
            out[key] = value.strip("'")
    return out


def nodes(state: Path) -> dict[str, str]:
    proc = subprocess.run(["docker", "node", "ls", "--format", "{{json .}}"], env=docker_env(state),
                          capture_output=True, text=True, timeout=60, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return {row["Hostname"]: row["ManagerStatus"] or "worker" for row in rows if row["Status"] == "Ready"}


def on(machines, name: str, command: str) -> str:
    return ssh(machines["key"], machines["address"][name], command).stdout.strip()


def untouched(machines, name: str) -> None:
    """A machine given back: running, out of any swarm, no TLS settings of carina's."""
    assert docker("inspect", "-f", "{{.State.Running}}", name) == "true"
    state = on(machines, name, "docker info --format '{{.Swarm.LocalNodeState}}'")
    assert state == "inactive", on(machines, name, "systemctl status docker --no-pager")
    assert on(machines, name, "ls /etc/docker/daemon.json /etc/docker/tls "
                              "/etc/systemd/system/docker.service.d/carina.conf /etc/docker/plugins/carina-authz.spec "
                              "/etc/systemd/system/carina-docker-authz.socket /usr/local/libexec/carina-docker-authz "
                              "2>/dev/null | wc -l") == "0"
    assert on(machines, name, "systemctl is-active carina-docker-authz.socket || true") == "inactive"


def refused_by_another_state(inv: Path, other: Path, *extra: str) -> None:
    """A create and a delete of the cluster's name from another state folder (another id) fail on the hosts'
    marks, saying why."""
    for action in ("create", "delete"):
        proc = playbook(action, inv, other, *extra)
        said = " ".join(proc.stdout.split())
        assert proc.returncode != 0 and "it was made from another state folder. Nothing was changed on it" in said, \
            proc.stdout[-3000:]


def test_swarm_on_existing_machines_with_a_load_balancer_host(machines, tmp_path):
    home = tmp_path / "home"
    inv = inventory(machines, tmp_path / "hosts.yml", ["st-m1"], ["st-w1"], lb="st-lb")
    ok(playbook("create", inv, home))
    state = home / "clusters" / NAME
    record = json.loads((state / "cluster.json").read_text())
    assert record["provider"] == "static" and record["endpoint"] == machines["address"]["st-lb"]
    assert record["api_url"] == f"tcp://{machines['address']['st-lb']}:2376"
    assert nodes(state) == {"st-m1": "Leader", "st-w1": "worker"}
    # The Docker API answers through the load balancer host, with the bundle only.
    info = subprocess.run(["docker", "info", "--format", "{{.Swarm.ControlAvailable}}"], env=docker_env(state),
                          capture_output=True, text=True, timeout=60, check=True)
    assert info.stdout.strip() == "true"
    assert on(machines, "st-lb", "cat /var/lib/carina/lb_haproxy-installed") == "haproxy"

    # A second run changes nothing.
    again = ok(playbook("create", inv, home))
    assert all(int(n) == 0 for n in re.findall(r"changed=(\d+)", again)), again[-3000:]

    # A cluster of the same name from another state folder neither takes these hosts over nor gives them back.
    refused_by_another_state(inv, tmp_path / "other-home")
    assert nodes(state) == {"st-m1": "Leader", "st-w1": "worker"}

    # Scale by editing the inventory: a worker joins, then one leaves and is given back.
    inventory(machines, inv, ["st-m1"], ["st-w1", "st-w2"], lb="st-lb")
    ok(playbook("scale", inv, home))
    assert nodes(state) == {"st-m1": "Leader", "st-w1": "worker", "st-w2": "worker"}
    inventory(machines, inv, ["st-m1"], ["st-w2"], lb="st-lb")
    ok(playbook("scale", inv, home))
    assert nodes(state) == {"st-m1": "Leader", "st-w2": "worker"}
    untouched(machines, "st-w1")

    # Delete gives every machine back and deletes none.
    ok(playbook("delete", inv, home))
    assert not state.exists()
    for name in ("st-m1", "st-w2"):
        untouched(machines, name)
    assert docker("inspect", "-f", "{{.State.Running}}", "st-lb") == "true"
    assert on(machines, "st-lb", "command -v haproxy || echo gone") == "gone"
    assert on(machines, "st-lb", "ls -A /etc/haproxy 2>/dev/null | grep -c carina") == "0"
    assert on(machines, "st-lb", "ls -A /var/lib/carina 2>/dev/null | wc -l") == "0"


def test_refused_before_anything_when_a_host_is_in_another_swarm(machines, tmp_path):
    home = tmp_path / "home"
    on(machines, "st-w1", "docker swarm init --advertise-addr " + machines["address"]["st-w1"])
    try:
        inv = inventory(machines, tmp_path / "hosts.yml", ["st-m1"], ["st-w1"], lb="st-lb")
        proc = playbook("create", inv, home)
        assert proc.returncode != 0
        assert "st-w1 is already in a swarm" in proc.stdout, proc.stdout[-3000:]
        assert on(machines, "st-m1", "ls /etc/docker/daemon.json 2>/dev/null | wc -l") == "0"
    finally:
        on(machines, "st-w1", "docker swarm leave --force")
    proc = playbook("delete", inventory(machines, tmp_path / "hosts.yml", ["st-m1"], ["st-w1"], lb="st-lb"), home)
    ok(proc)


def test_three_masters_behind_a_virtual_ip_survive_losing_its_holder(machines, tmp_path):
    home = tmp_path / "home"
    subnet = ipaddress.ip_network(machines["subnet"])
    vip = str(subnet.network_address + 250)
    inv = inventory(machines, tmp_path / "hosts.yml", VIP_MACHINES, [], vip=vip)
    ok(playbook("create", inv, home))
    state = home / "clusters" / NAME
    assert json.loads((state / "cluster.json").read_text())["api_url"] == f"tcp://{vip}:2376"
    assert sorted(nodes(state).values()) == ["Leader", "Reachable", "Reachable"]
    holders = [n for n in VIP_MACHINES if vip in on(machines, n, "ip -o -4 addr show")]
    assert len(holders) == 1, holders
    # The holder's HAProxy stops: the VIP moves to another master and the CLI keeps working.
    on(machines, holders[0], "systemctl stop haproxy")
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            moved = [n for n in VIP_MACHINES if vip in on(machines, n, "ip -o -4 addr show")]
            if moved and moved != holders:
                break
            time.sleep(1)
        assert moved and moved != holders, moved
        assert sorted(nodes(state).values()) == ["Leader", "Reachable", "Reachable"]
    finally:
        on(machines, holders[0], "systemctl start haproxy")
    ok(playbook("delete", inv, home))
    for name in VIP_MACHINES:
        untouched(machines, name)
        assert on(machines, name, "command -v keepalived || echo gone") == "gone"
        assert on(machines, name, "sysctl -n net.ipv4.ip_nonlocal_bind") == "0"


def test_the_carina_command_drives_a_static_cluster(machines, tmp_path):
    """carina create --provider static --inventory: the same run, asynchronous, with health and the API URL."""
    # A short home: SSH control sockets live in its run folders, and a socket path holds 107 bytes at most.
    home = Path(tempfile.mkdtemp(prefix="ch-", dir="/tmp"))
    inv = inventory(machines, tmp_path / "hosts.yml", ["st-m1"], ["st-w2"], lb="st-lb")
    run_env = env() | {"CARINA_HOME": str(home)}

    def carina(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["carina", *args], env=run_env, capture_output=True, text=True, timeout=900,
                              check=False)
        assert not check or proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    refused = carina("create", "it-static-cli", "--provider", "static", "--inventory", str(inv), "--nodes", "3",
                     check=False)
    assert refused.returncode == 1 and "the inventory has 1" in refused.stderr
    assert json.loads(carina("ls", "-o", "json").stdout) == []
    carina("create", "it-static-cli", "--provider", "static", "--inventory", str(inv), "--wait")
    got = json.loads(carina("get", "it-static-cli", "-o", "json").stdout)
    address = machines["address"]["st-lb"]
    assert (got["status"], got["health"], got["api_url"]) == ("CREATE_COMPLETE", "HEALTHY", f"tcp://{address}:2376")
    listing = subprocess.run(["bash", "-c", 'eval "$(carina env it-static-cli)" && docker node ls -q | wc -l'],
                             env=run_env, capture_output=True, text=True, timeout=120, check=True)
    assert listing.stdout.strip() == "2"
    carina("rm", "it-static-cli", "--wait")
    for name in ("st-m1", "st-w2"):
        untouched(machines, name)
    shutil.rmtree(home)


KUBECTL = Path(os.environ.get("CARINA_CACHE", ROOT / ".cache")) / "kubernetes" / "v1.20.2" / "bin" / "kubectl"


@pytest.fixture
def kube_machines(tmp_path):
    """Two machines of the Kubernetes host image (containerd, etcd, the binaries) and a bare one."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts = [{"name": n, "role": "machine", "engine_volume": False, "devices": ["/dev/kmsg"],
              "volumes": ["/var/lib/containerd"]} for n in ("st-k1", "st-k2")]
    hosts.append({"name": "st-klb", "role": "machine", "image": "carina-host:bookworm", "engine_volume": False})
    rc, made = run_module("rax.carina.local_hosts", {
        "cluster": KUBE_MACHINES, "image": "carina-host:bookworm-kube",
        "public_key": key.with_suffix(".pub").read_text(), "hosts": hosts,
        "known_hosts": str(tmp_path / "known_hosts")})
    try:
        assert rc == 0, made
        yield {"key": key, "folder": tmp_path, "address": {h["name"]: h["address"] for h in made["hosts"]}}
    finally:
        rc, gone = run_module("rax.carina.local_hosts", {"cluster": KUBE_MACHINES, "state": "absent"})
        assert rc == 0, gone.get("msg", gone)


def test_kubernetes_on_existing_machines(kube_machines, tmp_path):
    home = tmp_path / "home"
    inv = inventory(kube_machines, tmp_path / "hosts.yml", ["st-k1"], ["st-k2"], lb="st-klb")
    ok(playbook("create", inv, home, "-e", "carina_coe=kubernetes"))
    state = home / "clusters" / NAME
    record = json.loads((state / "cluster.json").read_text())
    assert record["api_url"] == f"https://{kube_machines['address']['st-klb']}:6443"
    listing = subprocess.run([str(KUBECTL), "get", "nodes", "-o", "json"],
                             env={"KUBECONFIG": str(state / "kubeconfig"), "HOME": str(home)},
                             capture_output=True, text=True, timeout=60, check=True)
    ready = {item["metadata"]["name"]: next(c["status"] for c in item["status"]["conditions"] if c["type"] == "Ready")
             for item in json.loads(listing.stdout)["items"]}
    assert ready == {"st-k1": "True", "st-k2": "True"}
    refused_by_another_state(inv, tmp_path / "other-home", "-e", "carina_coe=kubernetes")
    again = subprocess.run([str(KUBECTL), "get", "nodes", "--no-headers"],
                           env={"KUBECONFIG": str(state / "kubeconfig"), "HOME": str(home)},
                           capture_output=True, text=True, timeout=60, check=True)
    assert sorted(line.split()[:2] for line in again.stdout.splitlines()) == [["st-k1", "Ready"], ["st-k2", "Ready"]]
    # Delete gives the machines back: no service, unit, configuration or data of carina's Kubernetes.
    ok(playbook("delete", inv, home))
    for name in ("st-k1", "st-k2"):
        assert docker("inspect", "-f", "{{.State.Running}}", name) == "true"
        left = on(kube_machines, name, "ls -d /etc/kubernetes /var/lib/etcd/carina /var/lib/kubelet "
                                       "/etc/systemd/system/kubelet.service /usr/local/lib/carina 2>/dev/null | wc -l")
        assert left == "0"
        running = on(kube_machines, name, "ps -eo comm= | grep -cxE 'kubelet|kube-proxy|etcd|kube-apiserver' || true")
        assert running == "0", on(kube_machines, name, "ps -eo comm=")
        assert on(kube_machines, name, "ip route show proto 199 | wc -l") == "0"
