# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""nova_hosts against an in-memory stand-in of the openstacksdk proxies (no cloud needed)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from ansible_collections.rax.carina.plugins.module_utils import openstack as os_utils
from ansible_collections.rax.carina.plugins.module_utils import ssh
from ansible_collections.rax.carina.plugins.modules import nova_hosts
from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

openstack = pytest.importorskip("openstack")


class HttpError(openstack.exceptions.HttpException):
    pass


def sg_names(server):
    return [g["name"] for g in server.security_groups]


class FakeCloud:
    """Just enough of conn.compute / conn.network / conn.image for the module, with state."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.servers = {}
        self.keypairs = {}
        self.server_groups = {}
        self.security_groups = {}
        self.rules = []
        self.deleted_groups = []  # names, in the order they were deleted
        self.current_project_id = "p1"
        self.floating = {}
        self.flavors = [SimpleNamespace(id="f1", name="m1.small")]
        self.images = [SimpleNamespace(id="i1", name="carina-host"), SimpleNamespace(id="i2", name="broken")]
        self.networks = [SimpleNamespace(id="n1", name="private"), SimpleNamespace(id="n2", name="public")]
        self.quota = 10
        self.calls = []
        self.compute = SimpleNamespace(
            servers=lambda details=True: list(self.servers.values()),
            get_server=self.get_server, create_server=self.create_server, delete_server=self.delete_server,
            wait_for_delete=lambda server, wait=None: None,
            find_flavor=lambda name, ignore_missing=True: self.find(self.flavors, name),
            flavors=lambda: list(self.flavors),
            find_keypair=lambda name, ignore_missing=True: self.keypairs.get(name),
            create_keypair=lambda name, public_key: self.keypairs.setdefault(name, SimpleNamespace(name=name)),
            delete_keypair=lambda name, ignore_missing=True: self.keypairs.pop(name, None),
            server_groups=lambda: list(self.server_groups.values()),
            create_server_group=self.create_server_group,
            delete_server_group=lambda group, ignore_missing=True: self.server_groups.pop(group.id, None),
            add_security_group_to_server=self.add_security_group_to_server,
            set_server_metadata=self.set_server_metadata,
        )
        self.image = SimpleNamespace(find_image=lambda name, ignore_missing=True: self.find(self.images, name))
        self.network = SimpleNamespace(
            find_network=lambda name, ignore_missing=True: self.find(self.networks, name),
            find_security_group=lambda name, ignore_missing=True: self.find(
                list(self.security_groups.values()), name),
            create_security_group=self.create_sg,
            update_security_group=self.update_sg,
            delete_security_group=self.delete_sg,
            security_groups=lambda project_id=None: [g for g in self.security_groups.values()
                                                     if project_id in (None, g.project_id)],
            security_group_rules=lambda security_group_id: [r for r in self.rules
                                                            if r.security_group_id == security_group_id],
            create_security_group_rule=self.create_rule,
            delete_security_group_rule=lambda rule, ignore_missing=True: self.rules.remove(rule),
            ports=lambda device_id: [SimpleNamespace(id="port-" + device_id)] if device_id in self.servers else [],
            ips=lambda port_id: [ip for ip in self.floating.values() if ip.port_id == port_id],
            create_ip=self.create_ip,
            delete_ip=lambda ip, ignore_missing=True: self.floating.pop(ip.id, None),
        )

    def authorize(self):
        return "token"

    @staticmethod
    def find(items, name):
        return next((i for i in items if name in (i.id, i.name)), None)

    def create_server(self, **kw):
        self.calls.append(kw)
        if len(self.servers) >= self.quota:
            raise HttpError(message="Quota exceeded for instances: Requested 1, but already used %d of %d instances"
                            % (len(self.servers), self.quota))
        for group in kw["security_groups"]:  # as Nova: every group named must exist
            if self.find(list(self.security_groups.values()), group["name"]) is None:
                raise HttpError(message="Security group %s not found for project p1." % group["name"])
        sid = "s%d" % next(self.ids)
        server = SimpleNamespace(id=sid, name=kw["name"], status="BUILD", metadata=dict(kw["metadata"]),
                                 addresses={}, fault=None, image_id=kw["image_id"],
                                 security_groups=[dict(g) for g in kw["security_groups"]])
        self.servers[sid] = server
        return server

    def get_server(self, sid):
        server = self.servers[sid]
        if server.status == "BUILD":
            if server.image_id == "i2":
                server.status, server.fault = "ERROR", {"message": "No valid host was found."}
            else:
                server.status = "ACTIVE"
                server.addresses = {"private": [{"addr": "198.18.100.%d" % (10 + int(sid[1:])), "version": 4,
                                                 "OS-EXT-IPS:type": "fixed"}]}
        for ip in self.floating.values():
            if ip.port_id == "port-" + sid and not any(a.get("OS-EXT-IPS:type") == "floating"
                                                       for a in server.addresses.get("private", [])):
                server.addresses["private"].append({"addr": ip.floating_ip_address, "version": 4,
                                                    "OS-EXT-IPS:type": "floating"})
        return server

    def delete_server(self, server, ignore_missing=True):
        self.servers.pop(server.id, None)

    def create_server_group(self, name, policy):
        group = SimpleNamespace(id="g%d" % next(self.ids), name=name, policy=policy)
        self.server_groups[group.id] = group
        return group

    def set_server_metadata(self, server, **metadata):
        """As Nova's POST /servers/{id}/metadata: the keys given are set, the others stay."""
        self.servers[server.id].metadata.update(metadata)
        return SimpleNamespace(id=server.id, metadata=dict(metadata))

    def add_security_group_to_server(self, server, sg):
        server = self.servers[server.id]
        if sg.name not in sg_names(server):
            server.security_groups.append({"name": sg.name})

    def create_sg(self, name, description):
        sg = SimpleNamespace(id="sg%d" % next(self.ids), name=name, description=description, project_id="p1")
        self.security_groups[sg.id] = sg
        self.rules.append(SimpleNamespace(id="r%d" % next(self.ids), security_group_id=sg.id, direction="egress",
                                          ether_type="IPv4", protocol=None, port_range_min=None, port_range_max=None,
                                          remote_ip_prefix=None, remote_group_id=None))
        return sg

    def update_sg(self, sg, **attrs):
        for key, value in attrs.items():
            setattr(self.security_groups[sg.id], key, value)
        return self.security_groups[sg.id]

    def delete_sg(self, sg, ignore_missing=True):
        """As Neutron: refused while a server uses it; its rules, and rules naming it as remote group, go."""
        if any(sg.name in sg_names(s) for s in self.servers.values()):
            raise openstack.exceptions.ConflictException(message="Security Group %s in use." % sg.id)
        self.security_groups.pop(sg.id, None)
        self.deleted_groups.append(sg.name)
        self.rules = [r for r in self.rules if sg.id not in (r.security_group_id, r.remote_group_id)]

    def create_rule(self, **kw):
        """As Neutron: a prefix or a remote group, not both; the remote group must exist; no duplicates.
        Read back as the SDK names the attributes (ethertype is ether_type)."""
        kw["ether_type"] = kw.pop("ethertype", "IPv4")
        rule = SimpleNamespace(**dict(dict(remote_ip_prefix=None, remote_group_id=None), **kw))
        if rule.remote_ip_prefix and rule.remote_group_id:
            raise openstack.exceptions.BadRequestException(
                message="Only remote_ip_prefix or remote_group_id may be provided.")
        if rule.remote_group_id and rule.remote_group_id not in self.security_groups:
            raise openstack.exceptions.NotFoundException(message="Security group %s does not exist"
                                                         % rule.remote_group_id)
        fields = ("security_group_id", "direction", "ether_type", "protocol", "port_range_min", "port_range_max",
                  "remote_ip_prefix", "remote_group_id")
        if any(all(getattr(r, f) == getattr(rule, f) for f in fields) for r in self.rules):
            raise openstack.exceptions.ConflictException(message="Security group rule already exists.")
        rule.id = "r%d" % next(self.ids)
        self.rules.append(rule)
        return rule

    def group(self, name):
        return self.find(list(self.security_groups.values()), name)

    def ingress(self, name):
        """{(protocol, min, max, remote_ip_prefix, remote_group_id)} of the group's ingress rules."""
        sg = self.group(name)
        return {(r.protocol, r.port_range_min, r.port_range_max, r.remote_ip_prefix, r.remote_group_id)
                for r in self.rules if r.security_group_id == sg.id and r.direction == "ingress"}

    def create_ip(self, floating_network_id, port_id, description):
        ip = SimpleNamespace(id="fip%d" % next(self.ids), port_id=port_id, description=description,
                             floating_ip_address="198.18.101.%d" % (10 + len(self.floating)))
        self.floating[ip.id] = ip
        return ip


