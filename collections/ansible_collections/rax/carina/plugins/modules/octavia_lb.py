#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: octavia_lb
short_description: The Octavia load balancer in front of a cluster's masters
version_added: 0.1.0
description:
  - Keeps one Octavia load balancer per cluster (C(carina-<cluster>)) with, per API port in
    O(listeners), a listener, a pool and a health monitor, and the pool members kept equal to
    O(members) on every run (so scaling the masters updates the load balancer).
  - Waits out C(PENDING_*) states after every write and retries the 409 answers Octavia gives
    while the load balancer is immutable.
  - A lost master costs clients little. Each listener gives a member 1 s to accept a connection
    (C(timeout_member_connect)) before the load balancer tries again (an amphora tries 3 times more, the
    last time on another member), and each health monitor checks every 2 s (2 s timeout) and takes a member out
    after 2 failed checks. Listeners and monitors made by earlier releases are set to these values.
  - Optionally puts a floating IP on the VIP.
  - Optionally lets only some client ranges through every listener (O(allowed_cidrs)), keeping the VIP
    subnet's own hosts in.
  - With O(state=absent), deletes the load balancer with everything under it (cascade) and its
    floating IP.
  - With a O(cluster_id), the load balancer and the listeners, pools, health monitors and members the
    module makes carry the tag C(carina-cluster-id:<cluster_id>), and the VIP's floating IP's description
    ends in C(id <cluster_id>). A load balancer of that name tagged with another id (a cluster of the same
    name made from another state folder) makes the module fail before it changes anything, with either
    state and in check mode. A load balancer with no such tag (made before ids) is the cluster's, and is
    given the tag (its children made before are left as they are).
author:
  - rax.carina developers (@rax-carina)
extends_documentation_fragment:
  - rax.carina.openstack
attributes:
  check_mode:
    support: full
    description: Reports what would be created, changed or deleted; only reads the cloud.
  diff_mode:
    support: none
    description: No diff.
  idempotent:
    support: full
    description: A second run with the same members changes nothing.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
options:
  cluster:
    description: Name of the cluster.
    type: str
    required: true
  cluster_id:
    description:
      - The cluster's unique id (what M(rax.carina.cluster_lock) returns), put on the load balancer and
        everything the module makes under it as the tag C(carina-cluster-id:<cluster_id>).
      - A load balancer of the name tagged with another id is never adopted, changed nor deleted - the
        module fails naming both ids. One with no such tag (made before ids) is adopted and tagged.
      - Empty (an unknown id, for example a delete whose state is gone) finds the cluster by its name, but
        only objects with no id (made by a release without ids); one with an id is refused, and the message
        names the id to give.
    type: str
    default: ""
    version_added: 0.1.0
  name:
    description: Name of the load balancer. Defaults to C(carina-<cluster>).
    type: str
  state:
    description: V(present) or V(absent).
    type: str
    choices: [present, absent]
    default: present
  vip_subnet:
    description: Subnet (name or id) of the VIP. Required to create the load balancer.
    type: str
  provider:
    description: Octavia provider (for example V(amphora) or V(ovn)); the cloud's default when omitted.
    type: str
  listeners:
    description: API ports to balance.
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description: Port of the listener.
        type: int
        required: true
      member_port:
        description: Port on the members. Defaults to O(listeners[].port).
        type: int
      protocol:
        description: Listener and pool protocol (TCP passes TLS through to the members).
        type: str
        choices: [TCP, HTTP, HTTPS, UDP]
        default: TCP
      lb_algorithm:
        description: Pool algorithm.
        type: str
        choices: [ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP]
        default: ROUND_ROBIN
      monitor_type:
        description: Health monitor type.
        type: str
        choices: [TCP, HTTP, HTTPS, TLS-HELLO, PING]
        default: TCP
      monitor_url_path:
        description: Path of HTTP(S) health checks.
        type: str
        default: /
  allowed_cidrs:
    description:
      - Who may connect to the listeners, as CIDRs. An empty list, or one that holds V(0.0.0.0/0), lets anyone
        in. Left out, the listeners keep what they let in (new ones let anyone in).
      - A narrower list goes on every listener as Octavia's C(allowed_cidrs), together with the CIDR of the
        VIP's subnet, so that the cluster's own hosts on that subnet (kubelets, the masters themselves)
        still reach the API through the load balancer. Listeners are updated when the list changes.
    type: list
    elements: str
    version_added: 0.1.0
  members:
    description: The masters behind every listener.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Member name (the host name).
        type: str
        required: true
      address:
        description: Member address.
        type: str
        required: true
  sync_members:
    description:
      - Make the members of every listener equal O(members). V(false) leaves members alone (to make
        the load balancer before its members exist).
    type: bool
    default: true
  floating_ip:
    description: Put a floating IP from O(external_network) on the VIP.
    type: bool
    default: false
  external_network:
    description: Network to take the floating IP from.
    type: str
