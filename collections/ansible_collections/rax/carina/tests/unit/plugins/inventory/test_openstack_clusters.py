# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The openstack_clusters inventory on an in-memory cloud."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ansible import constants as C
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import get_docstring

from ansible_collections.rax.carina.plugins.inventory import openstack_clusters

pytest.importorskip("openstack")

NAME = "rax.carina.openstack_clusters"


def load_plugin():
    """The plugin with its documented options registered, as Ansible's plugin loader does it."""
    doc = get_docstring(openstack_clusters.__file__, fragment_loader, collection_name="rax.carina")[0]
    C.config.initialize_plugin_configuration_definitions("inventory", NAME, doc["options"])
    plugin = openstack_clusters.InventoryModule()
    plugin._load_name = NAME
    return plugin


def server(name, cluster, role, fixed, floating=None, *, cluster_id=None):
    addresses = [{"addr": fixed, "version": 4, "OS-EXT-IPS:type": "fixed"}]
    if floating:
        addresses.append({"addr": floating, "version": 4, "OS-EXT-IPS:type": "floating"})
    metadata = {"carina_cluster": cluster, "carina_role": role}
    if cluster_id:
        metadata["carina_cluster_id"] = cluster_id
    return SimpleNamespace(id="id-" + name, name=name, metadata=metadata, addresses={"private": addresses})


@pytest.fixture
def cloud(monkeypatch):
    servers = [
        server("demo-manager-1", "demo", "manager", "198.18.100.11", "198.18.101.11", cluster_id="a" * 32),
        server("demo-worker-1", "demo", "worker", "198.18.100.21"),
        server("other-manager-1", "other", "manager", "198.18.100.31"),
        SimpleNamespace(id="x", name="unrelated", metadata={}, addresses={}),
    ]
    node = SimpleNamespace(id="node-1", name="bm-1", extra={"carina_cluster": "demo", "carina_role": "worker",
                                                            "carina_name": "demo-worker-2",
                                                            "carina_cluster_id": "a" * 32})
    fake = SimpleNamespace(
        compute=SimpleNamespace(servers=lambda details=True: servers),
        baremetal=SimpleNamespace(nodes=lambda details=True, provision_state=None: [node],
                                  list_node_vifs=lambda n: ["port-1"]),
        network=SimpleNamespace(get_port=lambda pid: SimpleNamespace(fixed_ips=[{"ip_address": "198.18.100.22"}])),
    )
    monkeypatch.setattr(openstack_clusters.openstack, "connect", lambda **kw: fake)
    return fake


class Inventory:
    def __init__(self, data):
        self.data = data
        self.hosts = data.hosts

    def get_groups_dict(self):
        return {name: sorted(group.get_hosts_names()) if hasattr(group, "get_hosts_names")
                else sorted(h.name for h in group.get_hosts()) for name, group in self.data.groups.items()}

    def get_host(self, name):
        return self.data.hosts[name]


def inventory(tmp_path, text):
    path = tmp_path / "demo.carina.yml"
    path.write_text(text)
    plugin = load_plugin()
    assert plugin.verify_file(str(path))
    data = InventoryData()
    plugin.parse(data, DataLoader(), str(path), cache=False)
    return Inventory(data)


def test_groups_and_vars(cloud, tmp_path):
    inv = inventory(tmp_path, "plugin: rax.carina.openstack_clusters\ncloud: devstack\nclusters: [demo]\n")
    groups = inv.get_groups_dict()
    assert groups["demo_managers"] == ["demo-manager-1"]
    assert sorted(groups["demo_workers"]) == ["demo-worker-1", "demo-worker-2"]
    assert sorted(groups["demo_nodes"]) == ["demo-manager-1", "demo-worker-1", "demo-worker-2"]
    assert "other_managers" not in groups
    manager = inv.get_host("demo-manager-1").vars
    assert manager["ansible_host"] == "198.18.101.11"
    assert manager["carina_address"] == "198.18.100.11"
    assert manager["carina_role"] == "manager"
    assert inv.get_host("demo-worker-2").vars["ansible_host"] == "198.18.100.22"


def test_the_cluster_id_when_the_host_carries_one(cloud, tmp_path):
    inv = inventory(tmp_path, "plugin: rax.carina.openstack_clusters\ncloud: devstack\nclusters: [demo]\n")
    assert inv.get_host("demo-manager-1").vars["carina_cluster_id"] == "a" * 32
    assert inv.get_host("demo-worker-2").vars["carina_cluster_id"] == "a" * 32
    assert "carina_cluster_id" not in inv.get_host("demo-worker-1").vars  # made before ids


def test_all_clusters_and_keyed_groups(cloud, tmp_path):
    inv = inventory(tmp_path, "plugin: rax.carina.openstack_clusters\nbaremetal: false\n"
                              "keyed_groups:\n  - key: carina_role\n    prefix: role\n")
    groups = inv.get_groups_dict()
    assert groups["other_managers"] == ["other-manager-1"]
    assert sorted(groups["role_manager"]) == ["demo-manager-1", "other-manager-1"]
    assert "demo-worker-2" not in inv.hosts