@pytest.fixture
def cloud(monkeypatch):
    fake = FakeCloud()
    monkeypatch.setattr(os_utils.openstack, "connect", lambda **kw: fake)
    monkeypatch.setattr(os_utils.time, "sleep", lambda s: None)
    fake.ssh_probes = []  # the addresses the module waited on, in order
    fake.ssh_down = set()  # addresses whose sshd never answers
    monkeypatch.setattr(ssh, "sshd_answers", lambda address: fake.ssh_probes.append(address) or
                        address not in fake.ssh_down)
    monkeypatch.setattr(ssh.time, "sleep", lambda s: None)
    return fake


def run(capsys, args, check_mode=False):
    return run_module(nova_hosts.main, capsys, args, check_mode)


BASE = {
    "cloud": "devstack", "cluster": "demo", "role": "manager", "count": 3, "flavor": "m1.small",
    "image": "carina-host", "network": "private", "public_key": "ssh-ed25519 AAAA demo",
    "ports": [{"port": "2376"}, {"port": "7946", "protocol": "udp", "remote_ip_prefix": "198.18.100.0/24"}],
}


def test_create_then_nothing_to_change(cloud, capsys):
    result = run(capsys, BASE)
    assert result["changed"] is True, result
    assert result["created"] == ["demo-manager-1", "demo-manager-2", "demo-manager-3"]
    assert [h["status"] for h in result["hosts"]] == ["ACTIVE"] * 3
    assert all(h["address"].startswith("198.18.100.") for h in result["hosts"])
    assert "carina-demo" in cloud.keypairs
    assert [g.policy for g in cloud.server_groups.values()] == ["soft-anti-affinity"]
    call = cloud.calls[0]
    assert call["scheduler_hints"] == {"group": result["server_group"]}
    assert call["metadata"] == {"carina_cluster": "demo", "carina_role": "manager"}
    assert call["security_groups"] == [{"name": "carina-demo"}, {"name": "carina-demo-manager"}]
    assert cloud.ingress("carina-demo") == {
        ("tcp", 2376, 2376, "0.0.0.0/0", None), ("udp", 7946, 7946, "198.18.100.0/24", None)}
    assert cloud.ingress("carina-demo-manager") == set()
    rules = len(cloud.rules)

    again = run(capsys, BASE)
    assert again["changed"] is False, again
    assert again["created"] == [] and again["removed"] == []
    assert len(cloud.servers) == 3 and len(cloud.rules) == rules


