"""The agent's data plane for Octavia and Ironic, against the emulator's Neutron and Glance and
stand-ins for the Octavia and Ironic APIs (the objects those APIs return, as plain data), so
that it runs without the real services.

    .venv/bin/pytest -q testcloud/agent          # with DOCKER_HOST set, as `make test` does

Same fixtures as testcloud/emulator/test_emulator.py (testcloud/conftest.py).
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import types
import uuid

import docker
import pytest
from openstack.baremetal import configdrive as sdk_configdrive

from testcloud.agent import configdrive, haproxy
from testcloud.agent.agent import Agent
from testcloud.agent.dataplane import DockerPlane
from testcloud.emulator.test_emulator import ssh

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning"),
]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBrnvZ3k0Yy0cA1w1bO8nqsE6pW8jzYc2m1Y3sX0kFh7 test@testcloud"


# -- stand-ins for the Octavia and Ironic APIs ---------------------------------------------------
class Reply:
    def __init__(self, body):
        self.body, self.status_code, self.headers = body, 200, {}

    def json(self):
        return self.body


class FakeOctavia:
    def __init__(self):
        self.lbs, self.listeners, self.pools, self.members, self.monitors = {}, {}, {}, {}, {}

    def get(self, path):
        parts = path.strip("/").split("/")[1:]  # lbaas/<kind>[/<id>[/members]]
        if parts == ["loadbalancers"]:
            return Reply({"loadbalancers": list(self.lbs.values())})
        kind, obj_id = parts[0], parts[1]
        if parts[-1] == "members":
            return Reply({"members": self.members[obj_id]})
        table = {"listeners": ("listener", self.listeners), "pools": ("pool", self.pools),
                 "healthmonitors": ("healthmonitor", self.monitors)}[kind]
        return Reply({table[0]: table[1][obj_id]})


class FakeIronic:
    def __init__(self):
        self._nodes = {}

    def nodes(self, details=True, provision_state=None):
        return [n for n in self._nodes.values() if provision_state in (None, n.provision_state)]

    def list_node_vifs(self, node):
        return list(node.vifs)


class Conn:
    """A connection whose network and image are the emulator's, Octavia and Ironic stand-ins."""

    def __init__(self, real):
        self.network, self.image = real.network, real.image
        self.load_balancer = FakeOctavia()
        self.baremetal = FakeIronic()

    def has_service(self, kind):
        return kind in ("load-balancer", "baremetal", "network", "image")


