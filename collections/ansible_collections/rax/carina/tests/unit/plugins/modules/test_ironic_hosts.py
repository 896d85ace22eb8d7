# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ironic_hosts against an in-memory Ironic and Neutron (no cloud needed)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from ansible_collections.rax.carina.plugins.module_utils import openstack as os_utils
from ansible_collections.rax.carina.plugins.module_utils import ssh
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
    fake.ssh_probes = []  # the addresses the module waited on, in order
    fake.ssh_down = set()  # addresses whose sshd never answers
    monkeypatch.setattr(ssh, "sshd_answers", lambda address: fake.ssh_probes.append(address) or
                        address not in fake.ssh_down)
    monkeypatch.setattr(ssh.time, "sleep", lambda s: None)
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


# -- failed nodes -------------------------------------------------------------------------------
def warned(result):
    """The texts of the result's warnings (plain strings, or the event summaries of newer ansible-core)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def fail_node(cloud, name, **state):
    node = next(n for n in cloud.nodes.values() if n.extra.get("carina_name") == name)
    for key, value in state.items():
        setattr(node, key, value)
    return node


def test_a_node_in_maintenance_is_replaced_under_its_name_and_left_to_the_operator(cloud, capsys):
    run(capsys, BASE)
    broken = fail_node(cloud, "demo-worker-1", is_maintenance=True, maintenance_reason="disk failed")
    check = run(capsys, BASE, check_mode=True)
    assert check["changed"] is True and check["deployed"] == ["demo-worker-1"]
    assert check["replaced"] == [{"name": "demo-worker-1", "node": broken.id, "reason": "in maintenance: disk failed"}]
    assert broken.extra["carina_name"] == "demo-worker-1" and len(cloud.ports) == 2
    result = run(capsys, BASE)
    assert result["changed"] is True and result["deployed"] == ["demo-worker-1"], result
    assert result["replaced"][0]["node"] == broken.id
    assert any("bm-1 (demo-worker-1 of cluster demo) is in maintenance: disk failed" in w for w in warned(result))
    hosts = {h["name"]: h["node"] for h in result["hosts"]}
    assert sorted(hosts) == ["demo-worker-1", "demo-worker-2"] and hosts["demo-worker-1"] != broken.id
    # The failed node keeps its state for the operator; nothing of the cluster is left on it in Ironic.
    assert broken.provision_state == "active" and broken.extra == {} and broken.vifs == []
    assert len(cloud.ports) == 2
    again = run(capsys, BASE)
    assert again["changed"] is False and again["replaced"] == []


def test_a_node_whose_deploy_failed_is_undeployed_and_replaced(cloud, capsys):
    run(capsys, dict(BASE, count=1))
    broken = fail_node(cloud, "demo-worker-1", provision_state="deploy failed", last_error="timed out")
    result = run(capsys, dict(BASE, count=1))
    assert result["replaced"] == [{"name": "demo-worker-1", "node": broken.id,
                                   "reason": "in provision state deploy failed: timed out"}]
    assert not any("deploy failed" in w for w in warned(result))
    assert broken.provision_state == "available" and broken.extra == {}  # undeployed (the fake cleans at once)
    assert [h["name"] for h in result["hosts"]] == ["demo-worker-1"]


def test_without_a_free_node_a_failed_one_is_not_touched(cloud, capsys):
    run(capsys, dict(BASE, count=3))
    broken = fail_node(cloud, "demo-worker-2", is_maintenance=True, maintenance_reason=None)
    before, touched = snapshot(cloud), len(cloud.touched)
    result = run(capsys, dict(BASE, count=3))
    assert result["failed"] is True
    assert result["msg"] == ("not enough bare metal nodes: 1 worker node(s) needed for demo (demo-worker-2 replacing "
                             "failed nodes), 0 available in resource class baremetal; no node was touched")
    assert snapshot(cloud) == before and len(cloud.touched) == touched
    # Giving the failed host back instead takes the node out without waiting for an undeploy.
    fewer = run(capsys, dict(BASE, count=2, remove=["demo-worker-2"]))
    assert fewer["released"] == ["demo-worker-2"] and broken.extra == {} and broken.provision_state == "active"
    assert any("bm-2 (demo-worker-2 of cluster demo) is in maintenance: no reason given" in w for w in warned(fewer))


def test_deployed_nodes_are_waited_for_until_their_sshd_answers(cloud, capsys):
    first = run(capsys, dict(BASE, count=1))
    assert cloud.ssh_probes == [first["hosts"][0]["address"]]
    cloud.ssh_probes.clear()
    grown = run(capsys, BASE)
    assert cloud.ssh_probes == [grown["hosts"][1]["address"]]  # only the node this run deployed
    cloud.ssh_probes.clear()
    assert run(capsys, BASE)["changed"] is False
    assert cloud.ssh_probes == []


def test_a_node_whose_sshd_never_answers_fails_the_run_and_stays_deployed(cloud, capsys):
    cloud.ssh_down.add("198.18.100.21")
    result = run(capsys, dict(BASE, count=1, timeout=0))
    assert result["failed"] is True
    assert result["msg"] == ("nodes demo-worker-1 (198.18.100.21) are active but their sshd did not answer within "
                             "0s; they may still be booting (run again to go on with them), or this controller "
                             "cannot reach their network")
    assert [n.provision_state for n in cloud.nodes.values()].count("active") == 1
    cloud.ssh_down.clear()
    again = run(capsys, dict(BASE, count=1))
    assert again["changed"] is False and again["hosts"][0]["name"] == "demo-worker-1"