def test_check_mode_creates_nothing(cloud, capsys):
    result = run(capsys, ROLE, check_mode=True)
    assert result["changed"] is True
    assert result["created"] == ["demo-manager-1", "demo-manager-2", "demo-manager-3"]
    assert result["security_group"] == "" and result["role_security_group"] == ""
    assert cloud.servers == {} and cloud.keypairs == {} and cloud.security_groups == {} and cloud.rules == []


def test_shrink_removes_named_then_highest(cloud, capsys):
    run(capsys, dict(BASE, role="worker", count=4))
    result = run(capsys, dict(BASE, role="worker", count=2, remove=["demo-worker-2"]))
    assert result["changed"] is True
    assert result["removed"] == ["demo-worker-2", "demo-worker-4"]
    assert sorted(h["name"] for h in result["hosts"]) == ["demo-worker-1", "demo-worker-3"]
    grown = run(capsys, dict(BASE, role="worker", count=3))
    assert grown["created"] == ["demo-worker-4"]


def test_missing_flavor_fails_before_anything(cloud, capsys):
    result = run(capsys, dict(BASE, flavor="m1.huge"))
    assert result["failed"] is True
    assert result["msg"] == "flavor m1.huge not found; the cloud has: m1.small"
    assert cloud.servers == {} and cloud.keypairs == {}


