#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nova_hosts
short_description: Hosts of one role of a cluster as Nova servers, reconciled to a count
version_added: 0.1.0
description:
  - Keeps O(count) Nova servers named C(<cluster>-<role>-N) for one role of a cluster, found by
    their metadata C(carina_cluster) and C(carina_role), so that a later run (or a delete) finds
    them even when local state is gone.
  - Around them it keeps the cluster's key pair (from O(public_key)), a security group opening
    exactly O(ports), and a server group with a (soft-)anti-affinity policy.
  - Missing servers are created in parallel and waited for until ACTIVE; surplus servers (the
    named O(remove) first, then the highest numbers) are deleted with their floating IPs.
    Servers of this run that end in ERROR are deleted again, and the module fails naming them
    and Nova's fault message.
  - Everything is checked (flavor, image, network, external network, quota errors) before a
    server is created.
  - With O(state=absent) and no O(role), removes every server of the cluster, their floating
    IPs, the security group, the server group and the key pair.
author:
  - rax.carina developers (@rax-carina)
extends_documentation_fragment:
  - rax.carina.openstack
attributes:
  check_mode:
    support: full
    description: Reports what would be created or deleted; only reads the cloud.
  diff_mode:
    support: none
    description: No diff.
  idempotent:
    support: full
    description: A second run with the same count creates and deletes nothing.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
options:
  cluster:
    description: Name of the cluster; servers are named C(<cluster>-<role>-N).
    type: str
    required: true
  role:
    description:
      - Role of these hosts (for example V(manager) or V(worker)).
      - Required with O(state=present). With O(state=absent), omitting it removes the whole cluster.
    type: str
  state:
    description: V(present) reconciles to O(count); V(absent) removes.
    type: str
    choices: [present, absent]
    default: present
  count:
    description: Number of servers of the role.
    type: int
    default: 1
  remove:
    description: Servers (by name) to delete first when the count goes down.
    type: list
    elements: str
    default: []
  flavor:
    description: Flavor name or id. Required to create servers.
    type: str
  image:
    description: Image name or id. Required to create servers.
    type: str
  network:
    description: Network name or id the servers are attached to. Required to create servers.
    type: str
  key_name:
    description: Name of the key pair; created from O(public_key) when missing. Defaults to C(carina-<cluster>).
    type: str
  public_key:
    description: OpenSSH public key of the key pair.
    type: str
  security_group:
    description: Name of the cluster's security group. Defaults to C(carina-<cluster>).
    type: str
  ports:
    description: Ingress rules of the security group (egress stays open).
    type: list
    elements: dict
    default: []
    suboptions:
      protocol:
        description: IP protocol.
        type: str
        choices: [tcp, udp, icmp]
        default: tcp
      port:
        description: Port, or C(min-max) range, as a string (for example V(2376) or V(7946)).
        type: str
      remote_ip_prefix:
        description: Source CIDR.
        type: str
        default: 0.0.0.0/0
  server_group_policy:
    description: Scheduling policy of the cluster's server group; V(none) makes no group.
    type: str
    choices: [soft-anti-affinity, anti-affinity, affinity, soft-affinity, none]
    default: soft-anti-affinity
  floating_ip:
    description: Give each server a floating IP from O(external_network).
    type: bool
    default: false
  external_network:
    description: Network to take floating IPs from. Required with O(floating_ip=true).
    type: str
  metadata:
    description: More metadata for the servers.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Three managers of cluster demo on Nova
  rax.carina.nova_hosts:
    cloud: devstack
    cluster: demo
    role: manager
    count: 3
    flavor: m1.small
    image: carina-host
    network: private
    public_key: "{{ lookup('ansible.builtin.file', '~/.carina/clusters/demo/ssh/id_ed25519.pub') }}"
    ports:
      - {port: "22"}
      - {port: "2376"}
      - {port: "2377", remote_ip_prefix: 198.18.100.0/24}
      - {port: "7946", remote_ip_prefix: 198.18.100.0/24}
      - {port: "7946", protocol: udp, remote_ip_prefix: 198.18.100.0/24}
      - {port: "4789", protocol: udp, remote_ip_prefix: 198.18.100.0/24}
  register: managers

- name: Remove everything cluster demo owns on Nova and Neutron
  rax.carina.nova_hosts:
    cloud: devstack
    cluster: demo
    state: absent
