"""A real OpenStack Magnum 23 (magnum-api and magnum-conductor, RabbitMQ, MariaDB: testcloud/magnum.py) makes
Kubernetes clusters on the test cloud through rax.carina's driver (drivers/magnum). Everything is done as the demo
user with the openstack CLI, as a Magnum user would: template, cluster, `coe cluster config`, kubectl through the
kubeconfig Magnum hands out, resize, delete; a create that cannot succeed says why in `coe cluster show`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT

openstack = pytest.importorskip("openstack")

pytestmark = pytest.mark.integration

CLOUD_DIR = ROOT / ".cache" / "testcloud"
MAGNUM_BIN = CLOUD_DIR / "magnum-venv" / "bin"
KUBECTL = ROOT / ".cache" / "kubernetes" / "v1.20.2" / "bin" / "kubectl"
# Clusters of this module, by their Magnum names (carina's names are the same when no other cluster has them).
CLUSTERS = ("mg-kube", "mg-tiny", "mg-gone", "mg-bm")


def magnum_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", str(ROOT / "testcloud" / "magnum.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def magnum(test_cloud):
    """Magnum beside the test cloud for this module; stopped afterwards unless it was up before."""
    was_up = magnum_cmd("status").returncode == 0
    proc = magnum_cmd("up")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    yield json.loads((CLOUD_DIR / "magnum" / "magnum.json").read_text())
    if not was_up:
        proc = magnum_cmd("down")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def cli(magnum, tmp_path_factory):
    """`openstack ...` as the demo user (clouds.yaml cloud devstack), its JSON output parsed."""
    home = tmp_path_factory.mktemp("magnum-user")
    environ = {"PATH": f"{MAGNUM_BIN}:{os.environ['PATH']}", "HOME": str(home), "SHELL": "/bin/bash",
               "OS_CLIENT_CONFIG_FILE": str(CLOUD_DIR / "clouds.yaml"), "OS_CLOUD": "devstack"}

    def run(*args: str, check: bool = True, json_out: bool = True):
        argv = [str(MAGNUM_BIN / "openstack"), *args, *(["-f", "json"] if json_out else [])]
        proc = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=120, check=False)
        if check:
            assert proc.returncode == 0, f"{' '.join(args)}: {proc.stdout[-2000:]} {proc.stderr[-3000:]}"
        if not json_out or proc.returncode:
            return proc
        # magnumclient prints "Request to create ... accepted" before the JSON of a template it made.
        text = proc.stdout[min((i for i in (proc.stdout.find("{"), proc.stdout.find("[")) if i >= 0), default=0):]
        return json.loads(text) if text.strip() else None

    run.home = home
    yield run
    swept = {}
    for name in CLUSTERS:  # whatever a failed test left
        if run("coe", "cluster", "show", name, check=False, json_out=False).returncode == 0:
            run("coe", "cluster", "delete", name, check=False, json_out=False)
            wait_gone(run, name)
        swept.update(sweep(name))
    # The demo project's quotas are the next modules' too: what a failed delete left is removed here, and said.
    assert not swept, f"objects the clusters left in the demo project (now removed): {swept}"


def sweep(name: str) -> dict[str, list[str]]:
    """Remove, as the demo user, what the cloud still holds of cluster `name` (after a failure); say what it was."""
    conn = demo_connection()
    left: dict[str, list[str]] = {}
    try:
        for lb in [lb for lb in conn.load_balancer.load_balancers() if lb.name == f"carina-{name}"]:
            left.setdefault("load_balancers", []).append(lb.name)
            conn.load_balancer.delete_load_balancer(lb, cascade=True)
        servers = [s for s in conn.compute.servers()
                   if s.name.startswith(f"{name}-") and (s.metadata or {}).get("carina_cluster_id")]
        for server in servers:
            left.setdefault("servers", []).append(server.name)
            conn.compute.delete_server(server)
        for server in servers:
            conn.compute.wait_for_delete(server, wait=120)
        for ip in [ip for ip in conn.network.ips() if (ip.description or "") == f"carina cluster {name}"
                   or (ip.description or "").startswith(f"carina cluster {name} ")]:
            left.setdefault("floating_ips", []).append(ip.floating_ip_address)
            conn.network.delete_ip(ip)
        for port in [p for p in conn.network.ports() if (p.name or "").startswith(f"{name}-")]:
            left.setdefault("ports", []).append(port.name)
            conn.network.delete_port(port)
        deadline = time.time() + 60  # a cascade delete of the load balancer frees its groups' ports first
        for group in [g for g in conn.network.security_groups() if g.name in (
                f"carina-{name}", f"carina-{name}-master", f"carina-{name}-worker")]:
            left.setdefault("security_groups", []).append(group.name)
            while True:
                try:
                    conn.network.delete_security_group(group)
                    break
                except openstack.exceptions.ConflictException:
                    assert time.time() < deadline, f"security group {group.name} still in use"
                    time.sleep(2)
        for keypair in [k for k in conn.compute.keypairs() if k.name.startswith(f"carina-{name}")]:
            left.setdefault("keypairs", []).append(keypair.name)
            conn.compute.delete_keypair(keypair)
    finally:
        conn.close()
    return left


def demo_connection():
    """openstacksdk as the demo user (clouds.yaml cloud devstack)."""
    config = openstack.config.OpenStackConfig(config_files=[str(CLOUD_DIR / "clouds.yaml")])
    return openstack.connection.Connection(config=config.get_one(cloud="devstack"))


def magnum_status(conn, name: str) -> dict | None:
    """{status, status_reason} of a cluster as the demo user sees it, or None once it is gone: read in-process with
    openstacksdk, so that waiting does not start the openstack CLI every few seconds (each costs seconds of CPU)."""
    found = conn.container_infrastructure_management.find_cluster(name, ignore_missing=True)
    return None if found is None else {"status": found.status, "status_reason": found.status_reason}


def wait_status(cli, name: str, want: str, timeout: float = 600) -> dict:
    """Waits for `want`, then returns the cluster as `openstack coe cluster show` prints it."""
    deadline = time.time() + timeout
    conn = demo_connection()
    try:
        while True:
            seen = magnum_status(conn, name)
            assert seen is not None, f"{name} is gone while waiting for {want}"
            if seen["status"] == want:
                break
            assert not seen["status"].endswith(("_COMPLETE", "_FAILED")), seen
            assert time.time() < deadline, f"{name} still {seen['status']} after {timeout:.0f} s: {seen}"
            time.sleep(2)
    finally:
        conn.close()
    shown = cli("coe", "cluster", "show", name)
    assert shown["status"] == want or want.endswith("_IN_PROGRESS"), shown  # a run moves on; an end stays
    return shown


def wait_gone(cli, name: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    conn = demo_connection()
    try:
        while magnum_status(conn, name) is not None:
            assert time.time() < deadline, cli("coe", "cluster", "show", name)
            time.sleep(2)
    finally:
        conn.close()
    assert cli("coe", "cluster", "show", name, check=False, json_out=False).returncode != 0, f"{name} is still shown"


def traces(conn, name: str, cluster_id: str) -> dict[str, list[str]]:
    """What the cloud holds of a cluster in the demo project (by carina's name and id)."""
    return {
        "servers": sorted(s.name for s in conn.compute.servers()
                          if (s.metadata or {}).get("carina_cluster_id") == cluster_id),
        "load_balancers": sorted(lb.name for lb in conn.load_balancer.load_balancers() if name in (lb.name or "")),
        "security_groups": sorted(g.name for g in conn.network.security_groups() if name in (g.name or "")),
        "ports": sorted(p.name for p in conn.network.ports() if (p.name or "").startswith(name + "-")),
        "floating_ips": sorted(f.floating_ip_address for f in conn.network.ips()
                               if cluster_id in (f.description or "")),
        "keypairs": sorted(k.name for k in conn.compute.keypairs() if name in k.name),
    }


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> str:
    return subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60, check=check).stdout


