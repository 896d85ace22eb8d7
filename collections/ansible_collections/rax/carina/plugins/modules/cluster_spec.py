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
  - Checks a cluster spec (name, COE, manager and worker counts, provider and its options)
    before anything is created, and returns it normalised with the names the other roles
    use (hosts, inventory groups, state folder, key and PKI paths).
  - When the cluster's state folder already holds a spec (C(cluster.json)), a create with other
    manager or worker counts is refused, pointing at the scale playbook; the same spec passes, so
    a create can be run again.
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
      - Cluster name, 1 to 40 lower-case letters, digits and C(-), starting with a letter.
      - It prefixes host names (C(<name>-manager-1)), so it must be a valid hostname part.
    type: str
    required: true
  coe:
    description: Container orchestration engine.
    type: str
    choices: [swarm]
    default: swarm
  masters:
    description:
      - Number of managers (masters); odd, from 1 to 7, so that a majority survives failures.
      - Defaults to the recorded count when the cluster exists, else to 1.
    type: int
  nodes:
    description:
      - Number of workers (nodes), 0 or more.
      - Defaults to the recorded count (less O(remove)) when the cluster exists, else to 1.
    type: int
  provider:
    description:
      - Where the hosts come from - host containers on a Docker engine, or an OpenStack cloud.
      - Defaults to the provider the cluster was created with, else V(local).
    type: str
    choices: [local, openstack]
  subnet:
    description:
      - For provider C(local), the IPv4 subnet of the cluster network in CIDR form (keep tests in
        198.18.0.0/15). Empty lets the provider pick a free one.
    type: str
    default: ""
  image:
    description:
      - Host image of managers and workers; a Docker image for C(local), a Glance image for
        C(openstack) (default V(carina-host) there).
    type: str
    default: carina-host:bookworm-engine
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
        description: Flavor of managers on Nova; defaults to O(openstack.flavor).
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
        description: V(vm) (Nova) or V(bm) (Ironic) for managers (default V(vm)).
        type: str
        choices: [vm, bm]
      server_type:
        description: V(vm) (Nova) or V(bm) (Ironic) for workers (default V(vm)).
        type: str
        choices: [vm, bm]
      resource_class:
        description: Resource class of the bare metal nodes (default V(baremetal)).
        type: str
  extra_sans:
    description: More names and addresses put into every manager's server certificate.
    type: list
    elements: str
    default: []
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
      sample: swarm
    masters:
      description: Number of managers.
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
    extra_sans:
      description: Extra names and addresses of the managers' certificates.
      type: list
      elements: str
    state_dir:
      description: State folder of the cluster.
      type: str
    pki_dir:
      description: Folder of the cluster's PKI (CA key included), inside the state folder.
      type: str
    ssh_key:
      description: Path of the cluster's SSH private key.
      type: str
    managers:
      description: Host names of the managers.
      type: list
      elements: str
      sample: [demo-manager-1, demo-manager-2, demo-manager-3]
    workers:
      description: Host names of the workers.
      type: list
      elements: str
      sample: [demo-worker-1]
    lb:
      description: Host name of the load balancer.
      type: str
      sample: demo-lb
    groups:
      description: Inventory groups of the cluster.
      type: dict
      sample: {managers: demo_managers, workers: demo_workers, lb: demo_lb, nodes: demo_nodes, removing: demo_removing}
    recorded:
      description: The spec recorded by an earlier run, if any.
      type: dict
    adding:
      description: Hosts a scale adds (empty for create).
      type: list
      elements: str
    removing_managers:
      description: Managers a scale removes (demoted and removed one at a time).
      type: list
      elements: str
    removing_workers:
      description: Workers a scale removes (drained, removed from the swarm, then deleted).
      type: list
      elements: str