def test_error_servers_are_deleted_and_named(cloud, capsys):
    result = run(capsys, dict(BASE, image="broken", count=2))
    assert result["failed"] is True
    assert "went to ERROR and were deleted again" in result["msg"]
    assert "demo-manager-1 (No valid host was found.)" in result["msg"]
    assert cloud.servers == {}


def test_quota_error_deletes_what_this_run_made(cloud, capsys):
    cloud.quota = 2
    result = run(capsys, BASE)
    assert result["failed"] is True
    assert "Quota exceeded for instances" in result["msg"]
    assert cloud.servers == {}


def test_floating_ips(cloud, capsys):
    result = run(capsys, dict(BASE, count=1, floating_ip=True, external_network="public"))
    assert result["hosts"][0]["floating_ip"].startswith("198.18.101.")
    assert cloud.ssh_probes == [result["hosts"][0]["floating_ip"]]  # where the controller reaches it
    assert run(capsys, dict(BASE, count=1, floating_ip=True, external_network="public"))["changed"] is False


def test_absent_removes_the_whole_cluster(cloud, capsys):
    run(capsys, BASE)
    run(capsys, dict(BASE, role="worker", count=1, floating_ip=True, external_network="public"))
    result = run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})
    assert result["changed"] is True
    assert cloud.servers == {} and cloud.floating == {}
    assert cloud.security_groups == {} and cloud.server_groups == {} and cloud.keypairs == {}
    assert run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})["changed"] is False


# -- per-role security groups -------------------------------------------------------------------
ROLE = dict(BASE, ports=[{"port": "22"}], role_ports=[
    {"port": "2376"},
    {"port": "2377", "from": "cluster"},
    {"port": "7946", "protocol": "udp", "from": "cluster"},
    {"port": "30000-32767", "remote_ip_prefix": "198.19.200.0/24"},
])


def test_role_group_opens_cluster_ports_only_to_the_common_group(cloud, capsys):
    result = run(capsys, ROLE)
    assert result["changed"] is True, result
    common, role = cloud.group("carina-demo"), cloud.group("carina-demo-manager")
    assert (result["security_group"], result["role_security_group"]) == (common.id, role.id)
    assert role.description == "carina cluster demo role manager"
    assert cloud.ingress("carina-demo") == {("tcp", 22, 22, "0.0.0.0/0", None)}
    assert cloud.ingress("carina-demo-manager") == {
        ("tcp", 2376, 2376, "0.0.0.0/0", None),
        ("tcp", 2377, 2377, None, common.id),
        ("udp", 7946, 7946, None, common.id),
        ("tcp", 30000, 32767, "198.19.200.0/24", None),
    }
    # nothing cluster-internal is open to the world, in either group
    open_ports = {(p, lo) for p, lo, _hi, prefix, _g in cloud.ingress("carina-demo") | cloud.ingress(
        "carina-demo-manager") if prefix == "0.0.0.0/0"}
    assert open_ports == {("tcp", 22), ("tcp", 2376)}
    assert all(c["security_groups"] == [{"name": "carina-demo"}, {"name": "carina-demo-manager"}]
               for c in cloud.calls)
    assert all(sg_names(s) == ["carina-demo", "carina-demo-manager"] for s in cloud.servers.values())

    rules = sorted(r.id for r in cloud.rules)
    again = run(capsys, ROLE)
    assert again["changed"] is False, again
    assert sorted(r.id for r in cloud.rules) == rules
    assert (again["security_group"], again["role_security_group"]) == (common.id, role.id)