def nodes_ready(kubeconfig: Path, count: int, timeout: float = 120) -> dict[str, str]:
    deadline = time.time() + timeout
    while True:
        proc = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode == 0:
            ready = {item["metadata"]["name"]: next(c["status"] for c in item["status"]["conditions"]
                                                   if c["type"] == "Ready")
                     for item in json.loads(proc.stdout)["items"]}
            if len(ready) == count and set(ready.values()) == {"True"}:
                return ready
        assert time.time() < deadline, proc.stdout[-2000:] + proc.stderr[-2000:]
        time.sleep(2)


def wait_healthy(cli, name: str, timeout: float = 60) -> None:
    """Magnum's health poll (carina's probe: /readyz and the nodes' conditions) says HEALTHY."""
    deadline = time.time() + timeout
    while (shown := cli("coe", "cluster", "show", name))["health_status"] != "HEALTHY":
        assert time.time() < deadline, shown
        time.sleep(3)


def ssh_hostname(key: Path, address: str) -> str:
    ssh = subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                          "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", f"root@{address}",
                          "cat", "/etc/hostname"], capture_output=True, text=True, timeout=60, check=False)
    assert ssh.returncode == 0, ssh.stderr
    return ssh.stdout.strip()


def test_magnum_makes_resizes_and_deletes_a_kubernetes_cluster_through_carina(cli, magnum, tmp_path):
    config = openstack.config.OpenStackConfig(config_files=[str(CLOUD_DIR / "clouds.yaml")])
    demo = openstack.connection.Connection(config=config.get_one(cloud="devstack"))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cli("keypair", "create", "--public-key", f"{key}.pub", "mg-key")
    try:
        template = cli("coe", "cluster", "template", "create", "mg-k8s", "--coe", "kubernetes",
                       "--image", "carina-magnum-kube", "--external-network", "public", "--fixed-network", "private",
                       "--fixed-subnet", "private-subnet", "--flavor", "m1.small", "--master-flavor", "m1.small",
                       "--master-lb-enabled", "--floating-ip-disabled", "--network-driver", "flannel",
                       "--keypair", "mg-key", "--labels", "kube_tag=v1.20.2,container_runtime=containerd")
        assert template["server_type"] == "vm" and template["cluster_distro"] == "debian"

        started = time.time()
        cli("coe", "cluster", "create", "mg-kube", "--cluster-template", "mg-k8s", "--master-count", "1",
            "--node-count", "1", json_out=False)
        # magnum-conductor dies (SIGKILL) while the create runs and is started again: the run goes on.
        wait_status(cli, "mg-kube", "CREATE_IN_PROGRESS", timeout=30)
        proc = magnum_cmd("restart-conductor")
        assert proc.returncode == 0, proc.stderr[-3000:]
        shown = wait_status(cli, "mg-kube", "CREATE_COMPLETE")
        print(f"Magnum create of 1 master + 1 node: {time.time() - started:.1f} s")
        cluster_id = shown["uuid"].replace("-", "")
        assert shown["api_address"].startswith("https://") and shown["api_address"].endswith(":6443"), shown
        assert shown["coe_version"] == "v1.20.2"
        assert len(shown["master_addresses"]) == 1 and len(shown["node_addresses"]) == 1, shown
        # The servers are the user's, in the user's project (made with the user's trust, not as the service).
        servers = [s for s in demo.compute.servers() if (s.metadata or {}).get("carina_cluster_id") == cluster_id]
        assert len(servers) == 2 and {s.project_id for s in servers} == {demo.current_project_id}

        wait_healthy(cli, "mg-kube")
        # The cluster's trust: from the demo user to Magnum's service user, in the demo project.
        admin_config = openstack.config.OpenStackConfig(config_files=[str(CLOUD_DIR / "clouds.yaml")])
        admin = openstack.connection.Connection(config=admin_config.get_one(cloud="devstack-admin"))
        trusts = [t for t in admin.identity.trusts() if t.trustor_user_id == demo.current_user_id]
        assert len(trusts) == 1 and trusts[0].trustee_user_id == magnum["user_id"], trusts
        assert trusts[0].project_id == demo.current_project_id and not trusts[0].is_impersonation

        # The user's key pair lets them into the hosts (next to carina's own key).
        assert ssh_hostname(key, shown["master_addresses"][0]) == "mg-kube-master-1"

        # The kubeconfig Magnum signs (its CA, a client certificate from `coe cluster config`) works with kubectl.
        config_dir = tmp_path / "config"
        config_dir.mkdir()
        cli("coe", "cluster", "config", "mg-kube", "--dir", str(config_dir), "--force", json_out=False)
        kubeconfig = config_dir / "config"
        assert nodes_ready(kubeconfig, 2).keys() == {"mg-kube-master-1", "mg-kube-node-1"}
        kubectl(kubeconfig, "run", "smoke", "--image=localhost/carina/shell:1.0", "--image-pull-policy=Never",
                "--restart=Never", "--", "sh", "-c", "echo smoke-ok")
        deadline = time.time() + 90
        while "smoke-ok" not in kubectl(kubeconfig, "logs", "smoke", check=False):
            assert time.time() < deadline, kubectl(kubeconfig, "get", "pod", "smoke", "-o", "wide", check=False)
            time.sleep(1)

        # Resize: a second worker joins.
        cli("coe", "cluster", "resize", "mg-kube", "2", json_out=False)
        shown = wait_status(cli, "mg-kube", "UPDATE_COMPLETE")
        assert shown["node_count"] == 2 and len(shown["node_addresses"]) == 2, shown
        assert nodes_ready(kubeconfig, 3).keys() == {"mg-kube-master-1", "mg-kube-node-1", "mg-kube-node-2"}

        # Delete: the cluster and everything it had in the cloud are gone.
        cli("coe", "cluster", "delete", "mg-kube", json_out=False)
        wait_gone(cli, "mg-kube")
        assert traces(demo, "mg-kube", cluster_id) == {kind: [] for kind in traces(demo, "mg-kube", cluster_id)}
        assert not [t for t in admin.identity.trusts() if t.trustor_user_id == demo.current_user_id]
    finally:
        cli("coe", "cluster", "template", "delete", "mg-k8s", check=False, json_out=False)
        cli("keypair", "delete", "mg-key", check=False, json_out=False)


