# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters that turn a cluster's node list into module input."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

LOCAL_SANS = ["127.0.0.1", "localhost"]


DEFAULT_PROFILE = {"master": ["node", "endpoint", "extra"], "worker": ["node"]}


def server_certs(nodes, endpoint_sans=None, extra_sans=None, server_sans=None):
    """One rax.carina.cluster_pki server entry per node.

    What each certificate names comes from the COE contract's C(pki.server_sans), per role:
    C(node) (the node's name, address, 127.0.0.1, localhost), C(endpoint) (the load balancer's
    names and addresses, for nodes that clients reach through it) and C(extra) (the extra SANs).
    """
    profile = server_sans or DEFAULT_PROFILE
    out = []
    for node in nodes or []:
        try:
            name, address, role = node["name"], node["address"], node["role"]
        except (KeyError, TypeError) as exc:
            raise AnsibleFilterError("server_certs: each node needs name, address and role (%s)" % exc) from exc
        parts = profile.get(role, ["node"])
        sans = []
        if "node" in parts:
            sans = [name, *([address] if address else []), *LOCAL_SANS]
        if "endpoint" in parts:
            sans.extend(s for s in (endpoint_sans or []) if s and s not in sans)
        if "extra" in parts:
            sans.extend(s for s in (extra_sans or []) if s not in sans)
        out.append({"name": name, "sans": sans})
    return out


def cluster_nodes(hostnames, hostvars):
    """[{name, address, role}] of inventory hosts, from their carina_address and carina_role."""
    nodes = []
    for host in hostnames or []:
        hv = hostvars[host]
        nodes.append({"name": host, "address": hv.get("carina_address", ""), "role": hv.get("carina_role", "")})
    return nodes


def inventory_nodes(hostnames, role, hostvars):
    """[{name, address, role}] of hosts an inventory names (provider static), before they carry
    carina_address: the address is carina_address if the inventory sets it, else ansible_host."""
    nodes = []
    for host in hostnames or []:
        hv = hostvars.get(host, {})
        address = hv.get("carina_address") or hv.get("ansible_host") or host
        nodes.append({"name": host, "address": address, "role": role})
    return nodes


CONNECTION_VARS = ("ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file",
                   "ansible_ssh_common_args")


def connection_vars(hostnames, hostvars):
    """{name: {address, ansible_host, ...}}: how to reach each host again when the inventory no longer
    names it (the static provider records this). Only connection settings; never a password."""
    out = {}
    for host in hostnames or []:
        if host not in hostvars:
            continue
        hv = hostvars[host]
        entry = {"address": hv.get("carina_address") or hv.get("ansible_host") or host}
        for key in CONNECTION_VARS:
            if hv.get(key) not in (None, ""):
                entry[key] = hv.get(key)
        entry.setdefault("ansible_host", host)
        out[host] = entry
    return out


def client_certs(clients, cluster):
    """rax.carina.cluster_pki client entries from a COE contract's pki.clients ({cluster} filled in)."""
    out = []
    for client in clients or []:
        try:
            entry = {"name": client["name"]}
        except (KeyError, TypeError) as exc:
            raise AnsibleFilterError("client_certs: each client needs a name (%s)" % exc) from exc
        if client.get("common_name"):
            entry["common_name"] = str(client["common_name"]).replace("{cluster}", cluster)
        for key in ("organization",):
            if client.get(key):
                entry[key] = client[key]
        out.append(entry)
    return out


def owner_refusal(owner_id, host, cluster, cluster_id):
    """Why a host marked as a node of cluster with owner_id may not be touched by this run (which knows
    cluster_id, or none); empty when the host carries no id or this run's own. Both COE drivers say it
    the same way."""
    owner_id, cluster_id = str(owner_id or ""), str(cluster_id or "")
    if owner_id in ("", cluster_id):
        return ""
    said = "%s is a node of cluster %s with id %s" % (host, cluster, owner_id)
    if cluster_id:
        return ("%s, not this state's %s: it was made from another state folder. Nothing was changed on it. Choose "
                "another name or other hosts, or run from the state folder that made it." % (said, cluster_id))
    return ("%s, and this run knows no id (its state folder has none). Nothing was changed on it. If that cluster is "
            "yours and its state is lost, give its id: -e carina_cluster_id=%s." % (said, owner_id))


class FilterModule:
    def filters(self):
        return {"server_certs": server_certs, "cluster_nodes": cluster_nodes, "client_certs": client_certs,
                "inventory_nodes": inventory_nodes, "connection_vars": connection_vars,
                "owner_refusal": owner_refusal}