def test_roles_share_the_common_group_and_have_their_own(cloud, capsys):
    run(capsys, ROLE)
    workers = run(capsys, dict(ROLE, role="worker", count=2, role_ports=[{"port": "7946", "from": "cluster"}]))
    common = cloud.group("carina-demo")
    assert workers["security_group"] == common.id
    assert workers["role_security_group"] == cloud.group("carina-demo-worker").id
    assert cloud.ingress("carina-demo-worker") == {("tcp", 7946, 7946, None, common.id)}
    assert sorted(sg_names(s) for s in cloud.servers.values()) == (
        [["carina-demo", "carina-demo-manager"]] * 3 + [["carina-demo", "carina-demo-worker"]] * 2)
    assert len(cloud.ingress("carina-demo-manager")) == 4  # the workers' run left the managers' group alone


def test_check_mode_on_an_existing_cluster_decides_but_calls_nothing(cloud, capsys):
    run(capsys, BASE)  # servers and groups, no role_ports yet
    rules = sorted(r.id for r in cloud.rules)
    result = run(capsys, ROLE, check_mode=True)
    assert result["changed"] is True and result["created"] == []
    assert sorted(r.id for r in cloud.rules) == rules
    assert run(capsys, ROLE)["changed"] is True
    assert run(capsys, ROLE, check_mode=True)["changed"] is False


def test_existing_servers_join_groups_they_miss(cloud, capsys):
    run(capsys, ROLE)
    for server in cloud.servers.values():  # as made by a version that knew only the common group
        server.security_groups = [{"name": "carina-demo"}]
    check = run(capsys, ROLE, check_mode=True)
    assert check["changed"] is True
    assert all(sg_names(s) == ["carina-demo"] for s in cloud.servers.values())
    result = run(capsys, ROLE)
    assert result["changed"] is True and result["created"] == []
    assert all(sg_names(s) == ["carina-demo", "carina-demo-manager"] for s in cloud.servers.values())
    assert run(capsys, ROLE)["changed"] is False


def test_role_and_common_rules_follow_role_ports_and_ports(cloud, capsys):
    run(capsys, ROLE)
    common = cloud.group("carina-demo")
    moved = dict(ROLE, ports=[{"port": "2222"}], role_ports=[{"port": "2376", "from": "cluster"}])
    assert run(capsys, dict(moved), check_mode=True)["changed"] is True
    assert len(cloud.ingress("carina-demo-manager")) == 4
    result = run(capsys, moved)
    assert result["changed"] is True
    assert cloud.ingress("carina-demo-manager") == {("tcp", 2376, 2376, None, common.id)}
    assert cloud.ingress("carina-demo") == {("tcp", 2222, 2222, "0.0.0.0/0", None)}
    assert run(capsys, moved)["changed"] is False


def test_a_narrower_ssh_range_replaces_the_wider_one(cloud, capsys):
    run(capsys, ROLE)
    narrower = dict(ROLE, ports=[{"port": "22", "remote_ip_prefix": "198.19.200.0/24"}])
    result = run(capsys, narrower)
    assert result["changed"] is True
    assert cloud.ingress("carina-demo") == {("tcp", 22, 22, "198.19.200.0/24", None)}
    assert run(capsys, narrower)["changed"] is False