"""

import ipaddress
import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")
MAX_MASTERS = 7


def check(module):
    """Return a list of problems with the spec, each saying what to change."""
    p = module.params
    problems = []
    if not NAME_RE.match(p["name"]) or "--" in p["name"]:
        problems.append(
            "name %r: use 1 to 40 lower-case letters, digits and single '-', starting with a letter "
            "and not ending with '-'" % p["name"]
        )
    if p["operation"] == "delete":
        return problems
    masters = p["masters"]
    if masters < 1 or masters > MAX_MASTERS or masters % 2 == 0:
        hint = ""
        if masters % 2 == 0 and 0 < masters <= MAX_MASTERS + 1:
            hint = " (use %d or %d)" % (max(1, masters - 1), min(MAX_MASTERS, masters + 1))
        problems.append(
            "masters=%d: the number of managers must be odd, from 1 to %d, so that a majority survives "
            "failures%s" % (masters, MAX_MASTERS, hint)
        )
    if p["nodes"] < 0:
        problems.append("nodes=%d: the number of workers must be 0 or more" % p["nodes"])
    if p["subnet"]:
        try:
            net = ipaddress.ip_network(p["subnet"], strict=True)
            if net.version != 4:
                problems.append("subnet %s: use an IPv4 network" % p["subnet"])
            elif net.num_addresses - 3 < masters + p["nodes"] + 1:
                problems.append(
                    "subnet %s has room for %d hosts, the cluster needs %d: use a larger subnet"
                    % (p["subnet"], net.num_addresses - 3, masters + p["nodes"] + 1)
                )
        except ValueError as exc:
            problems.append("subnet %r is not an IPv4 network in CIDR form (%s), for example 198.18.10.0/24"
                            % (p["subnet"], exc))
    for san in p["extra_sans"]:
        if not san or " " in san or "/" in san:
            problems.append("extra_sans entry %r is neither a DNS name nor an IP address" % san)
    return problems


def next_names(prefix, existing, count):
    """`count` new names <prefix>-N after the highest N in use."""
    used = [int(n.rsplit("-", 1)[1]) for n in existing if n.rsplit("-", 1)[-1].isdigit()]
    start = max(used, default=0) + 1
    return ["%s-%d" % (prefix, i) for i in range(start, start + count)]


def plan_scale(module, name, recorded):
    """Final managers/workers and what to add and remove, from the recorded cluster."""
    p = module.params
    managers = list(recorded.get("managers") or [])
    workers = list(recorded.get("workers") or [])
    unknown = [n for n in p["remove"] if n not in workers]
    if unknown:
        hint = " (managers are removed by lowering masters)" if any(n in managers for n in unknown) else ""
        module.fail_json(msg="cannot remove %s: not workers of cluster %s (workers: %s)%s"
                         % (", ".join(unknown), name, ", ".join(workers) or "none", hint))
    kept = [n for n in workers if n not in p["remove"]]
    removing_workers = list(p["remove"]) + [n for n in recorded.get("removing_workers") or [] if n not in workers]
    if len(kept) > p["nodes"]:
        removing_workers += kept[p["nodes"]:]
        kept = kept[:p["nodes"]]
    new_workers = next_names("%s-worker" % name, workers, p["nodes"] - len(kept))
    removing_managers = managers[p["masters"]:] + [
        n for n in recorded.get("removing_managers") or [] if n not in managers]
    kept_managers = managers[:p["masters"]]
    new_managers = next_names("%s-manager" % name, managers, p["masters"] - len(kept_managers))
    return dict(
        managers=kept_managers + new_managers,
        workers=kept + new_workers,
        adding=new_managers + new_workers,
        removing_managers=removing_managers,
        removing_workers=removing_workers,
    )


OPENSTACK_DEFAULTS = dict(cloud=None, flavor="m1.small", master_flavor=None, fixed_network="private",
                          fixed_subnet="private-subnet", external_network="public", floating_ip_enabled=False,
                          master_server_type="vm", server_type="vm", resource_class="baremetal")


def fill_provider(module):
    """Provider and its options left out: the recorded ones when the cluster exists, else the defaults."""
    p = module.params
    state_dir = p["state_dir"] or os.path.join(p["home"], "clusters", p["name"])
    recorded = recorded_spec(state_dir) if NAME_RE.match(p["name"]) else {}
    p["provider"] = p["provider"] or recorded.get("provider") or "local"
    given = p["openstack"] or {}
    before = dict(recorded.get("openstack") or {})
    before.setdefault("cloud", recorded.get("cloud") or None)
    p["openstack"] = dict((key, given.get(key) if given.get(key) is not None else before.get(key, default))
                          for key, default in OPENSTACK_DEFAULTS.items())
    p["openstack"]["master_flavor"] = p["openstack"]["master_flavor"] or p["openstack"]["flavor"]


def fill_counts(module):
    """Counts left out: the recorded ones when the cluster exists (less the named removals), else 1."""
    p = module.params
    if p["operation"] == "delete":
        p["masters"], p["nodes"] = p["masters"] or 1, p["nodes"] or 0
        return
    state_dir = p["state_dir"] or os.path.join(p["home"], "clusters", p["name"])
    recorded = recorded_spec(state_dir) if NAME_RE.match(p["name"]) else {}
    if p["masters"] is None:
        p["masters"] = len(recorded.get("managers") or []) or 1
    if p["nodes"] is None:
        workers = recorded.get("workers")
        p["nodes"] = max(0, len(workers) - len(p["remove"])) if workers is not None else 1


def recorded_spec(state_dir):
    path = os.path.join(state_dir, "cluster.json")
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {"unreadable": path}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            coe=dict(type="str", choices=["swarm"], default="swarm"),
            masters=dict(type="int"),
            nodes=dict(type="int"),
            provider=dict(type="str", choices=["local", "openstack"]),
            openstack=dict(type="dict", default={}, options=dict(
                cloud=dict(type="str"),
                flavor=dict(type="str"),
                master_flavor=dict(type="str"),
                fixed_network=dict(type="str"),
                fixed_subnet=dict(type="str"),
                external_network=dict(type="str"),
                floating_ip_enabled=dict(type="bool"),
                master_server_type=dict(type="str", choices=["vm", "bm"]),
                server_type=dict(type="str", choices=["vm", "bm"]),
                resource_class=dict(type="str"),
            )),
            subnet=dict(type="str", default=""),
            image=dict(type="str", default="carina-host:bookworm-engine"),
            lb_image=dict(type="str", default="carina-host:bookworm-lb"),
            extra_sans=dict(type="list", elements="str", default=[]),
            home=dict(type="path", default="~/.carina"),
            state_dir=dict(type="path"),
            operation=dict(type="str", choices=["create", "scale", "delete"], default="create"),
            remove=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    fill_counts(module)
    fill_provider(module)
    problems = check(module)
    if problems:
        module.fail_json(msg="cluster spec of %s is not valid: %s" % (p["name"], "; ".join(problems)),
                         problems=problems)

    name = p["name"]
    state_dir = p["state_dir"] or os.path.join(p["home"], "clusters", name)
    recorded = recorded_spec(state_dir)
    if "unreadable" in recorded:
        module.fail_json(msg="cannot read %s; fix or remove it" % recorded["unreadable"])
    if recorded and recorded.get("name") not in (None, name):
        module.fail_json(msg="state folder %s belongs to cluster %s, not %s; choose another state_dir"
                         % (state_dir, recorded.get("name"), name))
    if recorded and p["operation"] == "create":
        changes = ["%s %s -> %s" % (key, recorded.get(key), p[key])
                   for key in ("coe", "masters", "nodes", "provider")
                   if key in recorded and recorded[key] != p[key]]
        if p["subnet"] and recorded.get("subnet") and recorded["subnet"] != p["subnet"]:
            changes.append("subnet %s -> %s" % (recorded["subnet"], p["subnet"]))
        if changes:
            module.fail_json(
                msg="cluster %s already exists with another spec (%s); change the counts with the "
                "rax.carina.scale playbook, or delete the cluster first" % (name, ", ".join(changes))
            )

    plan = dict(managers=["%s-manager-%d" % (name, i) for i in range(1, p["masters"] + 1)],
                workers=["%s-worker-%d" % (name, i) for i in range(1, p["nodes"] + 1)],
                adding=[], removing_managers=[], removing_workers=[])
    if p["operation"] == "scale":
        if not recorded:
            module.fail_json(msg="cluster %s was not found (no %s); create it first"
                             % (name, os.path.join(state_dir, "cluster.json")))
        for key in ("coe", "provider"):
            if recorded.get(key) not in (None, p[key]):
                module.fail_json(msg="scale cannot change %s (%s -> %s); delete and create the cluster"
                                 % (key, recorded.get(key), p[key]))
        plan = plan_scale(module, name, recorded)
    elif recorded.get("managers"):
        # Converging an existing cluster: keep the host names it has (a scale may have renamed).
        plan.update(managers=recorded["managers"], workers=recorded.get("workers", []))

    cluster = dict(
        name=name,
        coe=p["coe"],
        masters=p["masters"],
        nodes=p["nodes"],
        provider=p["provider"],
        subnet=p["subnet"] or recorded.get("subnet", ""),
        image="carina-host" if p["provider"] == "openstack" and p["image"] == "carina-host:bookworm-engine"
        else p["image"],
        lb_image=p["lb_image"],
        openstack=p["openstack"],
        extra_sans=p["extra_sans"],
        state_dir=state_dir,
        pki_dir=os.path.join(state_dir, "pki"),
        ssh_key=os.path.join(state_dir, "ssh", "id_ed25519"),
        lb="%s-lb" % name,
        groups=dict(
            managers="%s_managers" % name.replace("-", "_"),
            workers="%s_workers" % name.replace("-", "_"),
            lb="%s_lb" % name.replace("-", "_"),
            nodes="%s_nodes" % name.replace("-", "_"),
            removing="%s_removing" % name.replace("-", "_"),
        ),
        recorded=recorded,
        **plan
    )
    module.exit_json(changed=False, cluster=cluster)


if __name__ == "__main__":
    main()
