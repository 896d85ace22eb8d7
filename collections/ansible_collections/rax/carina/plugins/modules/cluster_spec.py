#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_spec
short_description: Validate a cluster spec and work out everything derived from it
version_added: 0.1.0
description:
  - Checks a cluster spec (name, COE, master and worker counts, provider and its options, subnet
    capacity, extra SANs) before anything is created, with the planning rules of
    C(plugins/module_utils/spec.py) (the carina command uses the same) and the COE's own rules
    from its contract, and returns it normalised with what the roles use (host names, state
    folder, key and PKI paths, the contract).
  - When the cluster's state folder already holds a record (C(cluster.json)), a create with other
    counts is refused, pointing at the scale playbook; the same spec passes, so a create can be
    run again. A record of an older schema is read through its migration. A record that cannot be
    read fails every operation but V(delete), which goes on without it (with a warning).
  - Changes nothing; safe in check mode.
author:
  - rax.carina developers (@rax-carina)
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
    description: No diff is returned.
  idempotent:
    support: full
    description: The module never changes anything.
options:
  name:
    description:
      - Cluster name, 1 to 40 lower-case letters, digits and single C(-), starting with a letter and
        not ending with C(-), matched whole.
      - It prefixes host names (C(<name>-<word>-1)), so it must be a DNS label, a hostname part and a Nova name.
    type: str
    required: true
  coe:
    description:
      - Container orchestration engine; one of the keys of O(contracts). Left out, the cluster's
        recorded COE, else the driver whose contract says C(default).
    type: str
  contracts:
    description:
      - The contracts of the COE drivers, by name, as the lookup P(rax.carina.coe_contracts#lookup) returns them.
    type: dict
    required: true
  masters:
    description:
      - Number of masters; the COE's contract sets the rules (for example odd, from 1 to 7).
      - Defaults to the recorded count when the cluster exists, else to the contract's default.
    type: int
  nodes:
    description:
      - Number of workers, within the contract's bounds.
      - Defaults to the recorded count (less O(remove)) when the cluster exists, else to the contract's default.
    type: int
  provider:
    description:
      - Where the hosts come from - host containers on this machine's container engine, an OpenStack cloud, or hosts
        you already have (V(static), named by O(inventory_hosts)).
      - Defaults to the provider the cluster was created with, else V(local).
    type: str
    choices: [local, openstack, static]
  inventory_hosts:
    description:
      - The inventory's names of the masters (key V(master)) and workers (key V(worker)), for
        providers whose hosts exist already (V(static)); the counts follow from them. Other
        providers name their hosts themselves and ignore it.
    type: dict
  static:
    description:
      - Options of provider C(static). An option left out keeps the value the cluster was created with.
    type: dict
    default: {}
    suboptions:
      vip:
        description:
          - A free IPv4 address on the masters' network - HAProxy and keepalived on the masters hold it
            and balance the COE's listeners. Give this or O(static.lb_hosts).
        type: str
      lb_hosts:
        description: The one host (by inventory name) that runs HAProxy in front of the masters.
        type: list
        elements: str
      interface:
        description: Network interface of the VIP on the masters; empty finds the one holding the master's address.
        type: str
  subnet:
    description:
      - For provider C(local), the IPv4 subnet of the cluster network in CIDR form (keep tests in
        198.18.0.0/15). Empty lets the provider pick a free one.
      - A new cluster's subnet must be a private range (RFC 1918, RFC 6598 shared space, or RFC 2544's
        198.18.0.0/15; a public one only with O(allow_public_subnet)), never loopback,
        link-local, multicast or reserved, and not a range the machine already routes (but through
        a Linux bridge, a container engine's network, which the provider judges).
    type: str
    default: ""
  allow_public_subnet:
    description: Accept a public range as the cluster's subnet (its real owners become unreachable from the hosts).
    type: bool
    default: false
  image:
    description:
      - Host image of masters and workers; a container image for C(local), a Glance image for
        C(openstack). Empty takes the contract's image for the provider (C(host_images)).
    type: str
    default: ""
  lb_image:
    description: Image of the load balancer host (provider C(local)).
    type: str
    default: carina-host:bookworm-lb
  openstack:
    description:
      - Options of provider C(openstack). An option left out keeps the value the cluster was created
        with, else the default named in its description.
    type: dict
    default: {}
    suboptions:
      cloud:
        description: Named cloud of C(clouds.yaml) (AWX's OpenStack credential writes V(devstack)).
        type: str
      flavor:
        description: Flavor of workers on Nova (default V(m1.small)).
        type: str
      master_flavor:
        description: Flavor of masters on Nova; defaults to O(openstack.flavor).
        type: str
      fixed_network:
        description: Network of the hosts (default V(private)).
        type: str
      fixed_subnet:
        description: Subnet of the load balancer's VIP (default V(private-subnet)).
        type: str
      external_network:
        description: Network of floating IPs (default V(public)).
        type: str
      floating_ip_enabled:
        description: Give hosts and the VIP floating IPs (and reach them through those) (default V(false)).
        type: bool
      master_server_type:
        description: V(vm) (Nova) or V(bm) (Ironic) for masters (default V(vm)).
        type: str
        choices: [vm, bm]
      server_type:
        description: V(vm) (Nova) or V(bm) (Ironic) for workers (default V(vm)).
        type: str
        choices: [vm, bm]
      resource_class:
        description: Resource class of the bare metal nodes (default V(baremetal)).
        type: str
      ssh_cidr:
        description:
          - Who may reach the hosts' SSH port (22), as an IPv4 CIDR; the controller must be inside it
            (default V(0.0.0.0/0), anywhere). The cluster's internal ports are open only to its own hosts.
        type: str
      api_cidrs:
        description:
          - Who may reach the cluster's API port, as IPv4 CIDRs (at most 16); default
            V(0.0.0.0/0), anywhere. Left out, the recorded ones are kept.
          - A narrower list becomes the load balancer listeners' C(allowed_cidrs) and the API's security group
            rules; the cluster's own subnet is always let in (kubelets and the load balancer reach the API
            from it). Like Magnum's C(master_lb_allowed_cidrs) label.
        type: list
        elements: str
  extra_sans:
    description: More names and addresses put into the masters' server certificates (IP addresses or DNS names).
    type: list
    elements: str
    default: []
  authorized_keys:
    description:
      - SSH public keys of the cluster's users (one OpenSSH public key each), let into every host as the user
        Ansible connects as, next to the cluster's own key; for example the Nova key pair a Magnum user named.
      - Left out, the keys of the record are kept, so that hosts a scale adds let the same users in.
    type: list
    elements: str
    version_added: 0.1.0
  ca_import:
    description:
      - A cluster CA made elsewhere (for example the one OpenStack Magnum keeps for the cluster), used instead
        of one made here; see M(rax.carina.cluster_pki) O(rax.carina.cluster_pki#module:ca_import).
      - Checked here, before anything is made (a CA certificate, unexpired, with its own unencrypted key).
      - Later runs keep the imported CA without it.
    type: dict
    version_added: 0.1.0
    suboptions:
      cert:
        description: Path of the CA certificate (PEM).
        type: path
        required: true
      key:
        description: Path of the CA's unencrypted private key (PEM).
        type: path
        required: true
  coe_options:
    description:
      - The COE's own options, as its contract's C(options) declares them (for example C(pod_cidr) and
        C(kubernetes_version) for Kubernetes). Left out, an option keeps its recorded value, else the
        contract's default.
      - Unknown options, values of the wrong type, networks that overlap each other or the hosts' subnet,
        and changes to options the contract marks C(fixed) are refused before anything is made.
    type: dict
    default: {}
    version_added: 0.1.0
  home:
    description:
      - Folder that holds the state folders of all clusters.
    type: path
    default: ~/.carina
  state_dir:
    description:
      - The cluster's state folder (key pair, PKI, credentials bundle). Defaults to
        C(<home>/clusters/<name>).
    type: path
  operation:
    description:
      - V(create) refuses a spec whose counts differ from the recorded one; V(scale) accepts new
        counts and works out which hosts to add and remove; V(delete) only needs the name.
    type: str
    choices: [create, scale, delete]
    default: create
  remove:
    description:
      - With O(operation=scale), workers to remove first when the worker count goes down (by host
        name, for example V(demo-worker-2)). If O(nodes) is not lower, the removed workers are
        replaced by new ones.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Check the spec of cluster demo
  rax.carina.cluster_spec:
    name: demo
    contracts: "{{ lookup('rax.carina.coe_contracts') }}"
    masters: 3
    nodes: 1
    subnet: 198.18.10.0/24
  register: demo_spec
"""

RETURN = r"""
cluster:
  description: The normalised spec and what is derived from it.
  returned: success
  type: dict
  contains:
    name:
      description: Cluster name.
      type: str
      sample: demo
    coe:
      description: Container orchestration engine.
      type: str
      sample: kubernetes
    contract:
      description: The COE's contract (words, ports, listeners, PKI profile, credentials, API URL).
      type: dict
    masters:
      description: Number of masters.
      type: int
      sample: 3
    nodes:
      description: Number of workers.
      type: int
      sample: 1
    provider:
      description: Provider of the hosts.
      type: str
      sample: local
    subnet:
      description: Requested subnet (may be empty).
      type: str
    image:
      description: Host image.
      type: str
    lb_image:
      description: Load balancer image.
      type: str
    openstack:
      description: Options of provider C(openstack), with their defaults.
      type: dict
    static:
      description: Options of provider C(static) (C(vip), C(lb_hosts), C(interface)).
      type: dict
    hosts:
      description: For provider C(static), the inventory's masters (C(master)) and workers (C(worker)).
      type: dict
    extra_sans:
      description: Extra names and addresses of the masters' certificates.
      type: list
      elements: str
    state_dir:
      description: State folder of the cluster.
      type: str
    pki_dir:
      description: Folder of the cluster's PKI (CA key included), inside the state folder.
      type: str
    authorized_keys:
      description: The users' SSH public keys the hosts let in (given, else recorded).
      type: list
      elements: str
      version_added: 0.1.0
    ca_import:
      description: The CA to import (C(cert) and C(key) paths), checked; empty when none is given.
      type: dict
      version_added: 0.1.0
    ssh_key:
      description: Path of the cluster's SSH private key.
      type: str
    master_hosts:
      description: Host names of the masters after this run.
      type: list
      elements: str
      sample: [demo-master-1, demo-master-2, demo-master-3]
    worker_hosts:
      description: Host names of the workers after this run.
      type: list
      elements: str
      sample: [demo-worker-1]
    lb:
      description: Host name of the load balancer.
      type: str
      sample: demo-lb
    recorded:
      description: The record of an earlier run (migrated to the current schema), if any.
      type: dict
    adding:
      description: Hosts a scale adds (empty for create).
      type: list
      elements: str
    removing_masters:
      description: Masters a scale removes (one at a time).
      type: list
      elements: str
    removing_workers:
      description: Workers a scale removes (drained, removed from the COE, then deleted).
      type: list
      elements: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rax.carina.plugins.module_utils import spec as rules

OPENSTACK_OPTIONS = dict(
    cloud=dict(type="str"),
    flavor=dict(type="str"),
    master_flavor=dict(type="str"),
    fixed_network=dict(type="str"),
    fixed_subnet=dict(type="str"),
    external_network=dict(type="str"),
    floating_ip_enabled=dict(type="bool"),
    master_server_type=dict(type="str", choices=list(rules.SERVER_TYPES)),
    server_type=dict(type="str", choices=list(rules.SERVER_TYPES)),
    resource_class=dict(type="str"),
    ssh_cidr=dict(type="str"),
    api_cidrs=dict(type="list", elements="str"),
)


def read_record(state_dir):
    path = os.path.join(state_dir, "cluster.json")
    try:
        with open(path) as handle:
            return rules.migrate_record(json.load(handle))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError("cannot read %s (%s); fix or remove it" % (path, exc)) from exc


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            coe=dict(type="str"),
            contracts=dict(type="dict", required=True),
            masters=dict(type="int"),
            nodes=dict(type="int"),
            provider=dict(type="str", choices=list(rules.PROVIDERS)),
            inventory_hosts=dict(type="dict"),
            static=dict(type="dict", default={}, options=dict(
                vip=dict(type="str"),
                lb_hosts=dict(type="list", elements="str"),
                interface=dict(type="str"),
            )),
            openstack=dict(type="dict", default={}, options=OPENSTACK_OPTIONS),
            subnet=dict(type="str", default=""),
            allow_public_subnet=dict(type="bool", default=False),
            image=dict(type="str", default=""),
            lb_image=dict(type="str", default="carina-host:bookworm-lb"),
            extra_sans=dict(type="list", elements="str", default=[]),
            coe_options=dict(type="dict", default={}),
            authorized_keys=dict(type="list", elements="str", no_log=False),
            ca_import=dict(type="dict", options=dict(cert=dict(type="path", required=True),
                                                     key=dict(type="path", required=True, no_log=False))),
            home=dict(type="path", default="~/.carina"),
            state_dir=dict(type="path"),
            operation=dict(type="str", choices=list(rules.OPERATIONS), default="create"),
            remove=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]
    problems = rules.name_problems(name)
    if problems:
        module.fail_json(msg="cluster spec of %r is not valid: %s" % (name, "; ".join(problems)), problems=problems)
    state_dir = p["state_dir"] or os.path.join(p["home"], "clusters", name)
    try:
        recorded = read_record(state_dir)
    except ValueError as exc:
        if p["operation"] != "delete":
            module.fail_json(msg=str(exc))
        # A damaged record never blocks a delete: the cluster is found by its labels and cloud metadata.
        module.warn("%s; the delete finds the cluster by its labels and cloud metadata" % exc)
        recorded = {}
    coe = (recorded.get("coe") if p["operation"] == "delete" else None) or p["coe"] or recorded.get("coe") \
        or rules.default_coe(p["contracts"])
    contract = p["contracts"].get(coe)
    given = dict(name=name, coe=coe, coes=sorted(p["contracts"]), operation=p["operation"], masters=p["masters"],
                 nodes=p["nodes"], provider=p["provider"], subnet=p["subnet"], extra_sans=p["extra_sans"],
                 allow_public_subnet=p["allow_public_subnet"], machine_routes=rules.machine_routes(),
                 remove=p["remove"], coe_options=dict(p["coe_options"] or {}), authorized_keys=p["authorized_keys"],
                 openstack=dict((k, v) for k, v in (p["openstack"] or {}).items() if v is not None))
    if p["inventory_hosts"] is not None:
        given["inventory_hosts"] = dict(master=list(p["inventory_hosts"].get("master") or []),
                                        worker=list(p["inventory_hosts"].get("worker") or []))
    given["static"] = dict(p["static"] or {})
    try:
        planned = rules.plan(given, contract, recorded)
    except rules.SpecError as exc:
        module.fail_json(msg=str(exc), problems=exc.problems)
    planned.pop("coes", None)
    ca_import = p["ca_import"] or {}
    if ca_import and p["operation"] != "delete":
        # Only here: cryptography is not imported on the runs that import no CA.
        from ansible_collections.rax.carina.plugins.module_utils import pki  # noqa: PLC0415

        if not pki.HAS_CRYPTOGRAPHY:
            module.fail_json(msg="ca_import needs the Python cryptography package on the controller")
        try:
            pki.load_ca_import(ca_import)
        except pki.PKIValidationError as exc:
            module.fail_json(msg="cluster spec of %r is not valid: %s" % (name, exc), problems=exc.errors)
    images = (contract or {}).get("host_images") or {}
    planned.update(
        contract=contract,
        subnet=p["subnet"] or recorded.get("subnet", ""),
        image=p["image"] or images.get(planned["provider"], ""),
        lb_image=p["lb_image"],
        state_dir=state_dir,
        pki_dir=os.path.join(state_dir, "pki"),
        ssh_key=os.path.join(state_dir, "ssh", "id_ed25519"),
        lb=rules.host_name(name, contract, "lb", 0) if contract else "%s-lb" % name,
        recorded=recorded,
        ca_import=ca_import,
    )
    for key in ("master_hosts", "worker_hosts", "adding", "removing_masters", "removing_workers"):
        planned.setdefault(key, [])
    module.exit_json(changed=False, cluster=planned)


if __name__ == "__main__":
    main()