def test_a_foreign_group_of_the_common_name_is_not_pruned(cloud, capsys):
    sg = cloud.create_sg("carina-demo", "made by hand")
    cloud.create_rule(security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
                      port_range_min=8080, port_range_max=8080, remote_ip_prefix="0.0.0.0/0")
    run(capsys, ROLE)
    assert cloud.ingress("carina-demo") == {("tcp", 8080, 8080, "0.0.0.0/0", None), ("tcp", 22, 22, "0.0.0.0/0", None)}


def test_a_foreign_group_of_the_role_name_is_not_pruned(cloud, capsys):
    sg = cloud.create_sg("carina-demo-manager", "made by hand")
    cloud.create_rule(security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
                      port_range_min=8080, port_range_max=8080, remote_ip_prefix="0.0.0.0/0")
    run(capsys, ROLE)
    assert ("tcp", 8080, 8080, "0.0.0.0/0", None) in cloud.ingress("carina-demo-manager")
    assert len(cloud.ingress("carina-demo-manager")) == 5


def test_absent_removes_role_groups_then_the_common_group(cloud, capsys):
    run(capsys, ROLE)
    run(capsys, dict(ROLE, role="worker", count=1, role_ports=[{"port": "7946", "from": "cluster"}]))
    # another cluster whose names start like ours: carina-demo-2, carina-demo-2-manager
    run(capsys, dict(ROLE, cluster="demo-2", count=1))
    check = run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"}, check_mode=True)
    assert check["changed"] is True and cloud.deleted_groups == [] and len(cloud.servers) == 5

    result = run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})
    assert result["changed"] is True
    assert cloud.deleted_groups == ["carina-demo-manager", "carina-demo-worker", "carina-demo"]
    assert [r for r in result["removed"] if r.startswith("security group")] == [
        "security group carina-demo-manager", "security group carina-demo-worker", "security group carina-demo"]
    assert sorted(g.name for g in cloud.security_groups.values()) == ["carina-demo-2", "carina-demo-2-manager"]
    assert [s.name for s in cloud.servers.values()] == ["demo-2-manager-1"]
    assert cloud.ingress("carina-demo-2-manager") >= {("tcp", 2377, 2377, None, cloud.group("carina-demo-2").id)}
    assert run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})["changed"] is False


def test_absent_with_a_role_removes_only_its_servers(cloud, capsys):
    run(capsys, ROLE)
    run(capsys, dict(ROLE, role="worker", count=1))
    result = run(capsys, {"cloud": "devstack", "cluster": "demo", "role": "worker", "state": "absent"})
    assert result["removed"] == ["demo-worker-1"]
    assert cloud.deleted_groups == []
    assert sorted(s.name for s in cloud.servers.values()) == ["demo-manager-1", "demo-manager-2", "demo-manager-3"]


def test_names_from_the_plan_create_and_delete_exactly_those(cloud, capsys):
    named = dict(BASE, role="master", names=["demo-manager-1", "demo-manager-2"])
    named.pop("count")
    result = run(capsys, named)
    assert result["created"] == ["demo-manager-1", "demo-manager-2"]
    assert {s.metadata["carina_role"] for s in cloud.servers.values()} == {"master"}
    assert run(capsys, named)["changed"] is False
    moved = run(capsys, dict(named, names=["demo-manager-2", "demo-manager-5"]))
    assert moved["removed"] == ["demo-manager-1"] and moved["created"] == ["demo-manager-5"]
    assert sorted(h["name"] for h in moved["hosts"]) == ["demo-manager-2", "demo-manager-5"]
    bad = run(capsys, dict(named, names=["Demo_1"]))
    assert bad["failed"] is True and "Demo_1" in bad["msg"]


# -- the cluster's unique id --------------------------------------------------------------------
ID_A, ID_B = "a" * 32, "b" * 32
ABSENT = {"cloud": "devstack", "cluster": "demo", "state": "absent"}


