"""A Swarm cluster on local hosts, end to end, with the real docker CLI and nothing but the bundle."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, docker, env, free_subnet, owned_objects, recap_changed, run_module, wait_until

NAME = "it-swarm"
SUBNET = free_subnet()
FOREIGN = free_subnet()  # held by a network that is not carina's
# The clusters this module makes (conftest checks that nothing of theirs is left).
CLUSTERS = (NAME, "Bad_Swarm")
CONTRACT = ROOT / "collections/ansible_collections/rax/carina/roles/coe_swarm/meta/contract.yml"


def playbook(name: str, home: Path, *extra: str, verbose: str = "") -> subprocess.CompletedProcess:
    cmd = ["ansible-playbook", f"playbooks/{name}.yml", "-e", f"carina_name={NAME}", "-e", f"carina_home={home}",
           *extra]
    if verbose:
        cmd.append(verbose)
    return subprocess.run(cmd, cwd=ROOT, env=env() | {"ANSIBLE_NOCOLOR": "1"}, capture_output=True, text=True,
                          timeout=900, check=False)


def create(home: Path, *extra: str, verbose: str = "") -> subprocess.CompletedProcess:
    return playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1", "-e", f"carina_subnet={SUBNET}",
                    *extra, verbose=verbose)


def bundle_env(state: Path) -> dict[str, str]:
    out = dict(os.environ)
    for line in (state / "docker.env").read_text().splitlines():
        match = re.match(r"^export (\w+)='(.*)'$", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def cli(state: Path, *args: str, check: bool = True, timeout: int = 60, **env_over: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=bundle_env(state) | env_over, capture_output=True, text=True,
                          timeout=timeout, check=check)






def record(state: Path) -> dict:
    return json.loads((state / "cluster.json").read_text())


def container_roles(cluster: str) -> dict[str, str]:
    """{container name: its carina.role label} of a cluster's host containers."""
    names = owned_objects(cluster)["containers"]
    out = docker("inspect", "--format", '{{.Name}} {{index .Config.Labels "carina.role"}}', *names) if names else ""
    return {line.split()[0].lstrip("/"): line.split()[1] for line in out.splitlines()}


def node_roles(state: Path) -> dict[str, tuple[str, str]]:
    """{node: (status, swarm role label)} as the swarm sees it, through the load balancer."""
    out = cli(state, "node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout
    status = dict(line.split() for line in out.splitlines())
    labels = cli(state, "node", "inspect", "--format", '{{.Description.Hostname}} {{index .Spec.Labels "carina.role"}}',
                 *status).stdout
    return {line.split()[0]: (status[line.split()[0]], line.split()[1]) for line in labels.splitlines()}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("carina-home")
    yield home
    playbook("delete", home)


@pytest.fixture(scope="module")
def cluster(home):
    started = time.time()
    proc = create(home)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    print(f"create took {time.time() - started:.1f}s")
    return {"state": home / "clusters" / NAME, "log": proc.stdout + proc.stderr}


def test_even_managers_fail_before_anything_exists(tmp_path):
    proc = playbook("create", tmp_path, "-e", "carina_masters=2", "-e", f"carina_subnet={SUBNET}")
    assert proc.returncode != 0
    assert "masters=2: the number of managers must be odd" in proc.stdout
    assert "(use 1 or 3)" in proc.stdout
    assert owned_objects(NAME) == {"containers": [], "volumes": [], "networks": []}
    assert not (tmp_path / "clusters").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-e", "carina_masters=0"], "masters=0: the number of managers must be odd"),
        (["-e", "carina_masters=9"], "from 1 to 7"),
        (["-e", "carina_nodes=-1"], "nodes=-1: the number of workers must be from 0 to 250"),
        (["-e", "carina_name=Bad_Swarm"], "name 'Bad_Swarm': use 1 to 40 lower-case letters"),
        (["-e", "carina_coe=mesos"], "coe 'mesos' is not supported; choose one of: kubernetes, swarm"),
        (["-e", f"carina_subnet={SUBNET.replace('/24', '/30')}"], "has room for 1 hosts, the cluster needs 3"),
        (["-e", "carina_subnet=not-a-subnet"], "is not an IPv4 network in CIDR form"),
    ],
)
def test_bad_specs_fail_before_anything_exists(tmp_path, extra, message):
    proc = playbook("create", tmp_path, "-e", "carina_masters=1", "-e", "carina_nodes=1",
                    "-e", f"carina_subnet={SUBNET}", *extra)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert owned_objects(NAME) == {"containers": [], "volumes": [], "networks": []}
    assert owned_objects("Bad_Swarm") == {"containers": [], "volumes": [], "networks": []}
    assert not (tmp_path / "clusters").exists()