"""

RETURN = r"""
hosts:
  description: The role's servers after the run, by number.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Server name.
      type: str
      sample: demo-manager-1
    id:
      description: Server id (empty in check mode for a new server).
      type: str
    role:
      description: Role.
      type: str
    address:
      description: Fixed IPv4 address.
      type: str
      sample: 198.18.100.12
    floating_ip:
      description: Floating IP, if any.
      type: str
    status:
      description: Nova status.
      type: str
      sample: ACTIVE
created:
  description: Names of the servers created.
  returned: always
  type: list
  elements: str
removed:
  description: Names of the servers (and, for a whole cluster, other resources) deleted.
  returned: always
  type: list
  elements: str
security_group:
  description: Id of the security group.
  returned: when state is present
  type: str
server_group:
  description: Id of the server group (empty for policy none).
  returned: when state is present
  type: str
"""

import re

from ansible_collections.rax.carina.plugins.module_utils.openstack import (
    META_CLUSTER,
    META_ROLE,
    CarinaOpenStackModule,
    number_of,
    server_addresses,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")


ARGUMENT_SPEC = dict(
    cluster=dict(type="str", required=True),
    role=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    count=dict(type="int", default=1),
    remove=dict(type="list", elements="str", default=[]),
    flavor=dict(type="str"),
    image=dict(type="str"),
    network=dict(type="str"),
    key_name=dict(type="str", no_log=False),
    public_key=dict(type="str", no_log=False),
    security_group=dict(type="str"),
    ports=dict(type="list", elements="dict", default=[], options=dict(
        protocol=dict(type="str", choices=["tcp", "udp", "icmp"], default="tcp"),
        port=dict(type="str"),
        remote_ip_prefix=dict(type="str", default="0.0.0.0/0"),
    )),
    server_group_policy=dict(type="str", default="soft-anti-affinity",
                             choices=["soft-anti-affinity", "anti-affinity", "affinity", "soft-affinity", "none"]),
    floating_ip=dict(type="bool", default=False),
    external_network=dict(type="str"),
    metadata=dict(type="dict", default={}),
)
MODULE_KWARGS = dict(required_if=[("state", "present", ["role"]), ("floating_ip", True, ["external_network"])])


class NovaHosts(CarinaOpenStackModule):
    def __init__(self):
        super().__init__(ARGUMENT_SPEC, **MODULE_KWARGS)
        p = self.params
        self.cluster = p["cluster"]
        self.role = p["role"]
        self.key_name = p["key_name"] or "carina-%s" % self.cluster
        self.sg_name = p["security_group"] or "carina-%s" % self.cluster
        self.sg_group_name = "carina-%s" % self.cluster
        self.result.update(hosts=[], created=[], removed=[])

    # -- reading ----------------------------------------------------------------------------
    def servers(self, role=None):
        found = []
        for server in self.conn.compute.servers(details=True):
            meta = server.metadata or {}
            if meta.get(META_CLUSTER) == self.cluster and (role is None or meta.get(META_ROLE) == role):
                found.append(server)
        return sorted(found, key=lambda s: number_of(s.name))

    def describe(self, server):
        fixed, floating = server_addresses(server)
        return dict(name=server.name, id=server.id, role=self.role, address=fixed, floating_ip=floating,
                    status=server.status)

    # -- validation -------------------------------------------------------------------------
    def resolve(self, creating):
        """Look up flavor, image, networks before anything is created; fail naming what is missing."""
        p = self.params
        found = {}
        if not creating:
            return found
        for option in ("flavor", "image", "network"):
            if not p[option]:
                self.fail("%s is required to create %s servers of cluster %s" % (option, self.role, self.cluster))
        found["flavor"] = self.conn.compute.find_flavor(p["flavor"], ignore_missing=True)
        if found["flavor"] is None:
            names = sorted(f.name for f in self.conn.compute.flavors())
            self.fail("flavor %s not found; the cloud has: %s" % (p["flavor"], ", ".join(names)))
        found["image"] = self.conn.image.find_image(p["image"], ignore_missing=True)
        if found["image"] is None:
            self.fail("image %s not found; upload it to Glance or choose another image" % p["image"])
        found["network"] = self.conn.network.find_network(p["network"], ignore_missing=True)
        if found["network"] is None:
            self.fail("network %s not found; choose one of the project's networks" % p["network"])
        if p["floating_ip"]:
            found["external"] = self.conn.network.find_network(p["external_network"], ignore_missing=True)
            if found["external"] is None:
                self.fail("external network %s not found" % p["external_network"])
        if self.conn.compute.find_keypair(self.key_name, ignore_missing=True) is None and not p["public_key"]:
            self.fail("key pair %s does not exist; give public_key to create it" % self.key_name)
        return found

    # -- the cluster's shared resources -----------------------------------------------------
    def ensure_keypair(self):
        if self.conn.compute.find_keypair(self.key_name, ignore_missing=True) is not None:
            return
        self.result["changed"] = True
        if not self.check_mode:
            self.conn.compute.create_keypair(name=self.key_name, public_key=self.params["public_key"])

    def ensure_security_group(self):
        sg = self.conn.network.find_security_group(self.sg_name, ignore_missing=True)
        if sg is None:
            self.result["changed"] = True
            if self.check_mode:
                return ""
            sg = self.conn.network.create_security_group(
                name=self.sg_name, description="carina cluster %s" % self.cluster)
        have = {(r.protocol, r.port_range_min, r.port_range_max, r.remote_ip_prefix)
                for r in self.conn.network.security_group_rules(security_group_id=sg.id) if r.direction == "ingress"}
        for rule in self.params["ports"]:
            low, high = port_range(rule["port"], rule["protocol"])
            key = (rule["protocol"], low, high, rule["remote_ip_prefix"])
            if key in have:
                continue
            self.result["changed"] = True
            if not self.check_mode:
                self.conn.network.create_security_group_rule(
                    security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol=rule["protocol"],
                    port_range_min=low, port_range_max=high, remote_ip_prefix=rule["remote_ip_prefix"])
        return sg.id

    def ensure_server_group(self):
        policy = self.params["server_group_policy"]
        if policy == "none":
            return ""
        for group in self.conn.compute.server_groups():
            if group.name == self.sg_group_name:
                return group.id
        self.result["changed"] = True
        if self.check_mode:
            return ""
        return self.conn.compute.create_server_group(name=self.sg_group_name, policy=policy).id

    # -- servers ----------------------------------------------------------------------------
    def create_servers(self, names, found, sg_id, group_id):
        metadata = dict(self.params["metadata"], **{META_CLUSTER: self.cluster, META_ROLE: self.role})
        created = []
        try:
            for name in names:
                kwargs = dict(name=name, flavor_id=found["flavor"].id, image_id=found["image"].id,
                              networks=[{"uuid": found["network"].id}], key_name=self.key_name,
                              security_groups=[{"name": self.sg_name}], metadata=metadata)
                if group_id:
                    kwargs["scheduler_hints"] = {"group": group_id}
                created.append(self.conn.compute.create_server(**kwargs))
        except Exception:
            self.delete_servers(created)
            raise
        if not self.params["wait"]:
            return created
        return self.wait_active(created)

    def wait_active(self, servers):
        pending = {s.id: s for s in servers}
        done, failed = {}, []

        def probe():
            for server_id in list(pending):
                server = self.conn.compute.get_server(server_id)
                if server.status == "ACTIVE":
                    done[server_id] = server
                    del pending[server_id]
                elif server.status == "ERROR":
                    fault = (server.fault or {}).get("message", "no fault message")
                    failed.append("%s (%s)" % (server.name, fault))
                    done[server_id] = server
                    del pending[server_id]
            return not pending

        try:
            self.wait_for("servers %s to become ACTIVE" % ", ".join(s.name for s in servers), probe, delay=1)
        finally:
            if failed or pending:
                self.delete_servers(servers)
                self.result["removed"] += [s.name for s in servers]
        if failed:
            self.fail("servers of cluster %s went to ERROR and were deleted again: %s"
                      % (self.cluster, "; ".join(failed)))
        return [done[s.id] for s in servers]

    def attach_floating_ips(self, servers, external):
        for server in servers:
            _fixed, floating = server_addresses(server)
            if floating:
                continue
            self.result["changed"] = True
            if self.check_mode:
                continue
            ports = list(self.conn.network.ports(device_id=server.id))
            if not ports:
                self.fail("server %s has no port to attach a floating IP to" % server.name)
            self.conn.network.create_ip(floating_network_id=external.id, port_id=ports[0].id,
                                        description="carina %s %s" % (self.cluster, server.name))

    def delete_servers(self, servers):
        for server in servers:
            for port in self.conn.network.ports(device_id=server.id):
                for ip in self.conn.network.ips(port_id=port.id):
                    self.conn.network.delete_ip(ip, ignore_missing=True)
            self.conn.compute.delete_server(server, ignore_missing=True)
        for server in servers:
            self.conn.compute.wait_for_delete(server, wait=self.params["timeout"])

    # -- states -----------------------------------------------------------------------------
    def present(self):
        p = self.params
        if not NAME_RE.match(self.cluster) or not NAME_RE.match(self.role):
            self.fail("cluster %r and role %r must be lower-case letters, digits and '-'" % (self.cluster, self.role))
        if p["count"] < 0:
            self.fail("count=%d: must be 0 or more" % p["count"])
        existing = self.servers(self.role)
        names = [s.name for s in existing]
        unknown = [n for n in p["remove"] if n not in names]
        if unknown:
            self.fail("cannot remove %s: not %s servers of cluster %s (%s)"
                      % (", ".join(unknown), self.role, self.cluster, ", ".join(names) or "none"))
        keep = [s for s in existing if s.name not in p["remove"]]
        surplus = [s for s in existing if s.name in p["remove"]]
        if len(keep) > p["count"]:
            surplus += keep[p["count"]:]
            keep = keep[:p["count"]]
        used = [number_of(n) for n in names]
        start = max(used, default=0) + 1
        missing = ["%s-%s-%d" % (self.cluster, self.role, i) for i in range(start, start + p["count"] - len(keep))]
        found = self.resolve(bool(missing))

        self.ensure_keypair()
        sg_id = self.ensure_security_group()
        group_id = self.ensure_server_group()
        if surplus:
            self.result["changed"] = True
            self.result["removed"] = [s.name for s in surplus]
            if not self.check_mode:
                self.delete_servers(surplus)
        if missing:
            self.result["changed"] = True
            self.result["created"] = missing
        if self.check_mode:
            self.result["hosts"] = [self.describe(s) for s in keep] + [
                dict(name=n, id="", role=self.role, address="", floating_ip="", status="") for n in missing]
            return
        created = self.create_servers(missing, found, sg_id, group_id) if missing else []
        servers = [self.conn.compute.get_server(s.id) for s in keep] + created
        if p["floating_ip"] and servers:
            self.attach_floating_ips(servers, found.get("external") or self.conn.network.find_network(
                p["external_network"], ignore_missing=False))
            if p["wait"]:
                self.wait_for("floating IPs to show on the servers",
                              lambda: all(server_addresses(self.conn.compute.get_server(s.id))[1] for s in servers))
            servers = [self.conn.compute.get_server(s.id) for s in servers]
        self.result["hosts"] = [self.describe(s) for s in servers]
        self.result.update(security_group=sg_id, server_group=group_id)

    def absent(self):
        servers = self.servers(self.role)
        if servers:
            self.result["changed"] = True
            self.result["removed"] = [s.name for s in servers]
            if not self.check_mode:
                self.delete_servers(servers)
        if self.role is not None:
            return
        # The whole cluster: its shared resources too.
        sg = self.conn.network.find_security_group(self.sg_name, ignore_missing=True)
        if sg is not None:
            self.result["changed"] = True
            self.result["removed"].append("security group %s" % self.sg_name)
            if not self.check_mode:
                self.conn.network.delete_security_group(sg, ignore_missing=True)
        for group in self.conn.compute.server_groups():
            if group.name == self.sg_group_name:
                self.result["changed"] = True
                self.result["removed"].append("server group %s" % group.name)
                if not self.check_mode:
                    self.conn.compute.delete_server_group(group, ignore_missing=True)
        if self.conn.compute.find_keypair(self.key_name, ignore_missing=True) is not None:
            self.result["changed"] = True
            self.result["removed"].append("key pair %s" % self.key_name)
            if not self.check_mode:
                self.conn.compute.delete_keypair(self.key_name, ignore_missing=True)


def port_range(port, protocol):
    if protocol == "icmp" or not port:
        return None, None
    low, _sep, high = str(port).partition("-")
    return int(low), int(high or low)


def main():
    NovaHosts()()


if __name__ == "__main__":
    main()