def snapshot(cloud):
    """Everything the stand-in holds, as plain values, to show that a refused run changed nothing."""
    return repr(sorted(
        [("server", s.id, s.name, sorted(s.metadata.items()), sorted(g["name"] for g in s.security_groups))
         for s in cloud.servers.values()]
        + [("sg", g.id, g.name, g.description) for g in cloud.security_groups.values()]
        + [("rule", r.id, r.security_group_id, r.direction, r.protocol, r.port_range_min, r.remote_group_id)
           for r in cloud.rules]
        + [("keypair", name) for name in cloud.keypairs]
        + [("server group", g.id, g.name) for g in cloud.server_groups.values()]
        + [("floating ip", ip.id, ip.port_id) for ip in cloud.floating.values()]))


def test_the_id_is_written_on_everything_made(cloud, capsys):
    args = dict(ROLE, cluster_id=ID_A, floating_ip=True, external_network="public")
    result = run(capsys, args)
    assert result["changed"] is True, result
    assert all(c["metadata"]["carina_cluster_id"] == ID_A for c in cloud.calls)
    assert {s.metadata["carina_cluster_id"] for s in cloud.servers.values()} == {ID_A}
    assert cloud.group("carina-demo").description == "carina cluster demo id " + ID_A
    assert cloud.group("carina-demo-manager").description == "carina cluster demo role manager id " + ID_A
    assert sorted(ip.description for ip in cloud.floating.values()) == [
        "carina demo demo-manager-%d id %s" % (i, ID_A) for i in (1, 2, 3)]
    # the role group made with the id is the module's own: its rules follow role_ports
    assert len(cloud.ingress("carina-demo-manager")) == 4
    assert run(capsys, args)["changed"] is False
    assert run(capsys, dict(args, role_ports=[{"port": "2376"}]))["changed"] is True
    assert cloud.ingress("carina-demo-manager") == {("tcp", 2376, 2376, "0.0.0.0/0", None)}


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("args", [
    dict(ROLE, cluster_id=ID_B),
    dict(ROLE, cluster_id=ID_B, role="worker", count=1),
    dict(ABSENT, cluster_id=ID_B),
    dict(ABSENT, cluster_id=ID_B, role="manager"),
], ids=["present", "present-other-role", "absent", "absent-role"])
def test_another_id_is_never_adopted_changed_nor_deleted(cloud, capsys, args, check_mode):
    run(capsys, dict(ROLE, cluster_id=ID_A, floating_ip=True, external_network="public"))
    before = snapshot(cloud)
    result = run(capsys, args, check_mode=check_mode)
    assert result["failed"] is True, result
    assert result["msg"] == (
        "cluster demo on the cloud has id %s (server demo-manager-1 carries it), not this state's %s: it was made "
        "from another state folder. Nothing was changed. Choose another name, or delete it from the state folder "
        "that made it" % (ID_A, ID_B))
    assert result["other_id"] == ID_A
    assert snapshot(cloud) == before


def test_another_id_on_the_security_groups_alone_is_refused(cloud, capsys):
    run(capsys, dict(ROLE, cluster_id=ID_A, count=0))  # groups, key pair, server group; no server
    assert cloud.servers == {}
    before = snapshot(cloud)
    for args in (dict(ROLE, cluster_id=ID_B), dict(ABSENT, cluster_id=ID_B)):
        result = run(capsys, args)
        assert result["failed"] is True, result
        assert "has id %s (security group carina-demo" % ID_A in result["msg"]
        assert snapshot(cloud) == before


def test_a_cluster_made_before_ids_is_adopted_and_given_the_id(cloud, capsys):
    run(capsys, ROLE)  # no cluster_id: as an older release made it
    assert all("carina_cluster_id" not in s.metadata for s in cloud.servers.values())
    before = snapshot(cloud)
    args = dict(ROLE, cluster_id=ID_A)
    check = run(capsys, args, check_mode=True)
    assert check["changed"] is True and check["created"] == [] and check["removed"] == []
    assert snapshot(cloud) == before
    result = run(capsys, args)
    assert result["changed"] is True and result["created"] == [] and result["removed"] == []
    assert {s.metadata["carina_cluster_id"] for s in cloud.servers.values()} == {ID_A}
    assert cloud.group("carina-demo").description == "carina cluster demo id " + ID_A
    assert cloud.group("carina-demo-manager").description == "carina cluster demo role manager id " + ID_A
    assert len(cloud.ingress("carina-demo-manager")) == 4
    assert run(capsys, args)["changed"] is False
    assert run(capsys, args, check_mode=True)["changed"] is False
    # once it has the id, another id is refused
    assert run(capsys, dict(args, cluster_id=ID_B))["failed"] is True


