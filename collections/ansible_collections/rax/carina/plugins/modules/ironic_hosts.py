#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ironic_hosts
short_description: Hosts of one role of a cluster as Ironic bare metal nodes, reconciled to a count
version_added: 0.1.0
description:
  - Keeps O(count) bare metal nodes deployed for one role of a cluster. Nodes are picked among the
    C(available) nodes of O(resource_class); each gets a Neutron port on O(network) attached as
    its VIF, the image in its C(instance_info), and a config drive carrying the SSH key and the
    host name, then is deployed (C(active)).
  - The nodes a cluster uses are marked in their C(extra) field (C(carina_cluster), C(carina_role),
    C(carina_name), C(carina_port)), so that a later run or a delete finds them even when local state is gone.
  - When there are not enough available nodes, the module fails before any node is touched.
  - Removal (O(remove) first, then the highest numbers; or O(state=absent)) undeploys the node
    (C(deleted)), waits until it is C(available) again, detaches the VIF, deletes the port and
    clears the marks.
  - A node of the cluster that failed (in maintenance, set by an operator or by Ironic when it lost the
    node's power; or in C(deploy failed), C(error), C(clean failed), C(rescue failed) or C(service failed))
    no longer serves the cluster. With O(state=present) it is replaced under the same name by a free node
    (the module fails before touching any node when there are not enough), after it is taken out of the
    cluster - its VIF detached, its port deleted, its marks cleared. A node in C(deploy failed) or C(error)
    is also undeployed (C(deleted), not waited for; cleaning wipes its disk); any other is left in its state
    for the operator, with a warning that its disk may still hold the cluster's data. A failed node that
    O(remove) or a lower count gives back is taken out the same way.
  - With a O(cluster_id), the nodes' C(extra) carries it too (C(carina_cluster_id)), and the ports'
    descriptions end in C(id <cluster_id>). Nodes marked with the cluster's name but another id (a cluster
    of the same name made from another state folder) make the module fail before any node is touched,
    with either state and in check mode. Nodes marked before ids are the cluster's, and are given the id.
author:
  - rax.carina developers (@rax-carina)
extends_documentation_fragment:
  - rax.carina.openstack
attributes:
  check_mode:
    support: full
    description: Reports what would be deployed or undeployed; only reads the cloud.
  diff_mode:
    support: none
    description: No diff.
  idempotent:
    support: full
    description: A second run with the same count deploys and undeploys nothing.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
options:
  cluster:
    description: Name of the cluster; hosts are named C(<cluster>-<role>-N).
    type: str
    required: true
  cluster_id:
    description:
      - The cluster's unique id (what M(rax.carina.cluster_lock) returns), written into the nodes' C(extra)
        as C(carina_cluster_id) (removed with the other marks when a node is released) and into the
        descriptions of their ports.
      - Nodes marked with the cluster's name and another id are never adopted, changed nor released - the
        module fails naming both ids. Nodes with no id (marked before ids) are adopted and given the id.
      - Empty (an unknown id, for example a delete whose state is gone) finds the cluster by its name, but
        only objects with no id (made by a release without ids); one with an id is refused, and the message
        names the id to give.
    type: str
    default: ""
    version_added: 0.1.0
  role:
    description:
      - Role of these hosts (for example V(worker)). With O(state=absent), omitting it releases
        every node of the cluster.
    type: str
  state:
    description: V(present) reconciles to O(count); V(absent) releases.
    type: str
    choices: [present, absent]
    default: present
  count:
    description: Number of nodes of the role.
    type: int
    default: 1
  remove:
    description: Hosts (by name) to release first when the count goes down.
    type: list
    elements: str
    default: []
  names:
    description:
      - The role's hosts by name, as the cluster's plan names them (the rax.carina playbooks pass
        them, so that host naming lives in one place). Nodes of the role with other names are
        released, missing names are deployed. Overrides O(count) and O(remove).
    type: list
    elements: str
  resource_class:
    description: Resource class of the nodes to pick.
    type: str
    default: baremetal
  image:
    description: Glance image (name or id) to deploy. Required to deploy nodes.
    type: str
  root_gb:
    description: Size of the root partition.
    type: int
    default: 10
  network:
    description: Network (name or id) of the nodes' ports. Required to deploy nodes.
    type: str
  public_key:
    description: OpenSSH public key put into the config drive. Required to deploy nodes.
    type: str
  wait_ssh:
    description:
      - With O(wait), also wait (within O(timeout)) until the nodes this run deploys answer with an SSH
        banner on port 22 at their address, since an C(active) node is still booting and the plays after this
        module would find it unreachable.
      - Turn it off when the controller reaches the nodes only through a jump host.
    type: bool
    default: true
    version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Two workers of cluster demo on bare metal
  rax.carina.ironic_hosts:
    cloud: devstack-admin
    cluster: demo
    role: worker
    count: 2
    image: carina-host
    network: private
    public_key: "{{ lookup('ansible.builtin.file', '~/.carina/clusters/demo/ssh/id_ed25519.pub') }}"
  register: workers