def admin_connection():
    config = openstack.config.OpenStackConfig(config_files=[str(CLOUD_DIR / "clouds.yaml")])
    return openstack.connection.Connection(config=config.get_one(cloud="devstack-admin"))


def test_magnum_makes_a_kubernetes_cluster_on_bare_metal_the_project_owns(cli, magnum, tmp_path):
    """server_type bm: the hosts are Ironic nodes the operator gave the demo project (Ironic's node owner), deployed
    with the user's trust as for Nova servers; nodes of other projects stay out of reach."""
    admin, demo = admin_connection(), demo_connection()
    project = demo.current_project_id
    # The operator enrolls fake-hardware nodes: two for the demo project, one the project does not own.
    nodes = []
    try:
        for i, owner in ((1, project), (2, project), (3, None)):
            node = admin.baremetal.create_node(name=f"mg-bm-{i}", driver="fake-hardware", resource_class="baremetal",
                                               properties={"cpus": 2, "memory_mb": 2048, "local_gb": 20})
            nodes.append(node)
            if owner:
                admin.baremetal.update_node(node, owner=owner)
            admin.baremetal.set_node_provision_state(node, "manage", wait=True, timeout=120)
            admin.baremetal.set_node_provision_state(node, "provide", wait=True, timeout=120)
        cli("coe", "cluster", "template", "create", "mg-bm-t", "--coe", "kubernetes", "--server-type", "bm",
            "--image", "carina-magnum-kube", "--external-network", "public", "--fixed-network", "private",
            "--fixed-subnet", "private-subnet", "--flavor", "m1.small", "--master-flavor", "m1.small",
            "--master-lb-enabled", "--floating-ip-disabled", "--labels", "kube_tag=v1.20.2")
        try:
            started = time.time()
            cli("coe", "cluster", "create", "mg-bm", "--cluster-template", "mg-bm-t", "--master-count", "1",
                "--node-count", "1", json_out=False)
            shown = wait_status(cli, "mg-bm", "CREATE_COMPLETE")
            print(f"Magnum create of 1 master + 1 node on bare metal: {time.time() - started:.1f} s")
            cluster_id = shown["uuid"].replace("-", "")
            # The hosts are the project's two nodes, deployed and marked; the third node was never touched.
            used = {n.name: n for n in admin.baremetal.nodes(details=True)
                    if (n.extra or {}).get("carina_cluster_id") == cluster_id}
            assert sorted(used) == ["mg-bm-1", "mg-bm-2"], used
            assert all(n.provision_state == "active" and n.owner == project for n in used.values())
            assert sorted(n.extra["carina_name"] for n in used.values()) == ["mg-bm-master-1", "mg-bm-node-1"]
            other = admin.baremetal.get_node(nodes[2].id)
            assert other.provision_state == "available" and not (other.extra or {}).get("carina_cluster"), other
            assert not [s for s in demo.compute.servers() if (s.metadata or {}).get("carina_cluster_id") == cluster_id]

            config_dir = tmp_path / "config"
            config_dir.mkdir()
            cli("coe", "cluster", "config", "mg-bm", "--dir", str(config_dir), "--force", json_out=False)
            assert nodes_ready(config_dir / "config", 2).keys() == {"mg-bm-master-1", "mg-bm-node-1"}

            cli("coe", "cluster", "delete", "mg-bm", json_out=False)
            wait_gone(cli, "mg-bm")
            for node in nodes[:2]:
                back = admin.baremetal.get_node(node.id)
                assert back.provision_state == "available" and not (back.extra or {}).get("carina_cluster"), back
            assert traces(demo, "mg-bm", cluster_id) == {kind: [] for kind in traces(demo, "mg-bm", cluster_id)}
        finally:
            cli("coe", "cluster", "template", "delete", "mg-bm-t", check=False, json_out=False)
    finally:
        for node in nodes:  # the operator takes its nodes back (a failed test may have left one deployed)
            if admin.baremetal.get_node(node.id).provision_state == "active":
                admin.baremetal.set_node_provision_state(node, "deleted", wait=True, timeout=120)
            admin.baremetal.set_node_provision_state(node, "manage", wait=True, timeout=120)
            admin.baremetal.delete_node(node)