def test_absent_with_the_id_removes_a_cluster_made_before_ids(cloud, capsys):
    run(capsys, ROLE)
    run(capsys, dict(ROLE, role="worker", count=1))
    result = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert result["changed"] is True, result
    assert cloud.servers == {} and cloud.security_groups == {} and cloud.keypairs == {} and cloud.server_groups == {}


def test_with_no_id_known_a_cluster_with_an_id_is_refused_until_its_id_is_given(cloud, capsys):
    run(capsys, dict(ROLE, cluster_id=ID_A))
    run(capsys, dict(ROLE, cluster_id=ID_A, role="worker", count=1))
    names = sorted(s.name for s in cloud.servers.values())
    for args in (ROLE, ABSENT):
        refused = run(capsys, args)
        assert refused["failed"] and refused["other_id"] == ID_A, refused
        assert "this run knows no id" in refused["msg"] and f"-e carina_cluster_id={ID_A}" in refused["msg"]
    assert sorted(s.name for s in cloud.servers.values()) == names
    assert {s.metadata["carina_cluster_id"] for s in cloud.servers.values()} == {ID_A}
    result = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert result["changed"] is True, result
    assert cloud.deleted_groups == ["carina-demo-manager", "carina-demo-worker", "carina-demo"]
    assert cloud.servers == {} and cloud.security_groups == {} and cloud.keypairs == {} and cloud.server_groups == {}


def test_a_malformed_id_is_refused(cloud, capsys):
    result = run(capsys, dict(ROLE, cluster_id="not an id"))
    assert result["failed"] is True and "cluster_id 'not an id'" in result["msg"]
    assert cloud.servers == {} and cloud.security_groups == {}


def test_new_servers_are_waited_for_until_their_sshd_answers(cloud, capsys):
    first = run(capsys, dict(BASE, count=2))
    assert sorted(cloud.ssh_probes) == sorted(h["address"] for h in first["hosts"])
    cloud.ssh_probes.clear()
    grown = run(capsys, dict(BASE, count=3))
    assert cloud.ssh_probes == [grown["hosts"][2]["address"]]  # only the server this run made
    cloud.ssh_probes.clear()
    assert run(capsys, dict(BASE, count=3))["changed"] is False
    assert cloud.ssh_probes == []
    run(capsys, dict(BASE, count=4, wait_ssh=False))
    assert cloud.ssh_probes == []


def test_a_server_whose_sshd_never_answers_fails_the_run_and_is_kept(cloud, capsys, monkeypatch):
    monkeypatch.setattr(ssh, "sshd_answers", lambda address: cloud.ssh_probes.append(address) and False)
    result = run(capsys, dict(BASE, count=1, timeout=0))
    [server] = cloud.servers.values()
    address = server.addresses["private"][0]["addr"]
    assert result["failed"] is True
    assert result["msg"] == ("servers demo-manager-1 (%s) are ACTIVE but their sshd did not answer within 0s; they "
                             "may still be booting (run again to go on with them), or port 22 is closed to this "
                             "controller (see ports)" % address)
    assert cloud.ssh_probes[0] == address
    assert server.name == "demo-manager-1" and server.status == "ACTIVE"
    monkeypatch.setattr(ssh, "sshd_answers", lambda address: True)
    again = run(capsys, dict(BASE, count=1))
    assert again["changed"] is False and again["hosts"][0]["name"] == "demo-manager-1"
