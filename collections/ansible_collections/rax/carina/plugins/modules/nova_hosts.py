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
  - Around them it keeps the cluster's key pair (from O(public_key)), a server group with a
    (soft-)anti-affinity policy, and two security groups. The cluster's common group (O(security_group))
    opens O(ports) and every server of the cluster is a member of it. The role's group, named
    C(<security_group>-<role>), opens O(role_ports), each either to clients (a CIDR) or only to the
    cluster's own hosts (the members of the common group). The role's servers are members of both;
    servers that miss one are added to it.
  - Missing servers are created in parallel and waited for until ACTIVE; surplus servers (the
    named O(remove) first, then the highest numbers) are deleted with their floating IPs.
    Servers of this run that end in ERROR are deleted again, and the module fails naming them
    and Nova's fault message.
  - Everything is checked (flavor, image, network, external network, quota errors) before a
    server is created.
  - With O(state=absent) and no O(role), removes every server of the cluster, their floating
    IPs, the role security groups (found by name and description, never another cluster's), the
    common security group, the server group and the key pair.
    With a O(role), removes only that role's servers.
  - With a O(cluster_id), every trace of the cluster carries its id - the servers' metadata
    C(carina_cluster_id), the security groups' and floating IPs' descriptions (C(... id <cluster_id>)) -
    and whatever carries the cluster's name but another id (a cluster of the same name made from another
    state folder) makes the module fail before it changes anything, with either state and in check mode.
    Servers and security groups with no id (made before ids) are the cluster's, and are given the id.
    The key pair and the server group cannot carry an id (Nova has no field for it); they are the
    cluster's by name, once no server or security group of that name carries another id.
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
  cluster_id:
    description:
      - The cluster's unique id (what M(rax.carina.cluster_lock) returns), written into the servers'
        metadata C(carina_cluster_id) and the descriptions of the security groups and floating IPs.
      - Servers and security groups that carry the cluster's name and another id are never adopted,
        changed nor deleted - the module fails naming both ids. Those with no id (made before ids) are
        adopted and given the id (server metadata and security group description updates).
      - Empty (an unknown id, for example a delete whose state is gone) finds the cluster by its name, but
        only objects with no id (made by a release without ids); one with an id is refused, and the message
        names the id to give.
    type: str
    default: ""
    version_added: 0.1.0
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
  names:
    description:
      - The role's servers by name, as the cluster's plan names them (the rax.carina playbooks pass
        them, so that host naming lives in one place). Servers of the role with other names are
        deleted, missing names are created. Overrides O(count) and O(remove).
    type: list
    elements: str
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
    description:
      - Name of the cluster's common security group. Defaults to C(carina-<cluster>).
      - The role's group is named C(<security_group>-<role>).
    type: str
  ports:
    description:
      - Ingress rules of the cluster's common security group C(<security_group>) (egress stays open).
      - The module makes that group with the description C(carina cluster <cluster>) (followed by C(id <cluster_id>)
        with a O(cluster_id)) and then owns its ingress rules, so a rule that is no longer listed (an SSH rule for a
        client range that changed) is removed after the listed ones are added. Every role's call must pass the same
        list. A group of that name with another description, made by someone else, only gains rules.
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
  role_ports:
    description:
      - Ingress rules of the role's security group C(<security_group>-<role>) (egress stays open).
      - The module makes that group with the description C(carina cluster <cluster> role <role>) (followed by
        C(id <cluster_id>) with a O(cluster_id)) and then owns its ingress rules, so an ingress rule that is no
        longer listed is removed (after the listed ones are added). A group of that name with another
        description, made by someone else, only gains rules.
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
        description: Port, or C(min-max) range, as a string (for example V(2377) or V(30000-32767)).
        type: str
      from:
        description:
          - Who may reach the port. V(clients) opens it to O(role_ports[].remote_ip_prefix).
          - V(cluster) opens it only to the cluster's own hosts (remote group = the common security
            group), with no CIDR.
        type: str
        choices: [clients, cluster]
        default: clients
      remote_ip_prefix:
        description: Source CIDR with O(role_ports[].from=clients); ignored with V(cluster).
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
  wait_ssh:
    description:
      - With O(wait), also wait (within O(timeout)) until the servers this run creates answer with an SSH
        banner on port 22 at the address the controller uses (the floating IP, else the fixed address), since an
        ACTIVE server is still booting and the plays after this module would find it unreachable.
      - Turn it off when the controller reaches the servers only through a jump host.
    type: bool
    default: true
    version_added: 0.1.0
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
    role_ports:
      - {port: "2376"}
      - {port: "2377", from: cluster}
      - {port: "7946", from: cluster}
      - {port: "7946", protocol: udp, from: cluster}
      - {port: "4789", protocol: udp, from: cluster}
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
  description:
    - Id of the cluster's common security group.
    - Empty in check mode when it is still to be made.
  returned: when state is present
  type: str
