# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ironic_hosts against an in-memory Ironic and Neutron (no cloud needed)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from ansible_collections.rax.carina.plugins.module_utils import openstack as os_utils
from ansible_collections.rax.carina.plugins.modules import ironic_hosts
from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

pytest.importorskip("openstack")


class FakeIronic:
    def __init__(self, nodes=3):
        self.ids = itertools.count(1)
        self.nodes = {}
        for i in range(1, nodes + 1):
            node = SimpleNamespace(id="node-%d" % i, name="bm-%d" % i, provision_state="available", extra={},
                                   instance_info={}, instance_id=None, is_maintenance=False,
                                   resource_class="baremetal", vifs=[], config_drive=None)
            self.nodes[node.id] = node
        self.ports = {}
        self.touched = []
        self.baremetal = SimpleNamespace(
            nodes=self.list_nodes, get_node=lambda nid: self.nodes[nid], patch_node=self.patch_node,
            attach_vif_to_node=lambda node, vif: self.nodes[node.id].vifs.append(vif),
            detach_vif_from_node=lambda node, vif, ignore_missing=True: self.nodes[node.id].vifs.remove(vif),
            list_node_vifs=lambda node: list(self.nodes[node.id].vifs),
            set_node_provision_state=self.set_state,
            wait_for_nodes_provision_state=lambda nodes, state, timeout=None: None,
        )
        self.network = SimpleNamespace(
            find_network=lambda name, ignore_missing=True: SimpleNamespace(id="n1") if name == "private" else None,
            create_port=self.create_port, get_port=self.ports.get,
            delete_port=lambda port, ignore_missing=True: self.ports.pop(port.id, None),
        )
        self.image = SimpleNamespace(
            find_image=lambda name, ignore_missing=True: SimpleNamespace(id="img1") if name == "carina-host" else None)

    def authorize(self):
        return "token"

    def has_service(self, name):
        return name == "baremetal"

    def list_nodes(self, details=True, provision_state=None, resource_class=None):
        return [n for n in self.nodes.values()
                if provision_state in (None, n.provision_state) and resource_class in (None, n.resource_class)]

    def patch_node(self, node, patch):
        node = self.nodes[node.id]
        self.touched.append(node.id)
        for op in patch:
            _root, field, key = op["path"].split("/")
            target = getattr(node, field)
            if op["op"] == "add":
                target[key] = op["value"]
            else:
                target.pop(key)
        return node

    def set_state(self, node, target, config_drive=None, wait=False):
        node = self.nodes[node.id]
        self.touched.append(node.id)
        if target == "active":
            node.provision_state, node.config_drive, node.instance_id = "active", config_drive, "inst-" + node.id
        elif target == "deleted":
            node.provision_state, node.config_drive, node.instance_id, node.instance_info = "available", None, None, {}

    def create_port(self, network_id, name, description, device_id=None, device_owner=None):
        n = next(self.ids)
        port = SimpleNamespace(id="port-%d" % n, name=name, description=description,
                               fixed_ips=[{"ip_address": "198.18.100.%d" % (20 + n)}])
        self.ports[port.id] = port
        return port


@pytest.fixture
def cloud(monkeypatch):
    fake = FakeIronic()
    monkeypatch.setattr(os_utils.openstack, "connect", lambda **kw: fake)
    return fake


def run(capsys, args, check_mode=False):
    return run_module(ironic_hosts.main, capsys, args, check_mode)


BASE = {"cloud": "devstack-admin", "cluster": "demo", "role": "worker", "count": 2, "image": "carina-host",
        "network": "private", "public_key": "ssh-ed25519 AAAA demo"}


def test_deploy_then_nothing_to_change(cloud, capsys):
    result = run(capsys, BASE)
    assert result["changed"] is True, result
    assert result["deployed"] == ["demo-worker-1", "demo-worker-2"]
    assert [h["provision_state"] for h in result["hosts"]] == ["active", "active"]
    assert all(h["address"].startswith("198.18.100.") for h in result["hosts"])
    node = cloud.nodes[result["hosts"][0]["node"]]
    assert node.extra == {"carina_cluster": "demo", "carina_role": "worker", "carina_name": "demo-worker-1",
                          "carina_port": node.vifs[0]}
    assert node.config_drive["meta_data"]["public_keys"] == {"carina": "ssh-ed25519 AAAA demo"}
    assert node.instance_info["image_source"] == "img1"
    assert len(node.vifs) == 1
    again = run(capsys, BASE)
    assert again["changed"] is False and again["deployed"] == []


def test_not_enough_nodes_fails_before_touching_any(cloud, capsys):
    result = run(capsys, dict(BASE, count=4))
    assert result["failed"] is True
    assert result["msg"] == ("not enough bare metal nodes: 4 worker node(s) needed for demo, 3 available in "
                             "resource class baremetal; no node was touched")
    assert cloud.touched == [] and cloud.ports == {}


def test_release_named_node_and_absent(cloud, capsys):
    run(capsys, dict(BASE, count=3))
    result = run(capsys, dict(BASE, count=2, remove=["demo-worker-2"]))
    assert result["released"] == ["demo-worker-2"]
    freed = [n for n in cloud.nodes.values() if n.provision_state == "available"]
    assert len(freed) == 1 and freed[0].extra == {} and freed[0].vifs == []
    assert len(cloud.ports) == 2
    gone = run(capsys, {"cloud": "devstack-admin", "cluster": "demo", "state": "absent"})
    assert gone["changed"] is True
    assert all(n.provision_state == "available" and n.extra == {} for n in cloud.nodes.values())
    assert cloud.ports == {}


