# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""nova_hosts against an in-memory stand-in of the openstacksdk proxies (no cloud needed)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from ansible_collections.rax.carina.plugins.module_utils import openstack as os_utils
from ansible_collections.rax.carina.plugins.modules import nova_hosts
from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

openstack = pytest.importorskip("openstack")


class HttpError(openstack.exceptions.HttpException):
    pass


class FakeCloud:
    """Just enough of conn.compute / conn.network / conn.image for the module, with state."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.servers = {}
        self.keypairs = {}
        self.server_groups = {}
        self.security_groups = {}
        self.rules = []
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
        )
        self.image = SimpleNamespace(find_image=lambda name, ignore_missing=True: self.find(self.images, name))
        self.network = SimpleNamespace(
            find_network=lambda name, ignore_missing=True: self.find(self.networks, name),
            find_security_group=lambda name, ignore_missing=True: self.find(
                list(self.security_groups.values()), name),
            create_security_group=self.create_sg,
            delete_security_group=lambda sg, ignore_missing=True: self.security_groups.pop(sg.id, None),
            security_group_rules=lambda security_group_id: [r for r in self.rules
                                                            if r.security_group_id == security_group_id],
            create_security_group_rule=lambda **kw: self.rules.append(SimpleNamespace(**kw)),
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
        sid = "s%d" % next(self.ids)
        server = SimpleNamespace(id=sid, name=kw["name"], status="BUILD", metadata=dict(kw["metadata"]),
                                 addresses={}, fault=None, image_id=kw["image_id"])
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

    def create_sg(self, name, description):
        sg = SimpleNamespace(id="sg%d" % next(self.ids), name=name)
        self.security_groups[sg.id] = sg
        return sg

    def create_ip(self, floating_network_id, port_id, description):
        ip = SimpleNamespace(id="fip%d" % next(self.ids), port_id=port_id,
                             floating_ip_address="198.18.101.%d" % (10 + len(self.floating)))
        self.floating[ip.id] = ip
        return ip


@pytest.fixture
def cloud(monkeypatch):
    fake = FakeCloud()
    monkeypatch.setattr(os_utils.openstack, "connect", lambda **kw: fake)
    monkeypatch.setattr(os_utils.time, "sleep", lambda s: None)
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
    assert call["security_groups"] == [{"name": "carina-demo"}]
    assert {(r.protocol, r.port_range_min, r.remote_ip_prefix) for r in cloud.rules} == {
        ("tcp", 2376, "0.0.0.0/0"), ("udp", 7946, "198.18.100.0/24")}

    again = run(capsys, BASE)
    assert again["changed"] is False, again
    assert again["created"] == [] and again["removed"] == []
    assert len(cloud.servers) == 3 and len(cloud.rules) == 2


def test_check_mode_creates_nothing(cloud, capsys):
    result = run(capsys, BASE, check_mode=True)
    assert result["changed"] is True
    assert result["created"] == ["demo-manager-1", "demo-manager-2", "demo-manager-3"]
    assert cloud.servers == {} and cloud.keypairs == {} and cloud.security_groups == {}


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
    assert run(capsys, dict(BASE, count=1, floating_ip=True, external_network="public"))["changed"] is False


def test_absent_removes_the_whole_cluster(cloud, capsys):
    run(capsys, BASE)
    run(capsys, dict(BASE, role="worker", count=1, floating_ip=True, external_network="public"))
    result = run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})
    assert result["changed"] is True
    assert cloud.servers == {} and cloud.floating == {}
    assert cloud.security_groups == {} and cloud.server_groups == {} and cloud.keypairs == {}
    assert run(capsys, {"cloud": "devstack", "cluster": "demo", "state": "absent"})["changed"] is False
