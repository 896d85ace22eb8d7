"""Swarm clusters on the test cloud: real Keystone, Octavia and Ironic, our Nova/Neutron/Glance.

Hosts are real containers behind the cloud's APIs, the Octavia VIP is a real HAProxy, so the
cluster answers the docker CLI through the VIP with the credentials bundle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, env, run_module, wait_until
from tests.integration.test_awx_jobs import answers, job

openstack = pytest.importorskip("openstack")

CLOUD_DIR = ROOT / ".cache" / "testcloud"
CLOUDS_YAML = CLOUD_DIR / "clouds.yaml"
BAREMETAL_NODES = 3
# Clusters of this module; their hosts are the test cloud's containers (labelled carina.testcloud,
# not carina.cluster), so conftest's check of carina.cluster objects finds none of them.
CLUSTERS = ("os-vm", "os-mixed", "os-bad", "os-cap", "os-kube", "os-awx")


def ensure_baremetal_nodes(admin) -> None:
    """Fake-hardware nodes in resource class baremetal, available, as an operator enrolls them."""
    have = [n for n in admin.baremetal.nodes(details=True) if (n.name or "").startswith("it-bm-")]
    for i in range(len(have) + 1, BAREMETAL_NODES + 1):
        node = admin.baremetal.create_node(name=f"it-bm-{i}", driver="fake-hardware", resource_class="baremetal",
                                           properties={"cpus": 2, "memory_mb": 2048, "local_gb": 20})
        admin.baremetal.set_node_provision_state(node, "manage", wait=True, timeout=120)
        admin.baremetal.set_node_provision_state(node, "provide", wait=True, timeout=120)


@pytest.fixture(scope="module")
def cloud(test_cloud):
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(CLOUDS_YAML)
    admin = openstack.connect(cloud="devstack-admin")
    ensure_baremetal_nodes(admin)
    return {"admin": admin, "demo": openstack.connect(cloud="devstack")}


@pytest.fixture(scope="module")
def home(tmp_path_factory, cloud):
    home = tmp_path_factory.mktemp("carina-os")
    yield home
    for name in ("os-vm", "os-mixed", "os-kube"):
        if (home / "clusters" / name).exists():  # what a failed test left (a delete removes the state folder)
            playbook("delete", home, name)


def playbook(name: str, home: Path, cluster: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = ["ansible-playbook", f"playbooks/{name}.yml", "-e", f"carina_name={cluster}", "-e", f"carina_home={home}",
           *extra]
    extra_env = {"ANSIBLE_NOCOLOR": "1", "OS_CLIENT_CONFIG_FILE": str(CLOUDS_YAML)}
    return subprocess.run(cmd, cwd=ROOT, env=env() | extra_env, capture_output=True, text=True, timeout=1200,
                          check=False)


def changed_counts(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def docker(home: Path, cluster: str, *args: str) -> str:
    bundle = home / "clusters" / cluster
    envs = dict(os.environ)
    for line in (bundle / "docker.env").read_text().splitlines():
        match = re.match(r"^export (\w+)='(.*)'$", line)
        if match:
            envs[match.group(1)] = match.group(2)
    return subprocess.run(["docker", *args], env=envs, capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip()


def docker_when_ready(home: Path, cluster: str, *args: str, timeout: float = 30) -> str:
    """The test cloud's HAProxy follows Octavia's members about a second later than the API says."""
    deadline = time.time() + timeout
    while True:
        try:
            return docker(home, cluster, *args)
        except subprocess.CalledProcessError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def owned(conn, cluster: str) -> dict[str, list[str]]:
    """Everything of a cluster the cloud knows about."""
    named = f"carina-{cluster}"
    return {
        "servers": sorted(s.name for s in conn.compute.servers()
                          if (s.metadata or {}).get("carina_cluster") == cluster),
        "ports": sorted(p.name for p in conn.network.ports() if (p.name or "").startswith(cluster + "-")),
        "floating_ips": sorted(f.floating_ip_address for f in conn.network.ips()
                               if (f.description or "").startswith(f"carina {cluster}")),
        "load_balancers": sorted(lb.name for lb in conn.load_balancer.load_balancers() if lb.name == named),
        "security_groups": sorted(g.name for g in conn.network.security_groups() if g.name == named),
        "server_groups": sorted(g.name for g in conn.compute.server_groups() if g.name == named),
        "keypairs": sorted(k.name for k in conn.compute.keypairs() if k.name == named),
    }


def docker_network_of(network_id: str) -> str:
    """The Docker network the test cloud made for a Neutron network."""
    names = subprocess.run(["docker", "network", "ls", "-q", "--format", "{{.Name}}", "--filter",
                            f"label=carina.testcloud.network={network_id}"], capture_output=True, text=True,
                           timeout=30, check=True).stdout.split()
    assert len(names) == 1, names
    return names[0]


def lb_members(conn, cluster: str) -> list[str]:
    lb = conn.load_balancer.find_load_balancer(f"carina-{cluster}")
    listener = conn.load_balancer.get_listener(lb.listeners[0]["id"])
    return sorted(m.address for m in conn.load_balancer.members(listener.default_pool_id))


def test_nova_cluster_lifecycle(cloud, home):
    conn = cloud["demo"]
    started = time.time()
    proc = playbook("create", home, "os-vm", "-e", "carina_provider=openstack", "-e", "carina_cloud=devstack",
                    "-e", "carina_masters=3", "-e", "carina_nodes=2")
    assert proc.returncode == 0, proc.stdout[-5000:]
    print(f"create on Nova took {time.time() - started:.1f}s")

    # The plain docker CLI through the Octavia VIP, with the bundle and nothing else.
    info = json.loads(docker_when_ready(home, "os-vm", "info", "--format", "{{json .Swarm}}"))
    assert (info["LocalNodeState"], info["Managers"], info["Nodes"]) == ("active", 3, 5)
    record = json.loads((home / "clusters" / "os-vm" / "cluster.json").read_text())
    endpoint = record["endpoint"]
    lb = conn.load_balancer.find_load_balancer("carina-os-vm")
    assert endpoint == lb.vip_address
    assert (record["schema_version"], record["coe"], record["provider"]) == (1, "swarm", "openstack")
    assert record["api_url"] == f"tcp://{lb.vip_address}:2376"
    assert record["master_hosts"] == ["os-vm-manager-1", "os-vm-manager-2", "os-vm-manager-3"]
    assert record["worker_hosts"] == ["os-vm-worker-1", "os-vm-worker-2"]
    # Servers carry the generic role (master); their names keep Swarm's word (manager).
    masters = {s.name: s for s in conn.compute.servers() if (s.metadata or {}).get("carina_role") == "master"}
    assert sorted(masters) == ["os-vm-manager-1", "os-vm-manager-2", "os-vm-manager-3"]
    assert len(lb_members(conn, "os-vm")) == 3
    groups = [g for g in conn.compute.server_groups() if g.name == "carina-os-vm"]
    assert len(groups) == 1 and groups[0].policy == "soft-anti-affinity"
    assert len(groups[0].member_ids) == 5

    again = playbook("create", home, "os-vm")
    assert again.returncode == 0, again.stdout[-3000:]
    assert all(v == 0 for v in changed_counts(again.stdout).values()), changed_counts(again.stdout)

    # The inventory plugin finds the cluster from the cloud's records alone.
    inventory = home / "os.carina.yml"
    inventory.write_text("plugin: rax.carina.openstack_clusters\ncloud: devstack\nclusters: [os-vm]\n"
                         "baremetal: false\n")
    listing = subprocess.run(["ansible-inventory", "-i", str(inventory), "--list"], cwd=ROOT,
                             env=env() | {"OS_CLIENT_CONFIG_FILE": str(CLOUDS_YAML)}, capture_output=True, text=True,
                             timeout=120, check=True)
    groups = json.loads(listing.stdout)
    assert sorted(groups["os_vm_masters"]["hosts"]) == ["os-vm-manager-1", "os-vm-manager-2", "os-vm-manager-3"]
    assert sorted(groups["os_vm_workers"]["hosts"]) == ["os-vm-worker-1", "os-vm-worker-2"]
    # Values from inventory plugins are untrusted: ansible-inventory marks them as such in its JSON.
    hostvars = {k: v.get("__ansible_unsafe", v) if isinstance(v, dict) else v
                for k, v in groups["_meta"]["hostvars"]["os-vm-worker-1"].items()}
    assert hostvars["carina_role"] == "worker" and hostvars["carina_address"].startswith("198.18.")

    lose_a_manager_then_repair(conn, home)

    # Scaling changes the servers and the load balancer's members.
    proc = playbook("scale", home, "os-vm", "-e", "carina_masters=1", "-e", "carina_nodes=1")
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert owned(conn, "os-vm")["servers"] == ["os-vm-manager-1", "os-vm-worker-1"]
    assert len(lb_members(conn, "os-vm")) == 1
    # The host keys of the removed servers are forgotten with them: one file per server left (NAME-ID).
    servers = {s.name: s.id for s in conn.compute.servers() if s.name in ("os-vm-manager-1", "os-vm-worker-1")}
    host_keys = sorted(p.name for p in (home / "clusters" / "os-vm" / "ssh" / "known_hosts.d").iterdir())
    assert host_keys == sorted(f"{name}-{server_id}" for name, server_id in servers.items()), host_keys
    nodes = docker_when_ready(home, "os-vm", "node", "ls", "--format", "{{.Hostname}} {{.Status}}").splitlines()
    assert sorted(nodes) == ["os-vm-manager-1 Ready", "os-vm-worker-1 Ready"]

    proc = playbook("delete", home, "os-vm")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert owned(conn, "os-vm") == {k: [] for k in owned(conn, "os-vm")}
    assert not (home / "clusters" / "os-vm").exists()


def swarm_nodes(home: Path, cluster: str) -> list[dict]:
    return [json.loads(line) for line in docker_when_ready(home, cluster, "node", "ls", "--format",
                                                           "{{json .}}").splitlines()]


def lose_a_manager_then_repair(conn, home: Path) -> None:
    """A manager's server deleted through Nova (its disk goes with it): the swarm sees it Down; a rerun of the
    create playbook makes a new server of that name, takes the dead entry out of the swarm, joins the new one
    as a manager and gives the load balancer its address; the host key of the lost server is forgotten."""
    lost = conn.compute.find_server("os-vm-manager-2")
    before = {n["Hostname"]: n["ID"] for n in swarm_nodes(home, "os-vm")}
    conn.compute.delete_server(lost)
    conn.compute.wait_for_delete(lost, wait=120)
    wait_until(lambda: any(n["Hostname"] == "os-vm-manager-2" and n["Status"] == "Down"
                           for n in swarm_nodes(home, "os-vm")), 90, "the lost manager to be Down")

    proc = playbook("create", home, "os-vm")
    assert proc.returncode == 0, proc.stdout[-5000:]
    nodes = swarm_nodes(home, "os-vm")
    assert sorted(n["Hostname"] for n in nodes) == sorted(before), nodes
    assert all(n["Status"] == "Ready" for n in nodes), nodes
    managers = sorted(n["Hostname"] for n in nodes if n["ManagerStatus"] in ("Leader", "Reachable"))
    assert managers == ["os-vm-manager-1", "os-vm-manager-2", "os-vm-manager-3"], nodes
    after = {n["Hostname"]: n["ID"] for n in nodes}
    assert after["os-vm-manager-2"] != before["os-vm-manager-2"], "the lost manager came back as a new node"
    assert all(after[h] == before[h] for h in before if h != "os-vm-manager-2"), (before, after)
    new = conn.compute.find_server("os-vm-manager-2")
    assert new.id != lost.id
    masters = [s for s in conn.compute.servers() if (s.metadata or {}).get("carina_role") == "master"]
    assert lb_members(conn, "os-vm") == sorted(server_address(s) for s in masters)
    host_keys = {p.name for p in (home / "clusters" / "os-vm" / "ssh" / "known_hosts.d").iterdir()}
    assert f"os-vm-manager-2-{new.id}" in host_keys and f"os-vm-manager-2-{lost.id}" not in host_keys, host_keys


def fail_a_node_then_repair(admin, home: Path, spec: list[str]) -> None:
    """A worker's bare metal node fails (put in maintenance, as Ironic does when it loses a node's power, and its
    host powered off): a rerun of the create playbook deploys the worker on a free node under the same name and
    takes the failed node out of the cluster, leaving its state to the operator; the swarm ends whole."""
    failed = next(n for n in admin.baremetal.nodes(details=True)
                  if (n.extra or {}).get("carina_name") == "os-mixed-worker-1")
    before = {n["Hostname"]: n["ID"] for n in swarm_nodes(home, "os-mixed")}
    admin.baremetal.set_node_maintenance(failed, reason="power failure (test)")
    subprocess.run(["docker", "stop", "--time", "5", f"testcloud-bm-{failed.id[:8]}"], capture_output=True,
                   timeout=60, check=True)
    wait_until(lambda: any(n["Hostname"] == "os-mixed-worker-1" and n["Status"] == "Down"
                           for n in swarm_nodes(home, "os-mixed")), 90, "the failed worker to be Down")
    try:
        proc = playbook("create", home, "os-mixed", *spec)
        assert proc.returncode == 0, proc.stdout[-5000:]
        assert "power failure (test)" in proc.stdout + proc.stderr, "no warning names the failed node"
        nodes = swarm_nodes(home, "os-mixed")
        assert sorted(n["Hostname"] for n in nodes) == sorted(before), nodes
        assert all(n["Status"] == "Ready" for n in nodes), nodes
        after = {n["Hostname"]: n["ID"] for n in nodes}
        assert after["os-mixed-worker-1"] != before["os-mixed-worker-1"]
        assert after["os-mixed-worker-2"] == before["os-mixed-worker-2"]
        left = admin.baremetal.get_node(failed.id)
        assert not (left.extra or {}).get("carina_cluster") and left.provision_state == "active", left
        assert not list(admin.baremetal.list_node_vifs(left))
        worker = next(n for n in admin.baremetal.nodes(details=True)
                      if (n.extra or {}).get("carina_name") == "os-mixed-worker-1")
        assert worker.id != failed.id and worker.provision_state == "active"
    finally:
        # The operator's part: the hardware mended, the node cleaned and given back.
        admin.baremetal.unset_node_maintenance(failed)
        if (admin.baremetal.get_node(failed.id).extra or {}).get("carina_cluster") is None:
            admin.baremetal.set_node_provision_state(failed, "deleted", wait=True, timeout=180)


def server_address(server) -> str:
    """The server's fixed address on the cluster's network."""
    return next(a["addr"] for addrs in server.addresses.values() for a in addrs
                if a.get("OS-EXT-IPS:type", "fixed") == "fixed")


def server_certificate_from(network: str, address: str, port: int) -> bool:
    """Whether a TLS client in a new container on the Docker network gets the server's certificate."""
    probe = subprocess.run(["docker", "run", "--rm", "--network", network, "carina-host:bookworm", "timeout", "20",
                            "openssl", "s_client", "-connect", f"{address}:{port}"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60, check=False)
    return "BEGIN CERTIFICATE" in probe.stdout


def test_masters_on_nova_workers_on_ironic(cloud, home):
    admin, conn = cloud["admin"], cloud["demo"]
    public = admin.network.find_network("public")
    private_cidr = admin.network.find_subnet("private-subnet").cidr
    # The API only for this machine, which reaches floating IPs from the external network's gateway address
    # (the bridge the test cloud makes on first use); the cluster's own subnet is let in as well.
    me = admin.network.get_subnet(public.subnet_ids[0]).gateway_ip
    spec = ["-e", "carina_provider=openstack", "-e", "carina_cloud=devstack-admin", "-e", "carina_masters=1",
            "-e", "carina_nodes=2", "-e", "carina_server_type=bm", "-e", "carina_floating_ip_enabled=true",
            "-e", f"carina_api_cidrs={me}/32"]
    proc = playbook("create", home, "os-mixed", *spec)
    assert proc.returncode == 0, proc.stdout[-5000:]
    info = json.loads(docker_when_ready(home, "os-mixed", "info", "--format", "{{json .Swarm}}"))
    assert (info["Managers"], info["Nodes"]) == (1, 3)
    # The endpoint is the VIP's floating IP, on the external network.
    record = json.loads((home / "clusters" / "os-mixed" / "cluster.json").read_text())
    endpoint = record["endpoint"]
    lb = admin.load_balancer.find_load_balancer("carina-os-mixed")
    fips = [f.floating_ip_address for f in admin.network.ips(port_id=lb.vip_port_id)]
    assert fips == [endpoint] and endpoint.startswith("198.18.101.")
    assert record["api_url"] == f"tcp://{endpoint}:2376"

    # Who may reach the API: the listener and the masters' rule say this machine and the cluster's subnet ...
    listener = admin.load_balancer.get_listener(lb.listeners[0]["id"])
    assert sorted(listener.allowed_cidrs) == sorted([f"{me}/32", private_cidr])
    masters_group = admin.network.find_security_group("carina-os-mixed-master")
    api_rules = [r for r in admin.network.security_group_rules(security_group_id=masters_group.id)
                 if r.port_range_min == 2376]
    assert sorted(r.remote_ip_prefix for r in api_rules) == sorted([f"{me}/32", private_cidr])
    # ... and the load balancer turns away another address of the same network, which the master's own
    # floating IP (not behind the listener) still answers.
    master_fip = next(f.floating_ip_address for f in admin.network.ips()
                      if (f.description or "").startswith("carina os-mixed os-mixed-manager-1"))
    public_net = docker_network_of(public.id)
    assert server_certificate_from(public_net, master_fip, 2376), "the probe cannot reach a master at all"
    assert not server_certificate_from(public_net, endpoint, 2376), "the listener let another address in"
    fail_a_node_then_repair(admin, home, spec)
    used = [n for n in admin.baremetal.nodes(details=True) if (n.extra or {}).get("carina_cluster") == "os-mixed"]
    assert sorted(n.extra["carina_name"] for n in used) == ["os-mixed-worker-1", "os-mixed-worker-2"]
    assert all(n.provision_state == "active" for n in used)

    # Delete finds everything from the cloud's records even when the local state is gone, once it is given
    # the cluster's id (which the refusal names): with no id, nothing that carries one is deleted.
    cluster_id = (home / "clusters" / "os-mixed" / "id").read_text().strip()
    shutil.rmtree(home / "clusters" / "os-mixed")
    proc = playbook("delete", home, "os-mixed", "-e", "carina_provider=openstack", "-e", "carina_cloud=devstack-admin")
    said = " ".join((proc.stdout + proc.stderr).split())  # the messages, unwrapped
    assert proc.returncode != 0 and f"-e carina_cluster_id={cluster_id}" in said, proc.stdout[-3000:]
    assert all(admin.baremetal.get_node(n.id).provision_state == "active" for n in used)
    proc = playbook("delete", home, "os-mixed", "-e", "carina_provider=openstack", "-e", "carina_cloud=devstack-admin",
                    "-e", f"carina_cluster_id={cluster_id}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for used_node in used:
        node = admin.baremetal.get_node(used_node.id)
        assert node.provision_state == "available", node
        assert not (node.extra or {}).get("carina_cluster")
    assert owned(conn, "os-mixed") == {k: [] for k in owned(conn, "os-mixed")}


KUBECTL = Path(os.environ.get("CARINA_CACHE", ROOT / ".cache")) / "kubernetes" / "v1.20.2" / "bin" / "kubectl"


def test_kubernetes_on_nova_behind_octavia(cloud, home):
    """Three masters and a node on Nova, the API behind the Octavia VIP, kubectl with the bundle only."""
    conn = cloud["demo"]
    started = time.time()
    proc = playbook("create", home, "os-kube", "-e", "carina_provider=openstack", "-e", "carina_cloud=devstack",
                    "-e", "carina_coe=kubernetes", "-e", "carina_masters=3", "-e", "carina_nodes=1",
                    "-e", "carina_ssh_cidr=198.18.0.0/15", "-e", "carina_api_cidrs=198.19.254.0/24,198.19.253.0/24")
    assert proc.returncode == 0, proc.stdout[-6000:]
    print(f"Kubernetes create on Nova took {time.time() - started:.1f}s")
    bundle = home / "clusters" / "os-kube"
    record = json.loads((bundle / "cluster.json").read_text())
    lb = conn.load_balancer.find_load_balancer("carina-os-kube")
    assert record["api_url"] == f"https://{lb.vip_address}:6443"
    listener = conn.load_balancer.get_listener(lb.listeners[0]["id"])
    assert listener.protocol_port == 6443
    pool = conn.load_balancer.get_pool(listener.default_pool_id)
    assert pool.health_monitor_id, "the API servers' pool has no health monitor"
    assert len(lb_members(conn, "os-kube")) == 3

    def kubectl(*args: str, check: bool = True) -> str:
        return subprocess.run([str(KUBECTL), *args], env={"KUBECONFIG": str(bundle / "kubeconfig"), "HOME": str(home)},
                              capture_output=True, text=True, timeout=60, check=check).stdout

    deadline = time.time() + 60
    while True:  # the test cloud's HAProxy follows Octavia's members a moment later
        try:
            listing = kubectl("get", "nodes", "-o", "json")
            break
        except subprocess.CalledProcessError:
            if time.time() > deadline:
                raise
            time.sleep(1)
    ready = {item["metadata"]["name"]: next(c["status"] for c in item["status"]["conditions"] if c["type"] == "Ready")
             for item in json.loads(listing)["items"]}
    assert ready == {"os-kube-master-1": "True", "os-kube-master-2": "True", "os-kube-master-3": "True",
                     "os-kube-node-1": "True"}
    kubectl("run", "smoke", "--image=localhost/carina/shell:1.0", "--image-pull-policy=Never", "--restart=Never",
            "--", "sh", "-c", "echo smoke-ok")
    deadline = time.time() + 90
    while "smoke-ok" not in kubectl("logs", "smoke", check=False):
        assert time.time() < deadline, kubectl("get", "pod", "smoke", "-o", "wide")
        time.sleep(1)

    # A master's server stopped: the API keeps answering through the VIP, and the master comes back.
    stop_a_master_and_start_it_again(conn, kubectl, "os-kube-master-1")

    # The security groups and the listener open what the contract says, to whom it says: every node is
    # Ready above, so the kubelets reach the API through the load balancer from the cluster's subnet.
    assert_who_may_connect(conn, "os-kube", listener.id, api=["198.19.254.0/24", "198.19.253.0/24"],
                           ssh="198.18.0.0/15")
    # Narrower client ranges on a second run: the wider SSH rule, the API rule and the listener's range go.
    proc = playbook("create", home, "os-kube", "-e", "carina_provider=openstack", "-e", "carina_cloud=devstack",
                    "-e", "carina_coe=kubernetes", "-e", "carina_masters=3", "-e", "carina_nodes=1",
                    "-e", "carina_ssh_cidr=198.18.0.0/16", "-e", "carina_api_cidrs=198.19.254.0/24")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert_who_may_connect(conn, "os-kube", listener.id, api=["198.19.254.0/24"], ssh="198.18.0.0/16")
    assert kubectl("get", "nodes", "-o", "name").count("node/") == 4

    proc = playbook("delete", home, "os-kube")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert owned(conn, "os-kube") == {k: [] for k in owned(conn, "os-kube")}


def assert_who_may_connect(conn, cluster: str, listener_id: str, api: list[str], ssh: str) -> None:
    """The API (6443) on the masters' rule and the listener: the client ranges `api` and the cluster's subnet;
    SSH from `ssh` alone; etcd and the kubelets only from the cluster's own hosts (the common group)."""
    rules = [r for g in conn.network.security_groups() if g.name.startswith(f"carina-{cluster}")
             for r in conn.network.security_group_rules(security_group_id=g.id)]
    wanted = sorted([*api, conn.network.find_subnet("private-subnet").cidr])
    assert sorted(r.remote_ip_prefix for r in rules if r.port_range_min == 6443) == wanted
    assert sorted(conn.load_balancer.get_listener(listener_id).allowed_cidrs) == wanted
    assert [r.remote_ip_prefix for r in rules if r.port_range_min == 22] == [ssh]
    for port in (2379, 2380, 10250):
        inside = [r for r in rules if r.port_range_min == port]
        assert inside and all(r.remote_group_id and not r.remote_ip_prefix for r in inside), (port, inside)


def stop_a_master_and_start_it_again(conn, kubectl, name: str) -> None:
    """Every kubectl call through the VIP answers while the master's server is stopped (Octavia passes over
    the member that does not accept connections, then its health monitor takes it out); the node is seen
    NotReady, then Ready again once the server is started."""
    def ready() -> str:
        return kubectl("get", "node", name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                       check=False).strip()

    victim = conn.compute.find_server(name)
    conn.compute.stop_server(victim)
    try:
        conn.compute.wait_for_server(victim, status="SHUTOFF", wait=120)
        failed = []
        for _ in range(20):
            try:
                kubectl("get", "nodes", "-o", "name")
            except subprocess.CalledProcessError as err:
                failed.append(err.stderr.strip())
            time.sleep(0.5)
        assert not failed, f"{len(failed)} of 20 kubectl calls failed with {name} stopped: {failed}"
        wait_until(lambda: ready() != "True", 90, f"{name} to be seen NotReady")
    finally:
        conn.compute.start_server(victim)
    conn.compute.wait_for_server(victim, status="ACTIVE", wait=120)
    wait_until(lambda: ready() == "True", 180, f"{name} Ready again")


def test_wrong_credentials_fail_clearly(cloud):
    rc, res = run_module("rax.carina.nova_hosts", {
        "auth": {"auth_url": "http://127.0.0.1:5000/v3", "username": "demo", "password": "wrong",
                 "project_name": "demo", "user_domain_name": "Default", "project_domain_name": "Default"},
        "cluster": "os-bad", "role": "worker", "count": 1})
    assert rc != 0
    assert res["msg"].startswith("cannot authenticate to the cloud")
    assert "401" in res["msg"] or "authentication" in res["msg"].lower()


def test_missing_capacity_fails_before_anything(cloud):
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(CLOUDS_YAML)
    rc, res = run_module("rax.carina.ironic_hosts", {
        "cloud": "devstack-admin", "cluster": "os-cap", "role": "worker", "count": BAREMETAL_NODES + 2,
        "image": "carina-host", "network": "private", "public_key": "ssh-ed25519 AAAA x"})
    assert rc != 0
    assert "not enough bare metal nodes" in res["msg"] and "no node was touched" in res["msg"]
    rc, res = run_module("rax.carina.nova_hosts", {
        "cloud": "devstack", "cluster": "os-cap", "role": "worker", "count": 25, "flavor": "m1.small",
        "image": "carina-host", "network": "private", "public_key": "ssh-ed25519 AAAA x"})
    assert rc != 0
    assert "Quota exceeded" in res["msg"], res["msg"]
    assert owned(cloud["demo"], "os-cap")["servers"] == []
    rc, res = run_module("rax.carina.nova_hosts", {"cloud": "devstack", "cluster": "os-cap", "state": "absent"})
    assert rc == 0


def test_bad_flavor_and_error_servers_leave_nothing(cloud):
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(CLOUDS_YAML)
    args = {"cloud": "devstack", "cluster": "os-bad", "role": "worker", "count": 2, "flavor": "m1.small",
            "image": "carina-host", "network": "private", "public_key": "ssh-ed25519 AAAA x"}
    rc, res = run_module("rax.carina.nova_hosts", args | {"flavor": "m1.huge"})
    assert rc != 0 and res["msg"].startswith("flavor m1.huge not found; the cloud has: ")
    rc, res = run_module("rax.carina.nova_hosts", args | {"network": "nowhere"})
    assert rc != 0 and res["msg"] == "network nowhere not found; choose one of the project's networks"
    rc, res = run_module("rax.carina.nova_hosts", args | {"image": "carina-broken"})
    assert rc != 0 and "went to ERROR and were deleted again" in res["msg"], res["msg"]
    assert "os-bad-worker-1 (" in res["msg"]
    assert owned(cloud["demo"], "os-bad")["servers"] == []
    rc, res = run_module("rax.carina.nova_hosts", {"cloud": "devstack", "cluster": "os-bad", "state": "absent"})
    assert rc == 0
    assert owned(cloud["demo"], "os-bad") == {k: [] for k in owned(cloud["demo"], "os-bad")}


def test_awx_jobs_with_no_state_go_on_from_the_state_kept_in_barbican(cloud, tmp_path):
    """Create, scale and delete as three AWX jobs on the test cloud (the OpenStack credential as a clouds.yaml),
    each job's state folder empty at its start: the cluster's state lives in Barbican, in the user's project."""
    conn = cloud["demo"]
    name, homes = "os-awx", {step: tmp_path / f"home-{step}" for step in ("create", "scale", "delete")}
    on_cloud = {"carina_provider": "openstack", "carina_cloud": "devstack"}

    def stored():
        return sorted((c.name, len(c.secret_refs)) for c in conn.key_manager.containers()
                      if (c.name or "").startswith(f"carina-state-{name}-"))

    try:
        created = job(tmp_path, "create", answers("create", {"carina_name": name, **on_cloud,
                                                             "carina_home": str(homes["create"])}),
                      OS_CLIENT_CONFIG_FILE=str(CLOUDS_YAML))
        assert created.returncode == 0, created.stdout[-5000:] + created.stderr[-2000:]
        made = homes["create"] / "clusters" / name
        made_id = (made / "id").read_text().strip()
        assert [n for n, _ in stored()] == [f"carina-state-{name}-{made_id}"]

        scaled = job(tmp_path, "scale", answers("scale", {"carina_name": name, **on_cloud, "carina_nodes": 2,
                                                          "carina_home": str(homes["scale"])}),
                     OS_CLIENT_CONFIG_FILE=str(CLOUDS_YAML))
        assert scaled.returncode == 0, scaled.stdout[-5000:] + scaled.stderr[-2000:]
        kept = homes["scale"] / "clusters" / name
        assert (kept / "pki" / "ca-key.pem").read_bytes() == (made / "pki" / "ca-key.pem").read_bytes()
        assert (kept / "ssh" / "id_ed25519").read_bytes() == (made / "ssh" / "id_ed25519").read_bytes()
        assert oct((kept / "ssh" / "id_ed25519").stat().st_mode & 0o777) == "0o600"
        # The cluster has the new node, and the first job's bundle (the same CA) still reaches it.
        info = json.loads(docker_when_ready(homes["create"], name, "info", "--format", "{{json .Swarm}}"))
        assert (info["Managers"], info["Nodes"]) == (1, 3)
        assert sorted(s.name for s in conn.compute.servers() if s.name.startswith(f"{name}-")) == [
            f"{name}-manager-1", f"{name}-worker-1", f"{name}-worker-2"]
        # One copy is kept: the scale's replaced the create's.
        assert len(stored()) == 1
    finally:
        deleted = job(tmp_path, "delete", answers("delete", {"carina_name": name, **on_cloud,
                                                             "carina_home": str(homes["delete"])}),
                      OS_CLIENT_CONFIG_FILE=str(CLOUDS_YAML))
    assert deleted.returncode == 0, deleted.stdout[-5000:] + deleted.stderr[-2000:]
    assert stored() == []
    assert [s.name for s in conn.compute.servers() if s.name.startswith(f"{name}-")] == []
    assert [lb.name for lb in conn.load_balancer.load_balancers() if name in (lb.name or "")] == []
