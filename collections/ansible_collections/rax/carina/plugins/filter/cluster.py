# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters that turn a cluster's node list into module input."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

LOCAL_SANS = ["127.0.0.1", "localhost"]


def server_certs(nodes, endpoint_sans=None, extra_sans=None):
    """One rax.carina.cluster_pki server entry per node.

    Every node's certificate names the node (name, address, 127.0.0.1, localhost); managers'
    certificates also name the cluster endpoint and the extra SANs, since clients reach the
    managers through the load balancer.
    """
    out = []
    for node in nodes or []:
        try:
            name, address, role = node["name"], node["address"], node["role"]
        except (KeyError, TypeError) as exc:
            raise AnsibleFilterError("server_certs: each node needs name, address and role (%s)" % exc) from exc
        sans = [name, *LOCAL_SANS]
        if address:
            sans.insert(1, address)
        if role == "manager":
            sans.extend(s for s in (endpoint_sans or []) if s)
            sans.extend(extra_sans or [])
        out.append({"name": name, "sans": sans})
    return out


def cluster_nodes(hostnames, hostvars):
    """[{name, address, role}] of inventory hosts, from their carina_address and carina_role."""
    nodes = []
    for host in hostnames or []:
        hv = hostvars[host]
        nodes.append({"name": host, "address": hv.get("carina_address", ""), "role": hv.get("carina_role", "")})
    return nodes


class FilterModule:
    def filters(self):
        return {"server_certs": server_certs, "cluster_nodes": cluster_nodes}