"""

EXAMPLES = r"""
- name: Masters of demo behind Octavia on the Docker TLS port
  rax.carina.octavia_lb:
    cloud: devstack
    cluster: demo
    vip_subnet: private-subnet
    listeners:
      - {port: 2376, monitor_type: TCP}
    members: >-
      {{ managers.hosts | map('dict2items') | map('selectattr', 'key', 'in', ['name', 'address'])
         | map('items2dict') | list }}
"""

RETURN = r"""
load_balancer:
  description: The load balancer after the run.
  returned: when state is present
  type: dict
  contains:
    id:
      description: Its id (empty in check mode when it would be created).
      type: str
    vip_address:
      description: The VIP.
      type: str
      sample: 198.18.100.5
    floating_ip:
      description: Floating IP on the VIP, if any.
      type: str
    provisioning_status:
      description: Octavia's provisioning status.
      type: str
      sample: ACTIVE
    vip_subnet_cidr:
      description: CIDR of the VIP's subnet (empty in check mode when the subnet is not found).
      type: str
      sample: 198.18.100.0/24
    allowed_cidrs:
      description:
        - What every listener lets in after the run (O(allowed_cidrs) and the VIP subnet); empty is anyone.
        - Without O(allowed_cidrs), what the first listener lets in.
      type: list
      elements: str
      sample: ["198.19.200.0/24", "198.18.100.0/24"]
members:
  description: Member addresses of each listener port after the run.
  returned: when state is present
  type: dict
  sample: {"2376": ["198.18.100.11", "198.18.100.12"]}
actions:
  description: What was done (or would be in check mode), in order.
  returned: always
  type: list
  elements: str
other_id:
  description: The id that the load balancer of the name carries, when it is not O(cluster_id) (the module failed).
  returned: on failure, when the name belongs to another cluster
  type: str
