# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The certificates of a Kubernetes cluster, as rax.carina.cluster_pki input (one entry per CA)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

LOCAL_SANS = ["127.0.0.1", "localhost"]


def _unique(values):
    return [value for index, value in enumerate(values) if value and value not in values[:index]]


def _nodes(nodes, what):
    out = []
    for node in nodes or []:
        try:
            out.append({"name": node["name"], "address": node.get("address") or "", "role": node["role"]})
        except (KeyError, TypeError) as exc:
            raise AnsibleFilterError("kubernetes_pki: each %s needs name, address and role (%s)" % (what, exc)) from exc
    return out


def kubernetes_pki(nodes, endpoint_sans=None, extra_sans=None, service_cidr="198.19.224.0/20",  # noqa: PLR0917
                   cluster_domain="cluster.local", clients=None):
    """{cluster: {servers, clients}, etcd: {servers, clients}, front_proxy: {clients}}.

    Every node: a kubelet serving certificate (kubelet-<node>), its kubelet client (node-<node>,
    CN system:node:<node>, O system:nodes) and kube-proxy's (proxy-<node>). Every master besides:
    the API server's serving certificate (apiserver-<master>: its own names, the endpoint's, the
    extra SANs, the first service address and the kubernetes.default names, 127.0.0.1), the API
    server's clients of the kubelets, etcd and the aggregation layer, the controller-manager's and
    scheduler's clients, an administrator client for the playbooks' kubectl on that master, and an
    etcd peer certificate (etcd-<master>). Keys of one host's certificates are never shared.
    """
    try:
        first_service = str(next(ipaddress.ip_network(service_cidr).hosts()))
    except (ValueError, StopIteration, TypeError) as exc:
        raise AnsibleFilterError("kubernetes_pki: service_cidr %r is not a network (%s)" % (service_cidr, exc)) from exc
    nodes = _nodes(nodes, "node")
    masters = [node for node in nodes if node["role"] == "master"]
    api_names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.%s" % cluster_domain, first_service]
    cluster_servers, cluster_clients = [], list(clients or [])
    etcd_servers, etcd_clients, proxy_clients = [], [], []
    for node in nodes:
        name, own = node["name"], _unique([node["name"], node["address"]])
        cluster_servers.append({"name": "kubelet-%s" % name, "common_name": name, "sans": own})
        cluster_clients.append({"name": "node-%s" % name, "common_name": "system:node:%s" % name,
                                "organization": ["system:nodes"]})
        cluster_clients.append({"name": "proxy-%s" % name, "common_name": "system:kube-proxy"})
    for node in masters:
        name, own = node["name"], _unique([node["name"], node["address"]])
        cluster_servers.append({"name": "apiserver-%s" % name, "common_name": "kube-apiserver",
                                "sans": _unique(own + list(endpoint_sans or []) + list(extra_sans or [])
                                                + api_names + LOCAL_SANS)})
        cluster_clients += [
            {"name": "apiserver-kubelet-%s" % name, "common_name": "kube-apiserver-kubelet-client"},
            {"name": "controller-manager-%s" % name, "common_name": "system:kube-controller-manager"},
            {"name": "scheduler-%s" % name, "common_name": "system:kube-scheduler"},
            {"name": "master-admin-%s" % name, "common_name": "carina-master-admin:%s" % name,
             "organization": ["system:masters"]},
        ]
        etcd_servers.append({"name": "etcd-%s" % name, "common_name": name, "sans": _unique(own + LOCAL_SANS),
                             "usage": "peer"})
        etcd_clients.append({"name": "apiserver-%s" % name, "common_name": "kube-apiserver-etcd-client"})
        proxy_clients.append({"name": "front-proxy-%s" % name, "common_name": "front-proxy-client"})
    return {
        "cluster": {"servers": cluster_servers, "clients": cluster_clients},
        "etcd": {"servers": etcd_servers, "clients": etcd_clients},
        "front_proxy": {"servers": [], "clients": proxy_clients},
    }


def first_address(cidr, index=1):
    """The index-th address of a network (1: the first host address), as a string."""
    try:
        net = ipaddress.ip_network(cidr)
        return str(net.network_address + int(index))
    except (ValueError, TypeError) as exc:
        raise AnsibleFilterError("first_address: %r is not a network (%s)" % (cidr, exc)) from exc


class FilterModule:
    def filters(self):
        return {"kubernetes_pki": kubernetes_pki, "first_address": first_address}
