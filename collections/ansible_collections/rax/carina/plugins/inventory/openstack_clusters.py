# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
name: openstack_clusters
short_description: Hosts of carina clusters on an OpenStack cloud, grouped by cluster and role
version_added: 0.1.0
author:
  - rax.carina developers (@rax-carina)
description:
  - Finds the hosts of carina clusters from the cloud's own records - Nova servers with the
    metadata C(carina_cluster)/C(carina_role), and Ironic nodes with those keys in C(extra) - so
    that an inventory exists even when no local state does.
  - Groups C(<cluster>_masters), C(<cluster>_workers), C(<cluster>_nodes) (masters and
    workers) and C(carina_<cluster>), with C(-) in names replaced by C(_), as the playbooks use.
  - Sets C(ansible_host) (the floating IP when there is one, else the fixed address),
    C(carina_address) (the fixed address), C(carina_role), C(carina_cluster) and C(openstack_id), and
    C(carina_cluster_id) (the cluster's unique id) for hosts whose metadata or C(extra) carries one.
  - The inventory file must end in C(carina.yml) or C(carina.yaml).
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin.
    type: str
    required: true
    choices: [rax.carina.openstack_clusters]
  cloud:
    description: Named cloud of C(clouds.yaml); defaults to E(OS_CLOUD).
    type: str
  clusters:
    description: Only these clusters; all when empty.
    type: list
    elements: str
    default: []
  baremetal:
    description: Also look at Ironic nodes (needs a role that may list nodes).
    type: bool
    default: true
  ansible_user:
    description: C(ansible_user) of the hosts.
    type: str
    default: root
requirements:
  - openstacksdk >= 1.0
"""

EXAMPLES = r"""
# inventories/openstack/carina.yml
plugin: rax.carina.openstack_clusters
cloud: devstack
clusters: [demo]
"""

from ansible.errors import AnsibleError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible_collections.rax.carina.plugins.module_utils.openstack import server_addresses

try:
    import openstack
    from openstack import exceptions as os_exc

    HAS_SDK = True
except ImportError:
    HAS_SDK = False

META_CLUSTER = "carina_cluster"
META_ROLE = "carina_role"
META_NAME = "carina_name"
META_CLUSTER_ID = "carina_cluster_id"


def group_name(cluster, suffix):
    return "%s_%s" % (cluster.replace("-", "_"), suffix)


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "rax.carina.openstack_clusters"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("carina.yml", "carina.yaml"))

    def connect(self):
        if not HAS_SDK:
            raise AnsibleError("the rax.carina.openstack_clusters inventory needs openstacksdk")
        try:
            return openstack.connect(cloud=self.get_option("cloud"))
        except os_exc.SDKException as exc:
            raise AnsibleError("cannot connect to cloud %s: %s" % (self.get_option("cloud"), exc)) from exc

    def hosts_of(self, conn):
        """(name, cluster, role, fixed address, public address, id, cluster id) of every cluster host."""
        wanted = set(self.get_option("clusters") or [])
        for server in conn.compute.servers(details=True):
            meta = server.metadata or {}
            cluster = meta.get(META_CLUSTER)
            if cluster and (not wanted or cluster in wanted):
                fixed, floating = server_addresses(server)
                yield (server.name, cluster, meta.get(META_ROLE, ""), fixed, floating or fixed, server.id,
                       meta.get(META_CLUSTER_ID) or "")
        if not self.get_option("baremetal"):
            return
        try:
            nodes = list(conn.baremetal.nodes(details=True, provision_state="active"))
        except (os_exc.SDKException, AttributeError):
            return  # no bare metal service, or not allowed to list nodes
        for node in nodes:
            extra = node.extra or {}
            cluster = extra.get(META_CLUSTER)
            if not cluster or (wanted and cluster not in wanted):
                continue
            address = ""
            for vif in conn.baremetal.list_node_vifs(node):
                port = conn.network.get_port(vif)
                if port is not None and port.fixed_ips:
                    address = port.fixed_ips[0]["ip_address"]
                    break
            yield (extra.get(META_NAME, node.name), cluster, extra.get(META_ROLE, ""), address, address, node.id,
                   extra.get(META_CLUSTER_ID) or "")

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        conn = self.connect()
        for name, cluster, role, fixed, public, ident, cluster_id in sorted(self.hosts_of(conn)):
            groups = [group_name("carina", cluster)]
            # master, worker: the generic roles hosts carry; manager: hosts of clusters made before them.
            if role in ("master", "worker", "manager"):
                groups += [group_name(cluster, role + "s"), group_name(cluster, "nodes")]
            elif role:
                groups.append(group_name(cluster, role))
            for group in groups:
                self.inventory.add_group(group)
                self.inventory.add_host(name, group=group)
            hostvars = dict(ansible_host=public, ansible_user=self.get_option("ansible_user"), carina_address=fixed,
                            carina_role=role, carina_cluster=cluster, openstack_id=ident)
            if cluster_id:
                hostvars["carina_cluster_id"] = cluster_id
            for key, value in hostvars.items():
                self.inventory.set_variable(name, key, value)
            strict = self.get_option("strict")
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)