"""

import ipaddress
import time

from ansible_collections.rax.carina.plugins.module_utils.openstack import CarinaOpenStackModule, Conflict

# The tag that carries the cluster's unique id on the load balancer and the objects under it.
TAG_ID = "carina-cluster-id:"
# A member that does not accept a connection within 1 s is tried again, then passed over (4 s at worst, under
# the 10 s TLS handshake timeout of Go clients such as kubectl and docker); one that fails 2 checks 2 s apart
# leaves the rotation until it passes 2 again.
LISTENER_TIMEOUTS = {"timeout_member_connect": 1000}
MONITOR_TIMING = {"delay": 2, "timeout": 2, "max_retries": 2, "max_retries_down": 2}


def differs(obj, wanted):
    """Whether any attribute of an Octavia object is not the wanted value."""
    return any(getattr(obj, key, None) != value for key, value in wanted.items())


ARGUMENT_SPEC = dict(
    cluster=dict(type="str", required=True),
    cluster_id=dict(type="str", default=""),
    name=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    vip_subnet=dict(type="str"),
    provider=dict(type="str"),
    listeners=dict(type="list", elements="dict", default=[], options=dict(
        port=dict(type="int", required=True),
        member_port=dict(type="int"),
        protocol=dict(type="str", choices=["TCP", "HTTP", "HTTPS", "UDP"], default="TCP"),
        lb_algorithm=dict(type="str", choices=["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP"],
                          default="ROUND_ROBIN"),
        monitor_type=dict(type="str", choices=["TCP", "HTTP", "HTTPS", "TLS-HELLO", "PING"], default="TCP"),
        monitor_url_path=dict(type="str", default="/"),
    )),
    members=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        address=dict(type="str", required=True),
    )),
    sync_members=dict(type="bool", default=True),
    floating_ip=dict(type="bool", default=False),
    external_network=dict(type="str"),
    allowed_cidrs=dict(type="list", elements="str"),
)
MODULE_KWARGS = dict(required_if=[("floating_ip", True, ["external_network"])])


class OctaviaLB(CarinaOpenStackModule):
    def __init__(self):
        super().__init__(ARGUMENT_SPEC, **MODULE_KWARGS)
        self.name = self.params["name"] or "carina-%s" % self.params["cluster"]
        self.cluster_id = self.params["cluster_id"]
        self.result.update(actions=[])
        self.lb = None
        self.subnet_cidr = None

    # -- the cluster's id -------------------------------------------------------------------
    def tagged(self, **kwargs):
        """Create arguments with the cluster's id tag (when there is an id)."""
        if self.cluster_id:
            kwargs["tags"] = [TAG_ID + self.cluster_id]
        return kwargs

    def find_lb(self):
        """The load balancer of the name, after failing - before anything is changed - when it carries
        another cluster's id (a cluster of that name made from another state folder)."""
        self.check_cluster_id(self.cluster_id)
        lb = self.conn.load_balancer.find_load_balancer(self.name, ignore_missing=True)
        other = id_of(lb)
        self.refuse_other_id(self.params["cluster"], self.cluster_id,
                             {other or "": "load balancer %s" % self.name} if lb else {})
        return lb

    # -- Octavia's immutability -------------------------------------------------------------
    def wait_active(self):
        def probe():
            lb = self.conn.load_balancer.get_load_balancer(self.lb.id)
            if lb.provisioning_status == "ERROR":
                self.fail("load balancer %s went to ERROR" % self.name)
            return lb if lb.provisioning_status == "ACTIVE" else None

        self.lb = self.wait_for("load balancer %s to be ACTIVE" % self.name, probe, delay=0.5)
        return self.lb

    def write(self, what, call, *args, **kwargs):
        """One change: retried while Octavia answers 409 (immutable), then wait for ACTIVE again."""
        self.result["changed"] = True
        self.result["actions"].append(what)
        if self.check_mode:
            return None
        deadline = time.time() + self.params["timeout"]
        while True:
            try:
                value = call(*args, **kwargs)
                break
            except Conflict:
                if time.time() > deadline:
                    raise
                time.sleep(1)
                self.wait_active()
        if self.lb is not None and self.lb.id:
            self.wait_active()
        return value

    # -- present ----------------------------------------------------------------------------
    def ensure_lb(self, lb):
        if lb is not None:
            self.lb = lb
            if lb.provisioning_status.startswith("PENDING"):
                self.wait_active()
            if self.cluster_id and not id_of(self.lb):  # made before ids: give it the id
                tags = [*(getattr(self.lb, "tags", None) or []), TAG_ID + self.cluster_id]
                self.write("tag load balancer %s with the cluster's id" % self.name,
                           self.conn.load_balancer.update_load_balancer, self.lb, tags=tags)
            return
        subnet_name = self.params["vip_subnet"]
        if not subnet_name:
            self.fail("vip_subnet is required to create load balancer %s" % self.name)
        subnet = self.conn.network.find_subnet(subnet_name, ignore_missing=True)
        if subnet is None:
            self.fail("subnet %s not found for the VIP of %s" % (subnet_name, self.name))
        kwargs = self.tagged(name=self.name, vip_subnet_id=subnet.id,
                             description="carina cluster %s" % self.params["cluster"])
        if self.params["provider"]:
            kwargs["provider"] = self.params["provider"]
        self.lb = self.write("create load balancer %s" % self.name, self.conn.load_balancer.create_load_balancer,
                             **kwargs)

    def vip_subnet_cidr(self):
        """CIDR of the VIP's subnet ('' when it cannot be found: check mode before the subnet exists)."""
        if self.subnet_cidr is None:
            subnet = None
            if self.lb is not None and self.lb.vip_subnet_id:
                subnet = self.conn.network.get_subnet(self.lb.vip_subnet_id)
            elif self.params["vip_subnet"]:
                subnet = self.conn.network.find_subnet(self.params["vip_subnet"], ignore_missing=True)
            self.subnet_cidr = subnet.cidr if subnet is not None else ""
        return self.subnet_cidr

    def allowed_cidrs(self):
        """What the listeners let in: [] for anyone, else O(allowed_cidrs) and the VIP subnet, each once;
        None to leave them as they are."""
        given = self.params["allowed_cidrs"]
        if given is None:
            return None
        if not given or any(ipaddress.ip_network(c, strict=False).prefixlen == 0 for c in given):
            return []
        subnet = self.vip_subnet_cidr()
        return sorted(set(given + ([subnet] if subnet else [])))

    def listeners_allow(self):
        """What the load balancer's first listener lets in ([] is anyone)."""
        if self.lb is None or not self.lb.id:
            return []
        listener = next(iter(self.conn.load_balancer.listeners(load_balancer_id=self.lb.id)), None)
        return sorted(getattr(listener, "allowed_cidrs", None) or [])

    def listener_of(self, spec, lname):
        """The listener on the spec's port, made or brought to the wanted settings (None in check mode when it
        would be made)."""
        port = spec["port"]
        listener = None
        allowed = self.allowed_cidrs()
        if self.lb is not None:
            listener = next((x for x in self.conn.load_balancer.listeners(load_balancer_id=self.lb.id)
                             if x.protocol_port == port), None)
        if listener is None:
            kwargs = dict(LISTENER_TIMEOUTS, allowed_cidrs=allowed) if allowed else dict(LISTENER_TIMEOUTS)
            listener = self.write("create listener %s" % lname, self.conn.load_balancer.create_listener,
                                  **self.tagged(name=lname, load_balancer_id=self.lb.id if self.lb else None,
                                                protocol=spec["protocol"], protocol_port=port, **kwargs))
        else:
            if differs(listener, LISTENER_TIMEOUTS):
                self.write("set the member connect timeout of listener %s" % lname,
                           self.conn.load_balancer.update_listener, listener, **LISTENER_TIMEOUTS)
            if allowed is not None and sorted(getattr(listener, "allowed_cidrs", None) or []) != allowed:
                self.write("let %s through listener %s" % (", ".join(allowed) or "anyone", lname),
                           self.conn.load_balancer.update_listener, listener, allowed_cidrs=allowed)
        return listener

    def ensure_listener(self, spec):
        lname = "%s-%d" % (self.name, spec["port"])
        listener = self.listener_of(spec, lname)
        if listener is None:  # check mode
            return None
        # Octavia filters pools by name, not by listener: the listener's default pool is the one.
        pool = self.conn.load_balancer.get_pool(listener.default_pool_id) if listener.default_pool_id else None
        if pool is None:
            pool = next(iter(self.conn.load_balancer.pools(name="%s-pool" % lname)), None)
        if pool is None:
            pool = self.write("create pool %s-pool" % lname, self.conn.load_balancer.create_pool,
                              **self.tagged(name="%s-pool" % lname, listener_id=listener.id,
                                            protocol=spec["protocol"], lb_algorithm=spec["lb_algorithm"]))
        if pool is None:
            return None
        if not pool.health_monitor_id:
            kwargs = self.tagged(name="%s-monitor" % lname, pool_id=pool.id, type=spec["monitor_type"],
                                 **MONITOR_TIMING)
            if spec["monitor_type"] in ("HTTP", "HTTPS"):
                kwargs["url_path"] = spec["monitor_url_path"]
            self.write("create health monitor %s-monitor" % lname, self.conn.load_balancer.create_health_monitor,
                       **kwargs)
        else:
            monitor = self.conn.load_balancer.get_health_monitor(pool.health_monitor_id)
            if differs(monitor, MONITOR_TIMING):
                self.write("set the check timing of health monitor %s" % (monitor.name or monitor.id),
                           self.conn.load_balancer.update_health_monitor, monitor, **MONITOR_TIMING)
        return pool

    def sync_members(self, pool, spec):
        port = spec["member_port"] or spec["port"]
        wanted = {m["address"]: m["name"] for m in self.params["members"]}
        have = {}
        if pool is not None:
            have = {m.address: m for m in self.conn.load_balancer.members(pool.id) if m.protocol_port == port}
        for address, member in sorted(have.items()):
            if address not in wanted:
                self.write("remove member %s from port %d" % (member.name or address, spec["port"]),
                           self.conn.load_balancer.delete_member, member, pool.id)
        for address, name in sorted(wanted.items()):
            if address not in have:
                subnet_id = self.lb.vip_subnet_id if self.lb is not None else None
                self.write("add member %s (%s:%d)" % (name, address, port), self.conn.load_balancer.create_member,
                           pool.id if pool else None, **self.tagged(name=name, address=address,
                                                                    protocol_port=port, subnet_id=subnet_id))
        return sorted(wanted)

    def ensure_floating_ip(self):
        if not self.params["floating_ip"]:
            return ""
        if self.lb is None or not self.lb.vip_port_id:
            self.write("attach a floating IP to the VIP", lambda: None)
            return ""
        ips = list(self.conn.network.ips(port_id=self.lb.vip_port_id))
        if ips:
            return ips[0].floating_ip_address
        external = self.conn.network.find_network(self.params["external_network"], ignore_missing=True)
        if external is None:
            self.fail("external network %s not found" % self.params["external_network"])
        description = "carina %s VIP" % self.params["cluster"]
        if self.cluster_id:
            description += " id %s" % self.cluster_id
        ip = self.write("attach a floating IP to the VIP", self.conn.network.create_ip,
                        floating_network_id=external.id, port_id=self.lb.vip_port_id, description=description)
        return ip.floating_ip_address if ip else ""

    def present(self):
        for cidr in self.params["allowed_cidrs"] or []:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                self.fail("allowed_cidrs: %s is not a network in CIDR form (%s)" % (cidr, exc))
        if self.params["floating_ip"] and self.conn.network.find_network(
                self.params["external_network"], ignore_missing=True) is None:
            self.fail("external network %s not found" % self.params["external_network"])
        self.ensure_lb(self.find_lb())
        members = {}
        for spec in self.params["listeners"]:
            pool = self.ensure_listener(spec)
            if self.params["sync_members"]:
                members[str(spec["port"])] = self.sync_members(pool, spec)
            elif pool is not None:
                members[str(spec["port"])] = sorted(m.address for m in self.conn.load_balancer.members(pool.id))
        floating = self.ensure_floating_ip()
        lb = self.lb
        self.result["members"] = members
        self.result["load_balancer"] = dict(
            id=lb.id if lb else "", vip_address=lb.vip_address if lb else "", floating_ip=floating,
            provisioning_status=lb.provisioning_status if lb else "", vip_subnet_cidr=self.vip_subnet_cidr(),
            allowed_cidrs=self.allowed_cidrs() if self.params["allowed_cidrs"] is not None else self.listeners_allow())

    def absent(self):
        lb = self.find_lb()
        if lb is None:
            return
        self.result["changed"] = True
        self.result["actions"].append("delete load balancer %s (cascade)" % self.name)
        if self.check_mode:
            return
        if lb.vip_port_id:
            for ip in self.conn.network.ips(port_id=lb.vip_port_id):
                self.conn.network.delete_ip(ip, ignore_missing=True)
        deadline = time.time() + self.params["timeout"]
        while True:
            try:
                self.conn.load_balancer.delete_load_balancer(lb, ignore_missing=True, cascade=True)
                break
            except Conflict:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        if self.params["wait"]:
            self.wait_for("load balancer %s to be deleted" % self.name,
                          lambda: self.conn.load_balancer.find_load_balancer(lb.id, ignore_missing=True) is None,
                          delay=0.5)


def id_of(lb):
    """The cluster id a load balancer's tags carry ('' for none, or no load balancer)."""
    for tag in getattr(lb, "tags", None) or []:
        if tag.startswith(TAG_ID):
            return tag[len(TAG_ID):]
    return ""


def main():
    OctaviaLB()()


if __name__ == "__main__":
    main()