role_security_group:
  description:
    - Id of the role's security group C(<security_group>-<role>).
    - Empty in check mode when it is still to be made.
  returned: when state is present
  type: str
server_group:
  description: Id of the server group (empty for policy none).
  returned: when state is present
  type: str
other_id:
  description: The id that the cluster's name carries on the cloud, when it is not O(cluster_id) (the module failed).
  returned: on failure, when the cluster's name belongs to another cluster
  type: str
"""

import re

from ansible_collections.rax.carina.plugins.module_utils.openstack import (
    META_CLUSTER,
    META_CLUSTER_ID,
    META_ROLE,
    CarinaOpenStackModule,
    number_of,
    server_addresses,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
# The cluster's unique id: server metadata key, and the tail (" id <id>") of what the module describes.
# What the module writes into its security groups' descriptions: carina cluster <cluster>[ role <role>][ id <id>]
DESCRIPTION_RE = re.compile(r"^carina cluster (?P<cluster>[a-z][a-z0-9-]*)(?: role (?P<role>[a-z][a-z0-9-]*))?"
                            r"(?: id (?P<id>[A-Za-z0-9._-]+))?$")


ARGUMENT_SPEC = dict(
    cluster=dict(type="str", required=True),
    cluster_id=dict(type="str", default=""),
    role=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    count=dict(type="int", default=1),
    remove=dict(type="list", elements="str", default=[]),
    names=dict(type="list", elements="str"),
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
    role_ports=dict(type="list", elements="dict", default=[], options={
        "protocol": dict(type="str", choices=["tcp", "udp", "icmp"], default="tcp"),
        "port": dict(type="str"),
        "from": dict(type="str", choices=["clients", "cluster"], default="clients"),
        "remote_ip_prefix": dict(type="str", default="0.0.0.0/0"),
    }),
    server_group_policy=dict(type="str", default="soft-anti-affinity",
                             choices=["soft-anti-affinity", "anti-affinity", "affinity", "soft-affinity", "none"]),
    floating_ip=dict(type="bool", default=False),
    external_network=dict(type="str"),
    metadata=dict(type="dict", default={}),
    wait_ssh=dict(type="bool", default=True),
)
MODULE_KWARGS = dict(required_if=[("state", "present", ["role"]), ("floating_ip", True, ["external_network"])])


class NovaHosts(CarinaOpenStackModule):
    def __init__(self):
        super().__init__(ARGUMENT_SPEC, **MODULE_KWARGS)
        p = self.params
        self.cluster = p["cluster"]
        self.cluster_id = p["cluster_id"]
        self.role = p["role"]
        self.key_name = p["key_name"] or "carina-%s" % self.cluster
        self.sg_name = p["security_group"] or "carina-%s" % self.cluster
        self.sg_group_name = "carina-%s" % self.cluster
        self.result.update(hosts=[], created=[], removed=[])

    # -- reading ----------------------------------------------------------------------------
    def servers(self):
        """Every server with the cluster's name in its metadata, by number."""
        found = [s for s in self.conn.compute.servers(details=True)
                 if (s.metadata or {}).get(META_CLUSTER) == self.cluster]
        return sorted(found, key=lambda s: number_of(s.name))

    def of_role(self, servers, role):
        """The servers of `role` (all for None)."""
        return [s for s in servers if role is None or (s.metadata or {}).get(META_ROLE) == role]

    def describe(self, server):
        fixed, floating = server_addresses(server)
        return dict(name=server.name, id=server.id, role=self.role, address=fixed, floating_ip=floating,
                    status=server.status)

    # -- the cluster's id -------------------------------------------------------------------
    def group_description(self, role=None):
        """Description of the cluster's common security group (role None) or of a role's group."""
        text = "carina cluster %s" % self.cluster
        if role is not None:
            text += " role %s" % role
        if self.cluster_id:
            text += " id %s" % self.cluster_id
        return text

    def group_owner(self, sg):
        """(role, id) that a security group's description gives it as one of this cluster's groups (role None
        for the common group, id '' for a group made before ids), or None for a group that is not the cluster's."""
        match = DESCRIPTION_RE.match(sg.description or "") if sg is not None else None
        if match is None or match.group("cluster") != self.cluster:
            return None
        return match.group("role"), match.group("id") or ""

    def owned(self, other_id):
        """Whether something of the cluster's name that carries `other_id` ('' for none) is this cluster's."""
        return not (self.cluster_id and other_id and other_id != self.cluster_id)

    def is_role_group(self, sg, role):
        """Whether `sg` is this cluster's group of `role` (None: the common group)."""
        owner = self.group_owner(sg)
        return owner is not None and owner[0] == role and self.owned(owner[1])

    def cluster_servers(self):
        """Every server of the cluster (any role), after failing - before anything is changed - when a server
        or security group of the cluster's name carries another id (a cluster of that name made from another
        state folder)."""
        self.check_cluster_id(self.cluster_id)
        servers = self.servers()
        found = {}
        for server in servers:
            found.setdefault((server.metadata or {}).get(META_CLUSTER_ID) or "", "server %s" % server.name)
        for sg in self.conn.network.security_groups(project_id=self.conn.current_project_id):
            owner = self.group_owner(sg)
            if owner is not None:
                found.setdefault(owner[1], "security group %s" % sg.name)
        self.refuse_other_id(self.cluster, self.cluster_id, found)
        return servers

    def give_id(self, servers):
        """Write the cluster's id into the metadata of its servers made before ids (idempotent)."""
        for server in servers if self.cluster_id else ():
            if (server.metadata or {}).get(META_CLUSTER_ID):
                continue
            self.result["changed"] = True
            if not self.check_mode:
                self.conn.compute.set_server_metadata(server, **{META_CLUSTER_ID: self.cluster_id})

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

    def role_sg_name(self, role):
        return "%s-%s" % (self.sg_name, role)

    def ensure_group(self, name, role=None):
        """The security group `name` (the common one for role None), made when missing; None in check mode
        when it is still to be made. The cluster's group made before ids is given the id."""
        description = self.group_description(role)
        sg = self.conn.network.find_security_group(name, ignore_missing=True)
        if sg is None:
            self.result["changed"] = True
            if self.check_mode:
                return None
            sg = self.conn.network.create_security_group(name=name, description=description)
        elif self.cluster_id and self.group_owner(sg) == (role, ""):
            self.result["changed"] = True
            if not self.check_mode:
                sg = self.conn.network.update_security_group(sg, description=description)
        return sg

    def ingress_rules(self, sg):
        """The ingress rules of `sg` by rule key (none for a group still to be made)."""
        have = {}
        for rule in self.conn.network.security_group_rules(security_group_id=sg.id) if sg is not None else []:
            if rule.direction == "ingress":
                key = rule_key(ethertype=rule.ether_type, protocol=rule.protocol, low=rule.port_range_min,
                               high=rule.port_range_max, prefix=rule.remote_ip_prefix, group=rule.remote_group_id)
                have.setdefault(key, []).append(rule)
        return have

    def ensure_rules(self, sg, wanted, prune=False):
        """Give `sg` the ingress rules `wanted` (rule keys, see rule_key); with prune, remove the others."""
        have = self.ingress_rules(sg)
        for key in wanted:
            if key in have:
                continue
            self.result["changed"] = True
            if not self.check_mode:
                ethertype, protocol, low, high, prefix, group = key
                source = dict(remote_group_id=group) if group else dict(remote_ip_prefix=prefix or "0.0.0.0/0")
                self.conn.network.create_security_group_rule(
                    security_group_id=sg.id, direction="ingress", ethertype=ethertype, protocol=protocol,
                    port_range_min=low, port_range_max=high, **source)
        for key, rules in have.items() if prune else ():
            if key in wanted:
                continue
            self.result["changed"] = True
            for rule in rules if not self.check_mode else ():
                self.conn.network.delete_security_group_rule(rule, ignore_missing=True)

    def ensure_security_groups(self):
        """The cluster's common group (O(ports)) and the role's group (O(role_ports)); returns both (None
        in check mode for a group still to be made)."""
        common = self.ensure_group(self.sg_name)
        wanted = {}
        for rule in self.params["ports"]:
            low, high = port_range(rule["port"], rule["protocol"])
            wanted[rule_key(protocol=rule["protocol"], low=low, high=high, prefix=rule["remote_ip_prefix"])] = True
        self.ensure_rules(common, wanted, prune=common is None or self.is_role_group(common, None))

        role_sg = self.ensure_group(self.role_sg_name(self.role), self.role)
        common_id = common.id if common is not None else None
        wanted = {}
        for rule in self.params["role_ports"]:
            low, high = port_range(rule["port"], rule["protocol"])
            if rule["from"] == "cluster":
                wanted[rule_key(protocol=rule["protocol"], low=low, high=high, group=common_id)] = True
            else:
                wanted[rule_key(protocol=rule["protocol"], low=low, high=high, prefix=rule["remote_ip_prefix"])] = True
        # The role's group is the module's own (made with the cluster's description): its ingress rules are
        # exactly role_ports. A group of that name made by someone else only gains rules.
        ours = role_sg is None or self.is_role_group(role_sg, self.role)
        self.ensure_rules(role_sg, wanted, prune=ours)
        return common, role_sg

    def ensure_membership(self, servers, groups):
        """Add each server to the groups (names -> security group) it is not a member of yet."""
        for server in servers:
            have = {g.get("name") for g in server.security_groups or []}
            for name, sg in groups.items():
                if name in have:
                    continue
                self.result["changed"] = True
                if not self.check_mode:
                    self.conn.compute.add_security_group_to_server(server, sg)

    def role_groups(self):
        """The role security groups this module made for the cluster: named <security_group>-<role> and
        described as the cluster's (so another cluster's group, such as carina-<cluster>-2, is never taken)."""
        prefix = self.sg_name + "-"
        found = []
        for sg in self.conn.network.security_groups(project_id=self.conn.current_project_id):
            name = sg.name or ""
            if name.startswith(prefix) and self.is_role_group(sg, name[len(prefix):]):
                found.append(sg)
        return sorted(found, key=lambda sg: sg.name)

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
    def create_servers(self, names, found, group_id):
        metadata = dict(self.params["metadata"], **{META_CLUSTER: self.cluster, META_ROLE: self.role})
        if self.cluster_id:
            metadata[META_CLUSTER_ID] = self.cluster_id
        created = []
        try:
            for name in names:
                kwargs = dict(name=name, flavor_id=found["flavor"].id, image_id=found["image"].id,
                              networks=[{"uuid": found["network"].id}], key_name=self.key_name,
                              security_groups=[{"name": self.sg_name}, {"name": self.role_sg_name(self.role)}],
                              metadata=metadata)
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
            description = "carina %s %s" % (self.cluster, server.name)
            if self.cluster_id:
                description += " id %s" % self.cluster_id
            self.conn.network.create_ip(floating_network_id=external.id, port_id=ports[0].id,
                                        description=description)

    def with_floating_ips(self, servers, found):
        """The servers again, each with a floating IP from the external network (attached when it has none)."""
        external = found.get("external") or self.conn.network.find_network(self.params["external_network"],
                                                                           ignore_missing=False)
        self.attach_floating_ips(servers, external)
        if self.params["wait"]:
            self.wait_for("floating IPs to show on the servers",
                          lambda: all(server_addresses(self.conn.compute.get_server(s.id))[1] for s in servers))
        return [self.conn.compute.get_server(s.id) for s in servers]

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
        existing = self.of_role(self.cluster_servers(), self.role)
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
        if p["names"] is not None:
            bad = [n for n in p["names"] if not NAME_RE.match(n)]
            if bad:
                self.fail("server names %s must be lower-case letters, digits and '-'" % ", ".join(bad))
            keep = [s for s in existing if s.name in p["names"]]
            surplus = [s for s in existing if s.name not in p["names"]]
            missing = [n for n in p["names"] if n not in names]
        found = self.resolve(bool(missing))

        self.ensure_keypair()
        common, role_sg = self.ensure_security_groups()
        group_id = self.ensure_server_group()
        self.result.update(security_group=common.id if common is not None else "",
                           role_security_group=role_sg.id if role_sg is not None else "", server_group=group_id)
        self.ensure_membership(keep, {self.sg_name: common, self.role_sg_name(self.role): role_sg})
        self.give_id(keep)
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
        created = self.create_servers(missing, found, group_id) if missing else []
        servers = [self.conn.compute.get_server(s.id) for s in keep] + created
        if p["floating_ip"] and servers:
            servers = self.with_floating_ips(servers, found)
        self.result["hosts"] = [self.describe(s) for s in servers]
        self.wait_for_sshd("servers", {h["name"]: h["floating_ip"] or h["address"]
                                       for h in self.result["hosts"] if h["name"] in missing},
                           "ACTIVE", "port 22 is closed to this controller (see ports)")

    def absent(self):
        servers = self.of_role(self.cluster_servers(), self.role)
        if servers:
            self.result["changed"] = True
            self.result["removed"] = [s.name for s in servers]
            if not self.check_mode:
                self.delete_servers(servers)
        if self.role is not None:
            return
        # The whole cluster: its shared resources too. The role groups first: their rules name the common group.
        for sg in self.role_groups():
            self.result["changed"] = True
            self.result["removed"].append("security group %s" % sg.name)
            if not self.check_mode:
                self.conn.network.delete_security_group(sg, ignore_missing=True)
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


def rule_key(*, protocol, low, high, prefix=None, group=None, ethertype="IPv4"):
    """What makes an ingress rule the same as another, as Neutron sees duplicates (no prefix is 0.0.0.0/0):
    (ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id)."""
    return (ethertype or "IPv4", protocol, low, high, None if prefix in (None, "", "0.0.0.0/0", "::/0") else prefix,
            group or None)


def port_range(port, protocol):
    if protocol == "icmp" or not port:
        return None, None
    low, _sep, high = str(port).partition("-")
    return int(low), int(high or low)


def main():
    NovaHosts()()


if __name__ == "__main__":
    main()