def test_check_mode_touches_nothing(cloud, capsys):
    result = run(capsys, BASE, check_mode=True)
    assert result["changed"] is True and result["deployed"] == ["demo-worker-1", "demo-worker-2"]
    assert cloud.touched == [] and cloud.ports == {}


def test_names_from_the_plan_deploy_and_release_exactly_those(cloud, capsys):
    named = dict(BASE, role="master", names=["demo-manager-1", "demo-manager-2"])
    named.pop("count")
    result = run(capsys, named)
    assert result["deployed"] == ["demo-manager-1", "demo-manager-2"]
    assert sorted(h["name"] for h in result["hosts"]) == ["demo-manager-1", "demo-manager-2"]
    assert run(capsys, named)["changed"] is False
    fewer = run(capsys, dict(named, names=["demo-manager-2", "demo-manager-4"]))
    assert fewer["released"] == ["demo-manager-1"] and fewer["deployed"] == ["demo-manager-4"]
    assert sorted(h["name"] for h in fewer["hosts"]) == ["demo-manager-2", "demo-manager-4"]


# -- the cluster's unique id --------------------------------------------------------------------
ID_A, ID_B = "a" * 32, "b" * 32
ABSENT = {"cloud": "devstack-admin", "cluster": "demo", "state": "absent"}


def snapshot(cloud):
    """Every node and port, as plain values, to show that a refused run changed nothing."""
    return repr(sorted(
        [(n.id, n.provision_state, sorted(n.extra.items()), sorted(n.instance_info.items()), list(n.vifs))
         for n in cloud.nodes.values()] + [(p.id, p.name) for p in cloud.ports.values()]))


def test_the_id_is_written_and_released_with_the_marks(cloud, capsys):
    args = dict(BASE, cluster_id=ID_A)
    result = run(capsys, args)
    assert result["changed"] is True, result
    node = cloud.nodes[result["hosts"][0]["node"]]
    assert node.extra == {"carina_cluster": "demo", "carina_cluster_id": ID_A, "carina_role": "worker",
                          "carina_name": "demo-worker-1", "carina_port": node.vifs[0]}
    assert sorted(p.description for p in cloud.ports.values()) == [
        "carina demo demo-worker-%d id %s" % (i, ID_A) for i in (1, 2)]
    assert run(capsys, args)["changed"] is False
    fewer = run(capsys, dict(args, count=1))
    assert fewer["released"] == ["demo-worker-2"]
    assert [n.extra for n in cloud.nodes.values() if n.provision_state == "available"] == [{}, {}]
    gone = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert gone["changed"] is True
    assert all(n.extra == {} and n.provision_state == "available" for n in cloud.nodes.values())


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("args", [
    dict(BASE, cluster_id=ID_B),
    dict(BASE, cluster_id=ID_B, role="master", count=1),
    dict(ABSENT, cluster_id=ID_B),
    dict(ABSENT, cluster_id=ID_B, role="worker"),
], ids=["present", "present-other-role", "absent", "absent-role"])
def test_another_id_is_never_adopted_changed_nor_released(cloud, capsys, args, check_mode):
    run(capsys, dict(BASE, cluster_id=ID_A))
    before, touched = snapshot(cloud), len(cloud.touched)
    result = run(capsys, args, check_mode=check_mode)
    assert result["failed"] is True, result
    assert result["msg"] == (
        "cluster demo on the cloud has id %s (node bm-1 (demo-worker-1) carries it), not this state's %s: it was "
        "made from another state folder. No node was touched. Choose another name, or delete it from the state "
        "folder that made it" % (ID_A, ID_B))
    assert result["other_id"] == ID_A
    assert snapshot(cloud) == before and len(cloud.touched) == touched


def test_nodes_marked_before_ids_are_adopted_and_given_the_id(cloud, capsys):
    run(capsys, BASE)  # no cluster_id: as an older release marked them
    before, touched = snapshot(cloud), len(cloud.touched)
    args = dict(BASE, cluster_id=ID_A)
    check = run(capsys, args, check_mode=True)
    assert check["changed"] is True and check["deployed"] == [] and check["released"] == []
    assert snapshot(cloud) == before and len(cloud.touched) == touched
    result = run(capsys, args)
    assert result["changed"] is True and result["deployed"] == [] and result["released"] == []
    ours = [n for n in cloud.nodes.values() if n.extra]
    assert len(ours) == 2 and all(n.extra["carina_cluster_id"] == ID_A for n in ours)
    assert all(n.provision_state == "active" for n in ours)
    assert run(capsys, args)["changed"] is False
    assert run(capsys, dict(args, cluster_id=ID_B))["failed"] is True
    gone = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert gone["released"] == ["demo-worker-1", "demo-worker-2"]
    assert all(n.extra == {} for n in cloud.nodes.values())


def test_with_no_id_known_a_cluster_with_an_id_is_refused_until_its_id_is_given(cloud, capsys):
    run(capsys, dict(BASE, cluster_id=ID_A))
    before = {n.id: dict(n.extra) for n in cloud.nodes.values()}
    for args in (BASE, ABSENT):
        refused = run(capsys, args)
        assert refused["failed"] and refused["other_id"] == ID_A, refused
        assert "this run knows no id" in refused["msg"] and f"-e carina_cluster_id={ID_A}" in refused["msg"]
    assert {n.id: dict(n.extra) for n in cloud.nodes.values()} == before
    gone = run(capsys, dict(ABSENT, cluster_id=ID_A))
    assert gone["released"] == ["demo-worker-1", "demo-worker-2"]
    assert all(n.extra == {} and n.provision_state == "available" for n in cloud.nodes.values())
    assert cloud.ports == {}