def test_subnet_in_use_or_name_taken_fail_before_anything_exists(tmp_path):
    docker("network", "create", "--subnet", FOREIGN, "it-swarm-foreign")
    try:
        proc = playbook("create", tmp_path, "-e", f"carina_subnet={FOREIGN}")
        assert proc.returncode != 0
        assert f"subnet {FOREIGN} is already in use by Docker network it-swarm-foreign" in proc.stdout
    finally:
        docker("network", "rm", "it-swarm-foreign")
    docker("create", "--name", f"{NAME}-manager-1", "carina-host:bookworm")
    try:
        proc = playbook("create", tmp_path, "-e", f"carina_subnet={SUBNET}")
        assert proc.returncode != 0
        assert f"a container named {NAME}-manager-1 already exists and is not part of cluster {NAME}" in proc.stdout
    finally:
        docker("rm", "-f", f"{NAME}-manager-1")
    assert owned_objects(NAME) == {"containers": [], "volumes": [], "networks": []}
    assert not (tmp_path / "clusters").exists()


def test_bundle(cluster):
    state = cluster["state"]
    names = sorted(p.name for p in state.iterdir() if p.is_file())
    for wanted in ["ca.pem", "cert.pem", "key.pem", "docker.env", "docker.fish", "docker.ps1", "docker.cmd"]:
        assert wanted in names
    assert (state / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (state / "pki" / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    text = (state / "docker.env").read_text()
    assert "DOCKER_TLS_VERIFY='1'" in text and f"CARINA_CLUSTER_NAME='{NAME}'" in text
    assert (state / "docker.cmd").read_bytes().endswith(b"\r\n")
    endpoint = json.loads((state / "cluster.json").read_text())["endpoint"]
    assert f"DOCKER_HOST='tcp://{endpoint}:2376'" in text


def test_record_names_the_coe_its_contract_and_the_api_url(cluster):
    state = cluster["state"]
    rec = record(state)
    contract = yaml.safe_load(CONTRACT.read_text())
    assert rec["schema_version"] == 1
    assert (rec["name"], rec["coe"], rec["provider"]) == (NAME, "swarm", "local")
    assert rec["contract_version"] == contract["version"]
    assert rec["api_url"] == f"tcp://{rec['endpoint']}:2376"
    assert rec["subnet"] == SUBNET
    assert (rec["masters"], rec["nodes"]) == (3, 1)
    assert rec["master_hosts"] == [f"{NAME}-manager-{i}" for i in (1, 2, 3)]
    assert rec["worker_hosts"] == [f"{NAME}-worker-1"]
    assert (rec["removing_masters"], rec["removing_workers"]) == ([], [])
    # The bundle points the docker CLI at the record's API URL.
    assert bundle_env(state)["DOCKER_HOST"] == rec["api_url"]
    assert (state / "cluster.json").stat().st_mode & 0o777 == 0o600


def test_host_containers_carry_the_generic_roles(cluster):
    """Containers say master/worker/lb (the providers' words); the swarm's nodes say manager/worker (Swarm's)."""
    assert container_roles(NAME) == {f"{NAME}-manager-1": "master", f"{NAME}-manager-2": "master",
                                     f"{NAME}-manager-3": "master", f"{NAME}-worker-1": "worker",
                                     f"{NAME}-lb": "lb"}
    assert node_roles(cluster["state"]) == {f"{NAME}-manager-{i}": ("Ready", "manager") for i in (1, 2, 3)} | {
        f"{NAME}-worker-1": ("Ready", "worker")}


def test_docker_info_through_the_load_balancer(cluster):
    info = json.loads(cli(cluster["state"], "info", "--format", "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "active"
    assert info["Managers"] == 3
    assert info["Nodes"] == 4
    # Round robin: the load balancer spreads connections over the managers.
    seen = {cli(cluster["state"], "info", "--format", "{{.Name}}").stdout.strip() for _ in range(6)}
    assert seen == {f"{NAME}-manager-{i}" for i in (1, 2, 3)}
    nodes = cli(cluster["state"], "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}").stdout
    rows = {line.split()[0]: line.split()[1:] for line in nodes.splitlines()}
    assert sorted(rows) == sorted([f"{NAME}-manager-{i}" for i in (1, 2, 3)] + [f"{NAME}-worker-1"]), nodes
    assert all(row[0] == "Ready" for row in rows.values()), nodes
    assert sorted(row[1] for name, row in rows.items() if "manager" in name) == ["Leader", "Reachable", "Reachable"]
    assert rows[f"{NAME}-worker-1"] == ["Ready"]
    labels = cli(cluster["state"], "node", "inspect", f"{NAME}-worker-1", "--format",
                 '{{index .Spec.Labels "carina.role"}}').stdout.strip()
    assert labels == "worker"


def test_overlay_networks_take_their_subnets_from_the_clusters_pool(cluster):
    state = cluster["state"]
    pool = ipaddress.ip_network("198.19.128.0/18")
    assert record(state)["coe_options"] == {"address_pool": str(pool), "address_pool_mask": 24}
    subnet = "{{range .IPAM.Config}}{{.Subnet}}{{end}}"
    ingress = ipaddress.ip_network(cli(state, "network", "inspect", "ingress", "--format", subnet).stdout.strip())
    assert ingress.subnet_of(pool) and ingress.prefixlen == 24, ingress
    cli(state, "network", "create", "-d", "overlay", "it-pool")
    try:
        # The leader's allocator gives the network its subnet just after the create returns, and the
        # load balancer may send the inspect to another manager: a few seconds may pass.
        def allocated() -> str:
            return cli(state, "network", "inspect", "it-pool", "--format", subnet).stdout.strip()

        made = ipaddress.ip_network(wait_until(allocated, 30, "the overlay network's subnet"))
    finally:
        cli(state, "network", "rm", "it-pool")
    assert made.subnet_of(pool) and made.prefixlen == 24 and made != ingress, made


def test_connections_without_the_right_client_cert_are_refused(cluster, tmp_path):
    state = cluster["state"]
    endpoint = bundle_env(state)["DOCKER_HOST"]
    # No client certificate at all.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "ca.pem").write_bytes((state / "ca.pem").read_bytes())
    proc = subprocess.run(["docker", "--tlsverify", "--tlscacert", str(bare / "ca.pem"), "-H", endpoint, "info"],
                          env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    # A client certificate from another CA.
    rc, res = run_module("rax.carina.cluster_pki", {"path": str(tmp_path / "other"), "cluster_name": "other"})
    assert rc == 0, res
    proc = subprocess.run(
        ["docker", "--tlsverify", "--tlscacert", str(state / "ca.pem"), "--tlscert",
         str(tmp_path / "other" / "client-admin.pem"), "--tlskey", str(tmp_path / "other" / "client-admin-key.pem"),
         "-H", endpoint, "info"],
        env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "certificate" in (proc.stderr + proc.stdout).lower() or "tls" in (proc.stderr + proc.stdout).lower()


def test_the_health_check_certificate_may_only_ping(cluster):
    """The load balancer's health-check certificate is of the cluster CA, yet every manager lets it make
    nothing but the ping its check needs (carina's authorization plug-in); the admin certificate may do
    anything, and the local socket is untouched."""
    state = cluster["state"]
    pki = state / "pki"
    health = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    health.load_cert_chain(str(pki / "client-lb-health.pem"), str(pki / "client-lb-health-key.pem"))
    admin = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    admin.load_cert_chain(str(state / "cert.pem"), str(state / "key.pem"))

    def call(address: str, context: ssl.SSLContext, method: str, path: str) -> tuple[int, str]:
        conn = http.client.HTTPSConnection(address, 2376, context=context, timeout=20)
        try:
            conn.request(method, path)
            answer = conn.getresponse()
            return answer.status, answer.read().decode()
        finally:
            conn.close()

    managers = {name: address for name, address in record(state)["addresses"].items() if "-manager-" in name}
    assert len(managers) == 3, managers
    for name, address in managers.items():
        assert call(address, health, "GET", "/_ping") == (200, "OK"), name
        assert call(address, health, "HEAD", "/v1.41/_ping")[0] == 200, name
        for method, path in (("GET", "/v1.41/containers/json"), ("GET", "/v1.41/info"), ("POST", "/v1.41/swarm/leave")):
            status, body = call(address, health, method, path)
            assert status == 403 and "may only make these calls: GET /_ping, HEAD /_ping" in body, (name, path, body)
        assert call(address, admin, "GET", "/v1.41/containers/json")[0] == 200, name
        assert docker("exec", name, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}") == "active"
    # The load balancer's checks pass with it: the managers serve through it.
    assert cli(state, "info", "--format", "{{.Swarm.ControlAvailable}}").stdout.strip() == "true"


def test_service_with_replicas_from_a_local_image(cluster):
    state = cluster["state"]
    # A tiny image imported on every node from the node's own files (no registry here).
    for node in [f"{NAME}-manager-{i}" for i in (1, 2, 3)] + [f"{NAME}-worker-1"]:
        docker("exec", node, "sh", "-c",
               "tar -C / -ch bin/sleep lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 "
               "| docker import - carina-test/sleep:1 >/dev/null")
    cli(state, "service", "create", "--detach", "--name", "it-sleep", "--replicas", "4", "--no-resolve-image",
        "carina-test/sleep:1", "/bin/sleep", "3600")
    try:
        wait_until(lambda: cli(state, "service", "ls", "--filter", "name=it-sleep", "--format", "{{.Replicas}}")
                   .stdout.strip() == "4/4", 90, "4/4 replicas")
    finally:
        cli(state, "service", "rm", "it-sleep")


def test_a_manager_down_leaves_the_cli_working_and_heals(cluster):
    state = cluster["state"]
    victim = f"{NAME}-manager-1"
    docker("stop", "-t", "2", victim)
    try:
        def down():
            proc = cli(state, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}", check=False)
            return proc.returncode == 0 and f"{victim} Down Unreachable" in proc.stdout and proc.stdout
        wait_until(down, 90, f"{victim} shown Down through the load balancer")
        # Every call through the load balancer keeps working while the manager is down.
        for _ in range(6):
            assert cli(state, "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "active"
    finally:
        docker("start", victim)

    def healed():
        proc = cli(state, "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}", check=False)
        lines = proc.stdout.splitlines()
        return (proc.returncode == 0 and len(lines) == 4 and all(" Ready" in line for line in lines)
                and sum(("Leader" in line or "Reachable" in line) for line in lines) == 3 and proc.stdout)
    wait_until(healed, 120, "the swarm to heal")


def test_second_create_changes_nothing_and_logs_no_secret(cluster, home):
    proc = create(home, verbose="-vvv")
    assert proc.returncode == 0, proc.stdout[-4000:]
    changed = recap_changed(proc.stdout)
    assert changed and all(v == 0 for v in changed.values()), changed
    secrets = _private_key_bodies(cluster["state"])
    assert secrets, "no key files found to look for"
    for log in (cluster["log"], proc.stdout + proc.stderr):
        assert "PRIVATE KEY" not in log
        for body in secrets:
            assert body not in log


def test_scale_playbook_grows_and_removes_workers_by_name(cluster, home):
    """ansible-playbook playbooks/scale.yml on its own (no carina): add a worker, then remove another by name."""
    state = cluster["state"]
    proc = playbook("scale", home, "-e", "carina_nodes=2")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    rec = record(state)
    assert (rec["masters"], rec["nodes"]) == (3, 2)
    assert rec["worker_hosts"] == [f"{NAME}-worker-1", f"{NAME}-worker-2"]
    assert (rec["removing_masters"], rec["removing_workers"]) == ([], [])
    assert container_roles(NAME)[f"{NAME}-worker-2"] == "worker"
    wait_until(lambda: node_roles(state).get(f"{NAME}-worker-2") == ("Ready", "worker"), 60, "worker-2 Ready")
    assert len(node_roles(state)) == 5

    proc = playbook("scale", home, "-e", json.dumps({"carina_remove_nodes": [f"{NAME}-worker-1"]}))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    rec = record(state)
    assert (rec["masters"], rec["nodes"]) == (3, 1)
    assert rec["worker_hosts"] == [f"{NAME}-worker-2"]
    assert (rec["removing_masters"], rec["removing_workers"]) == ([], [])
    assert rec["api_url"] == bundle_env(state)["DOCKER_HOST"]
    assert sorted(owned_objects(NAME)["containers"]) == sorted(
        [f"{NAME}-lb", *(f"{NAME}-manager-{i}" for i in (1, 2, 3)), f"{NAME}-worker-2"])
    assert node_roles(state) == {f"{NAME}-manager-{i}": ("Ready", "manager") for i in (1, 2, 3)} | {
        f"{NAME}-worker-2": ("Ready", "worker")}
    # Run again, nothing changes.
    again = playbook("scale", home)
    assert again.returncode == 0, again.stdout[-4000:]
    changed = recap_changed(again.stdout)
    assert changed and all(v == 0 for v in changed.values()), changed


def _private_key_bodies(state: Path) -> list[str]:
    bodies = []
    for path in [*state.glob("*.pem"), *(state / "pki").glob("*-key.pem"), state / "ssh" / "id_ed25519"]:
        text = path.read_text()
        if "PRIVATE KEY" in text:
            lines = [line for line in text.splitlines() if line and "-----" not in line]
            bodies.extend(line for line in lines if len(line) >= 40)
    return bodies


def test_delete_leaves_nothing(cluster, home):
    started = time.time()
    proc = playbook("delete", home)
    assert proc.returncode == 0, proc.stdout[-3000:]
    print(f"delete took {time.time() - started:.1f}s")
    assert owned_objects(NAME) == {"containers": [], "volumes": [], "networks": []}
    assert not cluster["state"].exists()
    again = playbook("delete", home)
    assert again.returncode == 0, again.stdout[-3000:]
