# Copyright: rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The Kubernetes certificate plan, fed to the real cluster_pki and checked with cryptography."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.rax.carina.plugins.filter.kubernetes import first_address, kubernetes_pki
from ansible_collections.rax.carina.plugins.module_utils import pki

NODES = [
    {"name": "k-master-1", "address": "198.18.7.2", "role": "master"},
    {"name": "k-master-2", "address": "198.18.7.3", "role": "master"},
    {"name": "k-node-1", "address": "198.18.7.4", "role": "worker"},
]
ADMIN = [{"name": "admin", "common_name": "admin", "organization": ["system:masters"]}]


def plan():
    return kubernetes_pki(NODES, ["198.18.7.9", "k-lb"], ["api.example.com"], "198.19.224.0/20", "cluster.local", ADMIN)


def by_name(entries):
    return {entry["name"]: entry for entry in entries}


def test_apiserver_names_everything_clients_reach_it_by():
    servers = by_name(plan()["cluster"]["servers"])
    assert servers["apiserver-k-master-1"]["sans"] == [
        "k-master-1", "198.18.7.2", "198.18.7.9", "k-lb", "api.example.com", "kubernetes", "kubernetes.default",
        "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "198.19.224.1", "127.0.0.1", "localhost"]
    assert "apiserver-k-node-1" not in servers
    assert servers["kubelet-k-node-1"] == {"name": "kubelet-k-node-1", "common_name": "k-node-1",
                                           "sans": ["k-node-1", "198.18.7.4"]}


def test_node_identities_follow_the_node_authorizer():
    clients = by_name(plan()["cluster"]["clients"])
    assert clients["node-k-node-1"] == {"name": "node-k-node-1", "common_name": "system:node:k-node-1",
                                        "organization": ["system:nodes"]}
    assert clients["proxy-k-master-2"]["common_name"] == "system:kube-proxy"
    assert clients["controller-manager-k-master-1"]["common_name"] == "system:kube-controller-manager"
    assert clients["scheduler-k-master-1"]["common_name"] == "system:kube-scheduler"
    assert clients["admin"]["organization"] == ["system:masters"]
    # Workers hold no control-plane identity.
    assert not [name for name in clients if name.endswith("k-node-1") and not name.startswith(("node-", "proxy-"))]


def test_etcd_and_front_proxy_have_their_own_cas():
    out = plan()
    assert [s["name"] for s in out["etcd"]["servers"]] == ["etcd-k-master-1", "etcd-k-master-2"]
    assert all(s["usage"] == "peer" for s in out["etcd"]["servers"])
    assert {c["common_name"] for c in out["etcd"]["clients"]} == {"kube-apiserver-etcd-client"}
    assert {c["common_name"] for c in out["front_proxy"]["clients"]} == {"front-proxy-client"}


def test_the_plan_is_valid_cluster_pki_input_and_issues_what_it_says(tmp_path):
    out = plan()
    result = pki.run({"path": str(tmp_path), "cluster_name": "k", **out["cluster"], "keypairs": [{"name": "sa"}]})
    etcd = pki.run({"path": str(tmp_path / "etcd"), "cluster_name": "k etcd", **out["etcd"]})
    assert len(result["servers"]) == 5 and len(etcd["servers"]) == 2
    api = x509.load_pem_x509_certificate((tmp_path / "server-apiserver-k-master-1.pem").read_bytes())
    usage = api.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    peer = x509.load_pem_x509_certificate((tmp_path / "etcd" / "server-etcd-k-master-1.pem").read_bytes())
    assert set(peer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    node = x509.load_pem_x509_certificate((tmp_path / "client-node-k-node-1.pem").read_bytes())
    assert node.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    # The etcd CA is not the cluster CA: a cluster certificate does not pass as an etcd client.
    etcd_ca = x509.load_pem_x509_certificate((tmp_path / "etcd" / "ca.pem").read_bytes())
    with pytest.raises(ValueError):
        node.verify_directly_issued_by(etcd_ca)


def test_bad_input_is_refused():
    with pytest.raises(AnsibleFilterError, match="each node needs name, address and role"):
        kubernetes_pki([{"name": "x"}])
    with pytest.raises(AnsibleFilterError, match="service_cidr 'nope' is not a network"):
        kubernetes_pki(NODES, service_cidr="nope")


def test_first_address():
    assert first_address("198.19.224.0/20") == "198.19.224.1"
    assert first_address("198.19.224.0/20", 10) == "198.19.224.10"
    with pytest.raises(AnsibleFilterError):
        first_address("x")
