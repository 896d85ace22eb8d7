"""The emulated Nova/Neutron/Glance, driven only through openstacksdk (and ssh into the servers).

    .venv/bin/pytest -q testcloud          # what `make test` runs, with DOCKER_HOST set

testcloud/conftest.py provides what they need: the Docker engine and the carina-host images, a
Keystone (the session's own, from the test cloud's venv, on a free port; or TESTCLOUD_KEYSTONE) and
an emulator on the ports its catalog names. The tests make a project and a member user of their own
and delete them at the end; the session removes the Docker objects it made.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path

import docker
import pytest
from openstack import exceptions as osexc

PRIVATE = ipaddress.ip_network("198.18.100.0/24")
PUBLIC = ipaddress.ip_network("198.18.101.0/24")

pytestmark = [
    # the cloud layer calls its own deprecated helpers
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning"),
]


# -- helpers ----------------------------------------------------------------------------------
def ssh(key: Path, addr: str, command: str = "true") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@" + addr, command],
        capture_output=True, text=True, timeout=60, check=False)


def addresses(server, kind: str) -> list[str]:
    return [a["addr"] for net in (server.addresses or {}).values() for a in net if a.get("OS-EXT-IPS:type") == kind]


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
        conn.network.create_security_group_rule(remote_group_id=common.id, remote_ip_prefix="198.18.0.0/16",
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
    if not emulator.ours:
        pytest.skip("the emulator under test (TESTCLOUD_KEYSTONE's) is not ours to restart")
    sg = project.network.create_security_group(name="emu-persist")
    emulator.stop()
    emulator.start()
    assert project.network.find_security_group("emu-persist").id == sg.id
    project.network.delete_security_group(sg)
