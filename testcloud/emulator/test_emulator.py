"""The emulated Nova/Neutron/Glance, driven only through openstacksdk (and ssh into the servers).

    TESTCLOUD_KEYSTONE=http://127.0.0.1:5000/v3 .venv/bin/pytest -q testcloud/emulator/test_emulator.py

Needs a Keystone whose catalog points compute/network/image at 127.0.0.1:8774/9696/9292 (the
test cloud's, or `python -m testcloud.emulator.devkeystone up`), admin credentials (taken from
TESTCLOUD_ADMIN_USER/_PASSWORD/_PROJECT, else from a clouds.yaml of .cache/testcloud or
.cache/testcloud-dev/keystone whose auth_url is TESTCLOUD_KEYSTONE), the Docker engine
($DOCKER_HOST) and the carina-host images. If an emulator already answers on 8774 it is used as
it is; otherwise the test starts one on a temporary state dir and stops it at the end. Every
Docker object the test run made is removed at the end; nothing that existed before is touched.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

openstack = pytest.importorskip("openstack")
docker = pytest.importorskip("docker")
yaml = pytest.importorskip("yaml")

from openstack import exceptions as osexc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEYSTONE = os.environ.get("TESTCLOUD_KEYSTONE", "").rstrip("/")
LABEL = "carina.testcloud=1"
PRIVATE = ipaddress.ip_network("198.18.100.0/24")
PUBLIC = ipaddress.ip_network("198.18.101.0/24")

pytestmark = [
    pytest.mark.skipif(not KEYSTONE, reason="set TESTCLOUD_KEYSTONE to a Keystone v3 URL"),
    # the cloud layer calls its own deprecated helpers
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning"),
]


# -- helpers ----------------------------------------------------------------------------------
def admin_credentials() -> dict:
    if os.environ.get("TESTCLOUD_ADMIN_PASSWORD"):
        return {"username": os.environ.get("TESTCLOUD_ADMIN_USER", "admin"),
                "password": os.environ["TESTCLOUD_ADMIN_PASSWORD"],
                "project_name": os.environ.get("TESTCLOUD_ADMIN_PROJECT", "admin")}
    for path in (ROOT / ".cache/testcloud/clouds.yaml", ROOT / ".cache/testcloud-dev/keystone/clouds.yaml"):
        if not path.exists():
            continue
        for cloud in (yaml.safe_load(path.read_text()) or {}).get("clouds", {}).values():
            auth = cloud.get("auth", {})
            if auth.get("auth_url", "").rstrip("/") == KEYSTONE and auth.get("username") == "admin":
                return {k: auth[k] for k in ("username", "password", "project_name")}
    pytest.skip("no admin credentials for %s (set TESTCLOUD_ADMIN_PASSWORD)" % KEYSTONE)
    return {}


def connect(username, password, project_name):
    return openstack.connect(auth_url=KEYSTONE, username=username, password=password, project_name=project_name,
                             user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
                             identity_api_version="3")


def nova_answers() -> bool:
    """True when all three services of an emulator answer (not some other stand-in)."""
    for port, name in ((8774, "nova"), (9696, "neutron"), (9292, "glance")):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=2) as resp:  # noqa: S310
                if not resp.headers.get("Server", "").startswith("testcloud-" + name):
                    return False
        except OSError:
            return False
    return True


def ssh(key: Path, addr: str, command: str = "true") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@" + addr, command],
        capture_output=True, text=True, timeout=60, check=False)


def labelled(client) -> dict[str, set[str]]:
    return {"containers": {c.name for c in client.containers.list(all=True, filters={"label": LABEL})},
            "volumes": {v.name for v in client.volumes.list(filters={"label": LABEL})},
            "networks": {n.name for n in client.networks.list(filters={"label": LABEL})}}


def addresses(server, kind: str) -> list[str]:
    return [a["addr"] for net in (server.addresses or {}).values() for a in net if a.get("OS-EXT-IPS:type") == kind]


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dockerc():
    client = docker.from_env()
    try:
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip("no Docker engine at DOCKER_HOST: %s" % exc)
    for image in ("carina-host:bookworm-engine", "carina-host:bookworm-lb"):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.skip("image %s missing (make images)" % image)
    return client


@pytest.fixture(scope="module")
def emulator(dockerc, tmp_path_factory):
    """The emulator under test: the running one, or one of ours on a fresh state dir."""
    before = labelled(dockerc)
    proc, state = None, None
    if not nova_answers():
        state = tmp_path_factory.mktemp("emulator-state")
        log = (state / "emulator.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "testcloud.emulator", "--state-dir", str(state),
                                 "--keystone", KEYSTONE], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 45  # the emulator waits up to 30 s for a busy port
        while not nova_answers():
            assert proc.poll() is None, (state / "emulator.log").read_text()
            assert time.monotonic() < deadline, "the emulator did not answer on 127.0.0.1:8774"
            time.sleep(0.2)
    handle = {"proc": proc, "state": state, "log": log if proc else None}
    yield handle
    if handle["proc"] is not None:
        handle["proc"].terminate()
        handle["proc"].wait(timeout=20)
    after = labelled(dockerc)
    for name in after["containers"] - before["containers"]:
        with contextlib.suppress(docker.errors.NotFound):
            dockerc.containers.get(name).remove(force=True, v=True)
    for name in labelled(dockerc)["volumes"] - before["volumes"]:
        with contextlib.suppress(docker.errors.NotFound):
            dockerc.volumes.get(name).remove(force=True)
    for name in labelled(dockerc)["networks"] - before["networks"]:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            dockerc.networks.get(name).remove()
    left = labelled(dockerc)
    assert all(left[kind] <= before[kind] for kind in left), "left behind: %s" % left


@pytest.fixture(scope="module")
def admin(emulator):
    return connect(**admin_credentials())


@pytest.fixture(scope="module")
def project(admin):
    """A fresh project with a member user; everything in it is deleted at the end."""
    suffix = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    proj = admin.identity.create_project(name="emu-test-" + suffix, domain_id="default")
    user = admin.identity.create_user(name="emu-test-" + suffix, password=password, domain_id="default",
                                      default_project_id=proj.id)
    member = admin.identity.find_role("member")
    admin.identity.assign_project_role_to_user(proj, user, member)
    conn = connect(user.name, password, proj.name)
    conn.test_project = proj
    yield conn
    for server in conn.compute.servers():
        conn.compute.delete_server(server)
    for fip in conn.network.ips(project_id=proj.id):
        conn.network.delete_ip(fip)
    for kp in conn.compute.keypairs():
        conn.compute.delete_keypair(kp)
    for group in conn.compute.server_groups():
        conn.compute.delete_server_group(group)
    for sg in conn.network.security_groups(project_id=proj.id):
        if sg.name != "default":
            with contextlib.suppress(osexc.SDKException):
                conn.network.delete_security_group(sg)
    admin.delete_compute_quotas(proj.id)
    admin.delete_network_quotas(proj.id)
    admin.identity.delete_user(user)
    admin.identity.delete_project(proj)


@pytest.fixture(scope="module")
def keypair(project, tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    project.compute.create_keypair(name="emu-key", public_key=path.with_suffix(".pub").read_text())
    return path


# -- tests ------------------------------------------------------------------------------------
def test_discovery_seeds_and_find_by_name(project):
    conn = project
    flavors = {f.name: f for f in conn.compute.flavors()}
    assert {"m1.tiny", "m1.small"} <= set(flavors)
    small = conn.compute.find_flavor("m1.small", ignore_missing=False)
    assert (small.vcpus, small.ram, small.disk) == (2, 2048, 20)
    assert conn.get_flavor("m1.small").id == small.id

    images = {i.name for i in conn.image.images()}
    assert {"carina-host", "carina-lb"} <= images
    image = conn.image.find_image("carina-host", ignore_missing=False)
    assert image.status == "active"
    assert conn.get_image("carina-lb").name == "carina-lb"

    private = conn.network.find_network("private", ignore_missing=False)
    public = conn.network.find_network("public", ignore_missing=False)
    assert public.is_router_external and not private.is_router_external
    subnet = conn.network.find_subnet("private-subnet", ignore_missing=False)
    assert (subnet.cidr, subnet.gateway_ip) == ("198.18.100.0/24", "198.18.100.1")
    assert subnet.allocation_pools == [{"start": "198.18.100.10", "end": "198.18.100.250"}]
    assert conn.network.find_subnet("public-subnet", ignore_missing=False).cidr == "198.18.101.0/24"
    assert any(e.alias == "external-net" for e in conn.network.extensions())
    assert conn.compute.find_server("no-such-server") is None
    # the compute API negotiates microversions
    assert conn.compute.get_endpoint_data().max_microversion == (2, 96)


def test_tokens_are_checked(project):
    url = project.compute.get_endpoint() + "/servers"
    for headers in ({}, {"X-Auth-Token": "not-a-token"}):
        resp = project.session.get(url, headers=headers, authenticated=False, raise_exc=False)
        assert resp.status_code == 401, resp.text


def test_default_quotas(admin, project):
    compute = admin.get_compute_quotas(project.test_project.id)
    assert (compute.instances, compute.cores, compute.ram) == (20, 40, 51200)
    network = admin.get_network_quotas(project.test_project.id)
    assert (network.ports, network.floating_ips) == (100, 10)


def test_server_lifecycle(project, keypair, dockerc):
    conn = project
    sg = conn.network.create_security_group(name="emu-sg", description="ssh")
    rule = conn.network.create_security_group_rule(
        security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    assert rule.port_range_min == 22
    assert {r["direction"] for r in conn.network.get_security_group(sg.id).security_group_rules} == {
        "ingress", "egress"}
    with pytest.raises(osexc.ConflictException, match="already exists"):
        conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
            port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    group = conn.compute.create_server_group(name="emu-group", policy="anti-affinity")
    assert group.policy == "anti-affinity"

    started = time.monotonic()
    server = conn.create_server(
        "emu-server-1", image="carina-host", flavor="m1.small", key_name="emu-key", network="private",
        security_groups=[sg.name], meta={"role": "manager", "cluster": "emu"}, group=group.id,
        auto_ip=False, wait=True, timeout=180)
    boot = time.monotonic() - started
    assert server.status == "ACTIVE"
    fixed = addresses(server, "fixed")
    assert len(fixed) == 1 and ipaddress.ip_address(fixed[0]) in PRIVATE
    assert server.metadata == {"role": "manager", "cluster": "emu"}
    assert {g["name"] for g in server.security_groups} == {"emu-sg"}
    assert server.id in conn.compute.get_server_group(group.id).member_ids
    assert conn.compute.find_server("emu-server-1").id == server.id
    assert conn.get_server("emu-server-1").private_v4 == fixed[0]
    port = next(conn.network.ports(device_id=server.id))
    assert port.fixed_ips[0]["ip_address"] == fixed[0] and sg.id in port.security_group_ids

    conn.compute.set_server_metadata(server, tier="db")
    assert conn.compute.fetch_server_metadata(server).metadata == {"role": "manager", "cluster": "emu", "tier": "db"}
    conn.compute.delete_server_metadata(server, ["tier"])
    assert "tier" not in conn.compute.get_server(server.id).metadata

    result = ssh(keypair, fixed[0], "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "emu-server-1"
    container = dockerc.containers.get("testcloud-" + server.id[:8])
    assert container.labels["carina.testcloud.owner"] == server.id

    fip = conn.create_floating_ip(network="public", server=server, wait=True, timeout=60)
    assert ipaddress.ip_address(fip.floating_ip_address) in PUBLIC
    server = conn.get_server(server.id)
    assert server.public_v4 == fip.floating_ip_address
    assert fip.floating_ip_address in addresses(server, "floating")
    result = ssh(keypair, fip.floating_ip_address)
    assert result.returncode == 0, result.stderr

    conn.delete_server(server.id, wait=True, delete_ips=True, timeout=60)
    with pytest.raises(osexc.NotFoundException):
        conn.compute.get_server(server.id)
    assert conn.get_server(server.id) is None
    assert list(conn.network.ips(floating_ip_address=fip.floating_ip_address)) == []
    assert list(conn.network.ports(device_id=server.id)) == []
    with pytest.raises(docker.errors.NotFound):
        dockerc.containers.get(container.id)
    with pytest.raises(docker.errors.NotFound):
        dockerc.volumes.get("testcloud-%s-docker" % server.id[:8])
    assert conn.compute.get_server_group(group.id).member_ids == []
    print("boot to ACTIVE with sshd: %.1fs" % boot)


def test_remote_group_rules_and_servers_in_two_groups(project):
    conn = project
    common = conn.network.create_security_group(name="emu-common", description="the cluster")
    role = conn.network.create_security_group(name="emu-common-manager", description="a role")
    internal = dict(security_group_id=role.id, direction="ingress", ethertype="IPv4", protocol="tcp",
                    port_range_min=2377, port_range_max=2377)
    rule = conn.network.create_security_group_rule(remote_group_id=common.id, **internal)
    assert (rule.remote_group_id, rule.remote_ip_prefix) == (common.id, None)
    assert [(r.remote_group_id, r.remote_ip_prefix) for r in conn.network.security_group_rules(
        security_group_id=role.id) if r.direction == "ingress"] == [(common.id, None)]
    with pytest.raises(osexc.ConflictException, match="already exists"):
        conn.network.create_security_group_rule(remote_group_id=common.id, **internal)
    with pytest.raises(osexc.BadRequestException, match="Only remote_ip_prefix or remote_group_id"):
        conn.network.create_security_group_rule(remote_group_id=common.id, remote_ip_prefix="10.0.0.0/8",
                                                **dict(internal, port_range_min=2376, port_range_max=2376))
    with pytest.raises(osexc.NotFoundException, match="does not exist"):
        conn.network.create_security_group_rule(remote_group_id="no-such-group", **internal)
    # no prefix and 0.0.0.0/0 are the same rule to Neutron
    clients = dict(internal, port_range_min=2376, port_range_max=2376)
    conn.network.create_security_group_rule(**clients)
    with pytest.raises(osexc.ConflictException, match="already exists"):
        conn.network.create_security_group_rule(remote_ip_prefix="0.0.0.0/0", **clients)

    # a server created in both groups (it fails its build at once: no host container is needed)
    image = conn.image.find_image("carina-host", ignore_missing=False)
    net = conn.network.find_network("private", ignore_missing=False)
    server = conn.compute.create_server(
        name="emu-two-groups", flavor_id="1", image_id=image.id, networks=[{"uuid": net.id}],
        security_groups=[{"name": common.name}, {"name": role.name}], metadata={"testcloud:fail": "true"})
    try:
        assert sorted(g["name"] for g in conn.compute.get_server(server.id).security_groups) == [
            common.name, role.name]
        port = next(conn.network.ports(device_id=server.id))
        assert sorted(port.security_group_ids) == sorted([common.id, role.id])
        with pytest.raises(osexc.ConflictException, match="in use"):
            conn.network.delete_security_group(common)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=30)
    # deleting a group takes the other groups' rules that name it as remote group (ON DELETE CASCADE)
    conn.network.delete_security_group(common)
    assert [r.remote_group_id for r in conn.network.security_group_rules(security_group_id=role.id)
            if r.direction == "ingress"] == [None]
    conn.network.delete_security_group(role)


def test_error_servers_carry_the_fault(project, keypair):
    conn = project
    with pytest.raises(osexc.SDKException, match="disk on fire"):
        conn.create_server("emu-fail", image="carina-host", flavor="m1.tiny", key_name="emu-key", network="private",
                           meta={"testcloud:fail": "disk on fire"}, auto_ip=False, wait=True, timeout=60)
    with pytest.raises(osexc.SDKException, match="not on the Docker engine"):
        conn.create_server("emu-broken", image="carina-broken", flavor="m1.tiny", network="private",
                           auto_ip=False, wait=True, timeout=60)
    for name in ("emu-fail", "emu-broken"):
        server = conn.compute.find_server(name, ignore_missing=False)
        server = conn.compute.get_server(server.id)
        assert server.status == "ERROR"
        assert server.fault["message"].startswith("Build of instance %s aborted" % server.id)
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=30)


def test_bad_requests_fail_at_post(project):
    conn = project
    image = conn.image.find_image("carina-host", ignore_missing=False)
    net = conn.network.find_network("private", ignore_missing=False)
    with pytest.raises(osexc.BadRequestException, match="Flavor"):
        conn.compute.create_server(name="x", flavor_id="no-such-flavor", image_id=image.id, networks=[{"uuid": net.id}])
    with pytest.raises(osexc.BadRequestException, match="Image"):
        conn.compute.create_server(name="x", flavor_id="1", image_id="no-such-image", networks=[{"uuid": net.id}])
    with pytest.raises(osexc.BadRequestException, match="key_name"):
        conn.compute.create_server(name="x", flavor_id="1", image_id=image.id, key_name="nope",
                                   networks=[{"uuid": net.id}])
    assert list(conn.compute.servers()) == []


def test_quotas_are_enforced(admin, project):
    conn, proj = project, project.test_project
    admin.set_compute_quotas(proj.id, instances=0)
    try:
        with pytest.raises(osexc.ForbiddenException, match="Quota exceeded for instances"):
            conn.create_server("emu-over", image="carina-host", flavor="m1.tiny", network="private", auto_ip=False)
    finally:
        admin.delete_compute_quotas(proj.id)
    admin.set_network_quotas(proj.id, floatingip=1)
    public = conn.network.find_network("public", ignore_missing=False)
    first = conn.network.create_ip(floating_network_id=public.id)
    try:
        with pytest.raises(osexc.ConflictException, match=r"Quota exceeded for resources: \['floatingip'\]"):
            conn.network.create_ip(floating_network_id=public.id)
    finally:
        conn.network.delete_ip(first)
        admin.delete_network_quotas(proj.id)


def test_projects_are_isolated(admin, project):
    conn = project
    mine = conn.compute.create_server(name="emu-scope", flavor_id="1",
                                      image_id=conn.image.find_image("carina-host").id, networks="none",
                                      metadata={"testcloud:fail": "true"})
    try:
        assert mine.id not in {s.id for s in admin.compute.servers()}
        assert mine.id in {s.id for s in admin.compute.servers(all_projects=True)}
        assert admin.compute.get_server(mine.id).project_id == conn.test_project.id
        admin_sg = admin.network.find_security_group("default", project_id=admin.current_project_id)
        with pytest.raises(osexc.NotFoundException):
            conn.network.get_security_group(admin_sg.id)
        assert conn.compute.find_keypair("emu-key") is not None
        assert admin.compute.find_keypair("emu-key") is None  # key pairs belong to their user
    finally:
        conn.compute.delete_server(mine)


def test_old_microversion_server_groups(project):
    conn = project
    resp = conn.compute.post("/os-server-groups", json={"server_group": {"name": "emu-old", "policies": ["affinity"]}},
                             microversion="2.15")
    body = resp.json()["server_group"]
    assert resp.headers["OpenStack-API-Version"] == "compute 2.15"
    assert body["policies"] == ["affinity"] and body["members"] == []
    assert conn.compute.get_server_group(body["id"]).policy == "affinity"
    conn.compute.delete_server_group(body["id"])


def test_restart_keeps_state(emulator, project):
    if emulator["proc"] is None:
        pytest.skip("the emulator under test is not ours to restart")
    sg = project.network.create_security_group(name="emu-persist")
    emulator["proc"].terminate()
    emulator["proc"].wait(timeout=20)
    emulator["proc"] = subprocess.Popen(
        [sys.executable, "-m", "testcloud.emulator", "--state-dir", str(emulator["state"]), "--keystone", KEYSTONE],
        cwd=ROOT, stdout=emulator["log"], stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not nova_answers():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert project.network.find_security_group("emu-persist").id == sg.id
    project.network.delete_security_group(sg)