def banner(addr, port, timeout=10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((addr, port), timeout=2) as sock:
                sock.settimeout(3)
                data = sock.recv(8)
                if data:
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            return b""
        time.sleep(0.2)


ISO_TOOL = """#!{python}
# genisoimage for openstacksdk's configdrive.pack (-o OUT ... -V LABEL DIR), with pycdlib.
import os, sys
import pycdlib
args = sys.argv[1:]
out, label, src = args[args.index("-o") + 1], args[args.index("-V") + 1], args[-1]
iso = pycdlib.PyCdlib()
iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=label)
for top, dirs, files in os.walk(src):
    rel = os.path.relpath(top, src).replace(os.sep, "/")
    base = "" if rel == "." else "/" + rel
    for name in sorted(dirs):
        iso.add_directory(iso_path=(base + "/" + name).upper(), rr_name=name, joliet_path=base + "/" + name)
    for name in sorted(files):
        iso.add_file(os.path.join(top, name), iso_path=(base + "/" + name).upper() + ";1", rr_name=name,
                     joliet_path=base + "/" + name)
iso.write(out)
"""


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plane(emulator):
    """The agent's data plane in the emulator's instance: it sees and removes only the session's
    containers, never a test cloud's on the same engine (nor does that cloud's agent see ours)."""
    return DockerPlane(instance=emulator.instance)


@pytest.fixture
def iso_tool(testcloud_python, tmp_path, monkeypatch):
    """An ISO 9660 tool for openstacksdk's config drives: the machine's (genisoimage, mkisofs,
    xorrisofs), else one on pycdlib from the test cloud's venv (Ironic's dependency)."""
    if any(shutil.which(t) for t in ("genisoimage", "mkisofs", "xorrisofs")):
        return
    tool = tmp_path / "bin" / "genisoimage"
    tool.parent.mkdir()
    tool.write_text(ISO_TOOL.format(python=testcloud_python))
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", "%s%s%s" % (tool.parent, os.pathsep, os.environ["PATH"]))


@pytest.fixture(scope="module")
def members(project, keypair):
    servers = [project.create_server("agent-member-%d" % i, image="carina-host", flavor="m1.tiny", key_name="emu-key",
                                     network="private", auto_ip=False) for i in (1, 2)]  # both boot at once
    servers = [project.wait_for_server(server, auto_ip=False, timeout=180) for server in servers]
    yield servers
    for server in servers:
        project.delete_server(server.id, wait=True)


# -- tests --------------------------------------------------------------------------------------
def test_configdrive_keys(iso_tool):
    assert configdrive.public_keys({"meta_data": {"public_keys": {"k": KEY}}}) == [KEY]
    assert configdrive.public_keys({"user_data": "#cloud-config\nssh_authorized_keys:\n  - %s\n" % KEY}) == [KEY]
    assert configdrive.public_keys("******") == []
    assert configdrive.public_keys(None) == []
    packed = sdk_configdrive.build({"public_keys": {"k": KEY}, "uuid": "u"}, user_data="#cloud-config\n")
    assert configdrive.public_keys(packed) == [KEY]
    packed = sdk_configdrive.build({"uuid": "u"}, user_data="#cloud-config\nssh_authorized_keys:\n  - %s\n" % KEY)
    assert configdrive.public_keys(packed) == [KEY]


def test_haproxy_configuration_is_valid(dockerc):
    lb = {"id": "lb", "name": "x"}
    listeners = [
        {"id": "l1", "protocol": "HTTP", "protocol_port": 80, "default_pool_id": "p1", "connection_limit": 100,
         "allowed_cidrs": ["198.18.0.0/15"], "timeout_client_data": 1000},
        {"id": "l2", "protocol": "TCP", "protocol_port": 2376, "default_pool_id": "p2"},
        {"id": "l3", "protocol": "HTTPS", "protocol_port": 443, "default_pool_id": "p3"},
        {"id": "l4", "protocol": "UDP", "protocol_port": 53}]
    pools = {
        "p1": {"id": "p1", "protocol": "HTTP", "lb_algorithm": "LEAST_CONNECTIONS", "healthmonitor_id": "h1",
               "session_persistence": {"type": "HTTP_COOKIE"}},
        "p2": {"id": "p2", "protocol": "TCP", "lb_algorithm": "SOURCE_IP", "healthmonitor_id": "h2",
               "session_persistence": {"type": "SOURCE_IP"}},
        "p3": {"id": "p3", "protocol": "PROXY", "lb_algorithm": "ROUND_ROBIN", "healthmonitor_id": "h3"}}
    member = {"id": "m1", "address": "198.18.100.20", "protocol_port": 8080, "weight": 2,
              "monitor_port": 8081, "backup": False}
    members = {"p1": [member], "p2": [dict(member, id="m2", admin_state_up=False)], "p3": [dict(member, id="m3")]}
    monitors = {
        "h1": {"id": "h1", "type": "HTTP", "delay": 2, "timeout": 1, "max_retries": 2, "url_path": "/health",
               "expected_codes": "200-202,204", "http_version": 1.1, "domain_name": "example.test"},
        "h2": {"id": "h2", "type": "TLS-HELLO", "delay": 3, "timeout": 2, "max_retries": 3},
        "h3": {"id": "h3", "type": "HTTPS", "delay": 3, "timeout": 2, "max_retries": 3, "url_path": "/"}}
    text = haproxy.render(lb, listeners, pools, members, monitors)
    assert "rstatus ^(200|201|202|204)$" in text and "protocol UDP is not served" in text
    assert "check-ssl" in text.split("\nbackend p_p3_l3")[1]
    assert "check-ssl" not in text.split("\nbackend p_p2_l2")[1].split("\nbackend")[0]
    script = "echo %s | base64 -d > /tmp/h.cfg && haproxy -c -f /tmp/h.cfg" % base64.b64encode(text.encode()).decode()
    try:
        dockerc.containers.run("carina-host:bookworm-lb", [script], entrypoint=["sh", "-c"], network_mode="none",
                               remove=True, labels={"carina.testcloud": "1"})
    except docker.errors.ContainerError as exc:
        pytest.fail("haproxy -c rejected the configuration: %s\n%s" % (exc.stderr, text))


def test_load_balancer_container(project, members, keypair, plane, dockerc):
    conn = Conn(project)
    octavia = conn.load_balancer
    agent = Agent(conn, plane)
    private = project.network.find_network("private", ignore_missing=False)
    subnet = project.network.find_subnet("private-subnet", ignore_missing=False)
    vip = project.network.create_port(network_id=private.id, name="octavia-lb-vip")  # what Octavia would do
    lb_id = str(uuid.uuid4())
    name = "testcloud-lb-" + lb_id[:8]
    octavia.lbs[lb_id] = {"id": lb_id, "name": "lb1", "provisioning_status": "ACTIVE", "updated_at": "t1",
                          "vip_address": vip.fixed_ips[0]["ip_address"], "vip_port_id": vip.id,
                          "vip_subnet_id": subnet.id, "listeners": [{"id": "l1"}], "pools": [{"id": "p1"}]}
    octavia.listeners["l1"] = {"id": "l1", "protocol": "TCP", "protocol_port": 2222, "default_pool_id": "p1"}
    octavia.pools["p1"] = {"id": "p1", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "healthmonitor_id": "h1"}
    octavia.monitors["h1"] = {"id": "h1", "type": "TLS-HELLO", "delay": 1, "timeout": 1, "max_retries": 1}
    octavia.members["p1"] = [{"id": "m%d" % i, "address": s.private_v4, "protocol_port": 22, "subnet_id": subnet.id}
                             for i, s in enumerate(members)]
    vip_addr = vip.fixed_ips[0]["ip_address"]
    fip = None
    try:
        started = time.monotonic()
        agent.tick()
        assert banner(vip_addr, 2222).startswith(b"SSH-")
        print("LB container serving after %.1fs" % (time.monotonic() - started))
        container_id = dockerc.containers.get(name).id
        seen = {ssh_port(keypair, vip_addr, 2222) for _ in range(4)}
        assert seen == {"agent-member-1", "agent-member-2"}, seen

        # a change of the LB (a member removed) is a reload, not a new container
        octavia.members["p1"] = octavia.members["p1"][:1]
        octavia.lbs[lb_id]["updated_at"] = "t2"
        agent.tick()
        assert dockerc.containers.get(name).id == container_id
        time.sleep(0.5)
        assert {ssh_port(keypair, vip_addr, 2222) for _ in range(3)} == {"agent-member-1"}

        # a floating IP on the VIP port makes the listener reachable there too
        public = project.network.find_network("public", ignore_missing=False)
        fip = project.network.create_ip(floating_network_id=public.id, port_id=vip.id)
        agent.tick()
        assert banner(fip.floating_ip_address, 2222).startswith(b"SSH-")

        # an LB that is being updated keeps serving; a deleted one goes
        octavia.lbs[lb_id]["provisioning_status"] = "PENDING_UPDATE"
        agent.tick()
        assert dockerc.containers.get(name).status == "running"
        del octavia.lbs[lb_id]
        agent.tick()
        assert name not in {c.name for c in dockerc.containers.list(all=True)}
    finally:
        octavia.lbs.clear()
        agent.tick()
        if fip is not None:
            project.network.delete_ip(fip)
        project.network.delete_port(vip)


def ssh_port(key, addr, port) -> str:
    result = subprocess.run(
        ["ssh", "-p", str(port), "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@" + addr, "hostname"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_baremetal_node_container(project, keypair, plane, dockerc):
    conn = Conn(project)
    agent = Agent(conn, plane)
    private = project.network.find_network("private", ignore_missing=False)
    vif = project.network.create_port(network_id=private.id, name="bm-vif")
    node_id = str(uuid.uuid4())
    name = "testcloud-bm-" + node_id[:8]
    node = types.SimpleNamespace(
        id=node_id, name="bm-node-1", provision_state="active", updated_at="t1", instance_id=None, vifs=[vif.id],
        is_maintenance=False,
        instance_info={"image_source": "carina-host", "configdrive": {
            "meta_data": {"public_keys": {"k": keypair.with_suffix(".pub").read_text().strip()}}}})
    conn.baremetal._nodes[node_id] = node
    try:
        agent.tick()
        addr = vif.fixed_ips[0]["ip_address"]
        deadline = time.monotonic() + 60
        while not banner(addr, 22, timeout=2).startswith(b"SSH-"):
            assert time.monotonic() < deadline, "sshd of the node did not answer"
        result = ssh(keypair, addr, "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "bm-node-1"
        # Failed hardware: in maintenance and powered off, the node stays down; out of maintenance, it runs again.
        node.is_maintenance = True
        dockerc.containers.get(name).stop(timeout=5)
        agent.tick()
        assert dockerc.containers.get(name).status == "exited"
        node.is_maintenance = False
        agent.tick()
        assert dockerc.containers.get(name).status == "running"
        node.provision_state = "deleting"
        agent.tick()
        assert name not in {c.name for c in dockerc.containers.list(all=True)}
    finally:
        conn.baremetal._nodes.clear()
        agent.tick()
        project.network.delete_port(vif)


def test_instances_keep_to_their_own(dockerc):
    """Two test clouds on one engine (cloud.py's and a test session's): each sees and purges only its
    own containers and volumes; a bridge the other one still uses stays."""
    planes = [DockerPlane(instance="tests-" + uuid.uuid4().hex[:8]) for _ in range(2)]
    names = ["testcloud-inst-%s" % plane.instance for plane in planes]
    net_id, subnet = str(uuid.uuid4()), [("198.19.250.0/24", "198.19.250.1")]  # outside the engine's pools
    try:
        bridge = planes[0].ensure_network(net_id, "instances", subnet)
        assert planes[1].ensure_network(net_id, "instances", subnet) == bridge  # found by its network id
        for i, plane in enumerate(planes):
            plane.run_host(names[i], hostname="h", image="carina-host:bookworm-lb", kind="lb", owner="o%d" % i,
                           networks=[(bridge, "198.19.250.%d" % (10 + i))], command=["sleep", "600"],
                           stop_signal="SIGKILL")
        owners = [[c["Labels"]["carina.testcloud.owner"] for c in plane.containers("lb")] for plane in planes]
        assert owners == [["o0"], ["o1"]]
        assert not planes[0].mine({}) and DockerPlane().mine({})  # unlabelled objects are cloud.py's
        assert planes[0].purge() == [names[0]]  # its container (and volume), not the bridge in use
        assert [c["Names"][0].lstrip("/") for c in planes[1].containers()] == [names[1]]
        assert {v.name for v in dockerc.volumes.list(filters={"name": "testcloud-inst-"})} >= {names[1] + "-docker"}
    finally:
        for plane in reversed(planes):
            plane.purge()
    assert planes[0].find_network(net_id) is None
    assert not dockerc.volumes.list(filters={"name": names[0]}) and not dockerc.volumes.list(filters={"name": names[1]})