def test_a_create_that_fails_says_why_in_coe_cluster_show(cli, magnum):
    """A flavor smaller than the image's min_ram: Nova refuses the servers; Magnum shows the failing task."""
    cli("coe", "cluster", "template", "create", "mg-tiny-t", "--coe", "kubernetes", "--image", "carina-magnum-kube",
        "--external-network", "public", "--fixed-network", "private", "--fixed-subnet", "private-subnet",
        "--flavor", "m1.tiny", "--master-flavor", "m1.tiny", "--floating-ip-disabled", "--labels", "kube_tag=v1.20.2")
    try:
        cli("coe", "cluster", "create", "mg-tiny", "--cluster-template", "mg-tiny-t", "--node-count", "1",
            json_out=False)
        shown = wait_status(cli, "mg-tiny", "CREATE_FAILED", timeout=300)
        assert "too small" in shown["status_reason"], shown
        cli("coe", "cluster", "delete", "mg-tiny", json_out=False)
        wait_gone(cli, "mg-tiny")
    finally:
        cli("coe", "cluster", "template", "delete", "mg-tiny-t", check=False, json_out=False)


def test_a_cluster_deleted_while_it_is_made_is_stopped_then_deleted(cli, magnum):
    """Magnum lets users delete a cluster that is still CREATE_IN_PROGRESS: its run stops, then the delete runs."""
    cli("coe", "cluster", "template", "create", "mg-gone-t", "--coe", "kubernetes", "--image", "carina-magnum-kube",
        "--external-network", "public", "--fixed-network", "private", "--fixed-subnet", "private-subnet",
        "--flavor", "m1.small", "--master-flavor", "m1.small", "--floating-ip-disabled", "--labels", "kube_tag=v1.20.2")
    try:
        shown = cli("coe", "cluster", "create", "mg-gone", "--cluster-template", "mg-gone-t", "--node-count", "1",
                    json_out=False)
        wait_status(cli, "mg-gone", "CREATE_IN_PROGRESS", timeout=30)
        cluster_id = cli("coe", "cluster", "show", "mg-gone")["uuid"].replace("-", "")
        time.sleep(8)  # the hosts are being made
        cli("coe", "cluster", "delete", "mg-gone", json_out=False)
        wait_gone(cli, "mg-gone")
        config = openstack.config.OpenStackConfig(config_files=[str(CLOUD_DIR / "clouds.yaml")])
        demo = openstack.connection.Connection(config=config.get_one(cloud="devstack"))
        assert traces(demo, "mg-gone", cluster_id) == {kind: [] for kind in traces(demo, "mg-gone", cluster_id)}
        assert shown.returncode == 0
    finally:
        cli("coe", "cluster", "template", "delete", "mg-gone-t", check=False, json_out=False)