"""

RETURN = r"""
hosts:
  description: The role's nodes after the run, by number.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Host name.
      type: str
      sample: demo-worker-1
    node:
      description: Ironic node id.
      type: str
    role:
      description: Role.
      type: str
    address:
      description: Address of the node's port.
      type: str
      sample: 198.18.100.21
    provision_state:
      description: Ironic provision state.
      type: str
      sample: active
deployed:
  description: Names of the hosts deployed by this run.
  returned: always
  type: list
  elements: str
released:
  description: Names of the hosts undeployed and given back.
  returned: always
  type: list
  elements: str
replaced:
  description: The failed nodes taken out of the cluster; a host of the same name is deployed on another node.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Host name.
      type: str
      sample: demo-worker-1
    node:
      description: Id of the failed Ironic node.
      type: str
    reason:
      description: Why the node no longer serves the cluster.
      type: str
      sample: "in maintenance: disk failed"
other_id:
  description: The id that the cluster's name carries on the cloud, when it is not O(cluster_id) (the module failed).
  returned: on failure, when the cluster's name belongs to another cluster
  type: str
"""

from ansible_collections.rax.carina.plugins.module_utils.openstack import (
    META_CLUSTER,
    META_CLUSTER_ID,
    META_ROLE,
    CarinaOpenStackModule,
    number_of,
)

META_NAME = "carina_name"
META_PORT = "carina_port"
MARKS = (META_CLUSTER, META_CLUSTER_ID, META_ROLE, META_NAME, META_PORT)
# Where a deployed node ends when it fails; from the first two, undeploying (deleted) is allowed.
UNDEPLOYABLE_FAILURES = ("deploy failed", "error")
FAILED_STATES = (*UNDEPLOYABLE_FAILURES, "clean failed", "rescue failed", "unrescue failed", "service failed")
ARGUMENT_SPEC = dict(
    cluster=dict(type="str", required=True),
    cluster_id=dict(type="str", default=""),
    role=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    count=dict(type="int", default=1),
    remove=dict(type="list", elements="str", default=[]),
    names=dict(type="list", elements="str"),
    resource_class=dict(type="str", default="baremetal"),
    image=dict(type="str"),
    root_gb=dict(type="int", default=10),
    network=dict(type="str"),
    public_key=dict(type="str", no_log=False),
    wait_ssh=dict(type="bool", default=True),
)
MODULE_KWARGS = dict(required_if=[("state", "present", ["role"])])


class IronicHosts(CarinaOpenStackModule):
    def __init__(self):
        super().__init__(ARGUMENT_SPEC, **MODULE_KWARGS)
        self.cluster = self.params["cluster"]
        self.cluster_id = self.params["cluster_id"]
        self.role = self.params["role"]
        self.result.update(hosts=[], deployed=[], released=[], replaced=[])

    def ours(self, role=None):
        """The cluster's nodes of `role` (all for None), after failing - before any node is touched - when a
        node marked with the cluster's name carries another id (a cluster of that name made from another
        state folder)."""
        self.check_cluster_id(self.cluster_id)
        nodes = [n for n in self.conn.baremetal.nodes(details=True)
                 if (n.extra or {}).get(META_CLUSTER) == self.cluster]
        found = {}
        for node in nodes:
            extra = node.extra or {}
            what = "node %s (%s)" % (node.name or node.id, extra.get(META_NAME, ""))
            found.setdefault(extra.get(META_CLUSTER_ID) or "", what)
        self.refuse_other_id(self.cluster, self.cluster_id, found, touched="No node was touched")
        nodes = [n for n in nodes if role is None or (n.extra or {}).get(META_ROLE) == role]
        return sorted(nodes, key=lambda n: number_of((n.extra or {}).get(META_NAME)))

    def give_id(self, nodes):
        """Write the cluster's id into the extra of its nodes marked before ids (idempotent)."""
        for node in nodes if self.cluster_id else ():
            if (node.extra or {}).get(META_CLUSTER_ID):
                continue
            self.result["changed"] = True
            if not self.check_mode:
                self.conn.baremetal.patch_node(node, [{"op": "add", "path": "/extra/%s" % META_CLUSTER_ID,
                                                       "value": self.cluster_id}])

    def port_of(self, node):
        """The node's port: the one recorded in extra (network interfaces such as noop keep no VIF list)."""
        recorded = (node.extra or {}).get(META_PORT)
        if recorded:
            port = self.conn.network.get_port(recorded)
            if port is not None:
                return port
        for vif in self.conn.baremetal.list_node_vifs(node):
            port = self.conn.network.get_port(vif)
            if port is not None:
                return port
        return None

    def describe(self, node):
        port = self.port_of(node)
        address = port.fixed_ips[0]["ip_address"] if port is not None and port.fixed_ips else ""
        return dict(name=(node.extra or {}).get(META_NAME, ""), node=node.id, role=self.role, address=address,
                    provision_state=node.provision_state)

    def deploy(self, nodes_names, image, network):
        p = self.params
        started = []
        for node, name in nodes_names:
            description = "carina %s %s" % (self.cluster, name)
            if self.cluster_id:
                description += " id %s" % self.cluster_id
            port = self.conn.network.create_port(network_id=network.id, name=name, device_id=node.id,
                                                 device_owner="baremetal:none", description=description)
            marks = {META_CLUSTER: self.cluster, META_ROLE: self.role, META_NAME: name, META_PORT: port.id}
            if self.cluster_id:
                marks[META_CLUSTER_ID] = self.cluster_id
            self.conn.baremetal.patch_node(node, [{"op": "add", "path": "/extra/%s" % k, "value": v}
                                                  for k, v in marks.items()])
            self.conn.baremetal.attach_vif_to_node(node, port.id)
            self.conn.baremetal.patch_node(node, [
                {"op": "add", "path": "/instance_info/image_source", "value": image.id},
                {"op": "add", "path": "/instance_info/root_gb", "value": p["root_gb"]},
                {"op": "add", "path": "/instance_info/display_name", "value": name},
            ])
            config_drive = {"meta_data": {"uuid": node.id, "hostname": name, "name": name,
                                          "public_keys": {"carina": p["public_key"]}}}
            self.conn.baremetal.set_node_provision_state(node, "active", config_drive=config_drive, wait=False)
            started.append(node)
        if p["wait"] and started:
            self.conn.baremetal.wait_for_nodes_provision_state(started, "active", timeout=p["timeout"])

    def take_out(self, node, reason):
        """A failed node leaves the cluster: VIF, port and marks go; it is undeployed when Ironic allows it from
        its state, else left to the operator."""
        name = (node.extra or {}).get(META_NAME, "")
        if not node.is_maintenance and node.provision_state in UNDEPLOYABLE_FAILURES:
            self.conn.baremetal.set_node_provision_state(node, "deleted", wait=False)
        else:
            self.ansible.warn("node %s (%s of cluster %s) is %s: it was taken out of the cluster and left as it is "
                              "for the operator; until it is cleaned, its disk may still hold the cluster's data"
                              % (node.name or node.id, name, self.cluster, reason))
        self.unmark(node)

    def unmark(self, node):
        """Nothing of the cluster is left on the node in the cloud: its VIF, its port and its marks go."""
        port = self.port_of(node)
        for vif in self.conn.baremetal.list_node_vifs(node):
            self.conn.baremetal.detach_vif_from_node(node, vif, ignore_missing=True)
        if port is not None:
            self.conn.network.delete_port(port, ignore_missing=True)
        self.conn.baremetal.patch_node(node, [{"op": "remove", "path": "/extra/%s" % k}
                                              for k in MARKS if k in (node.extra or {})])

    def release(self, nodes):
        failed = [n for n in nodes if failure_of(n)]
        for node in failed:
            self.take_out(node, failure_of(node))
        nodes = [n for n in nodes if n not in failed]
        for node in nodes:
            if node.provision_state not in ("available", "manageable", "enroll"):
                self.conn.baremetal.set_node_provision_state(node, "deleted", wait=False)
        if nodes:
            self.conn.baremetal.wait_for_nodes_provision_state(
                [n for n in nodes if n.provision_state not in ("available", "manageable", "enroll")],
                "available", timeout=self.params["timeout"])
        for node in nodes:
            self.unmark(node)

    def pick(self, wanted, replacing=()):
        """Check the inputs and choose free nodes for `wanted` hosts (`replacing`: those of them that replace
        failed nodes); fail before touching any."""
        p = self.params
        for option in ("image", "network", "public_key"):
            if not p[option]:
                self.fail("%s is required to deploy %s nodes of cluster %s" % (option, self.role, self.cluster))
        image = self.conn.image.find_image(p["image"], ignore_missing=True)
        if image is None:
            self.fail("image %s not found" % p["image"])
        network = self.conn.network.find_network(p["network"], ignore_missing=True)
        if network is None:
            self.fail("network %s not found" % p["network"])
        free = [n for n in self.conn.baremetal.nodes(details=True, provision_state="available",
                                                     resource_class=p["resource_class"])
                if not n.instance_id and not (n.extra or {}).get(META_CLUSTER) and not n.is_maintenance]
        if len(free) < len(wanted):
            why = " (%s replacing failed nodes)" % ", ".join(replacing) if replacing else ""
            self.fail("not enough bare metal nodes: %d %s node(s) needed for %s%s, %d available in resource "
                      "class %s; no node was touched" % (len(wanted), self.role, self.cluster, why, len(free),
                                                         p["resource_class"]))
        free = sorted(free, key=lambda n: n.name or n.id)
        return [(free[i], name) for i, name in enumerate(wanted)], image, network

    def present(self):
        p = self.params
        if not self.conn.has_service("baremetal"):
            self.fail("the cloud has no bare metal (Ironic) service; use server type vm for %s" % self.role)
        if p["count"] < 0:
            self.fail("count=%d: must be 0 or more" % p["count"])
        existing = self.ours(self.role)
        names = [(n.extra or {}).get(META_NAME) for n in existing]
        unknown = [n for n in p["remove"] if n not in names]
        if unknown:
            self.fail("cannot remove %s: not %s hosts of cluster %s (%s)"
                      % (", ".join(unknown), self.role, self.cluster, ", ".join(names) or "none"))
        keep = [n for n in existing if (n.extra or {}).get(META_NAME) not in p["remove"]]
        surplus = [n for n in existing if (n.extra or {}).get(META_NAME) in p["remove"]]
        if len(keep) > p["count"]:
            surplus += keep[p["count"]:]
            keep = keep[:p["count"]]
        start = max([number_of(n) for n in names], default=0) + 1
        wanted = ["%s-%s-%d" % (self.cluster, self.role, i) for i in range(start, start + p["count"] - len(keep))]
        if p["names"] is not None:
            keep = [n for n in existing if (n.extra or {}).get(META_NAME) in p["names"]]
            surplus = [n for n in existing if (n.extra or {}).get(META_NAME) not in p["names"]]
            wanted = [name for name in p["names"] if name not in names]
        # A failed node is replaced under its name by a free one.
        broken = [(n, failure_of(n)) for n in keep if failure_of(n)]
        keep = [n for n in keep if not failure_of(n)]
        replacing = [(n.extra or {}).get(META_NAME) for n, _reason in broken]
        wanted = replacing + wanted

        picked, image, network = self.pick(wanted, replacing) if wanted else ([], None, None)

        self.give_id(keep)
        if broken:
            self.result["changed"] = True
            self.result["replaced"] = [dict(name=(n.extra or {}).get(META_NAME), node=n.id, reason=reason)
                                       for n, reason in broken]
            for node, reason in broken if not self.check_mode else ():
                self.take_out(node, reason)
        if surplus:
            self.result["changed"] = True
            self.result["released"] = [(n.extra or {}).get(META_NAME) for n in surplus]
            if not self.check_mode:
                self.release(surplus)
        if picked:
            self.result["changed"] = True
            self.result["deployed"] = wanted
        if self.check_mode:
            self.result["hosts"] = [self.describe(n) for n in keep] + [
                dict(name=name, node=node.id, role=self.role, address="", provision_state="available")
                for node, name in picked]
            return
        try:
            self.deploy(picked, image, network)
        except Exception:
            self.release([self.conn.baremetal.get_node(node.id) for node, _name in picked])
            raise
        nodes = [self.conn.baremetal.get_node(n.id) for n in keep] + [
            self.conn.baremetal.get_node(node.id) for node, _name in picked]
        self.result["hosts"] = [self.describe(n) for n in nodes]
        self.wait_for_sshd("nodes", {h["name"]: h["address"] for h in self.result["hosts"] if h["name"] in wanted},
                           "active", "this controller cannot reach their network")

    def absent(self):
        if not self.conn.has_service("baremetal"):
            return  # a cloud without Ironic has no node of ours
        nodes = self.ours(self.role)
        if not nodes:
            return
        self.result["changed"] = True
        self.result["released"] = [(n.extra or {}).get(META_NAME) for n in nodes]
        if not self.check_mode:
            self.release(nodes)


def failure_of(node):
    """Why a node of the cluster no longer serves it, or None when it does."""
    if node.is_maintenance:
        return "in maintenance: %s" % (getattr(node, "maintenance_reason", None) or getattr(node, "fault", None)
                                       or "no reason given")
    if node.provision_state in FAILED_STATES:
        error = getattr(node, "last_error", None)
        return "in provision state %s%s" % (node.provision_state, ": %s" % error if error else "")
    return None


def main():
    IronicHosts()()


if __name__ == "__main__":
    main()
