"""The Magnum driver's rules (drivers/magnum/carina_magnum/translate.py), without a Magnum: what a cluster and its
template ask carina for, what is refused, and which status Magnum shows for what carina reports."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from carina.errors import CarinaError
from carina_magnum import translate

TEMPLATE = {"coe": "kubernetes", "image_id": "img-1", "flavor_id": "m1.small", "master_flavor_id": "m1.medium",
            "external_network_id": "public", "fixed_network": "private", "fixed_subnet": "private-subnet",
            "floating_ip_enabled": False, "server_type": "vm", "network_driver": "flannel", "tls_disabled": False,
            "labels": {"kube_tag": "v1.20.2", "container_runtime": "containerd", "auto_healing_enabled": "false"}}
CLUSTER = {"master_count": 3, "node_count": 2, "labels": {"service_cluster_ip_range": "198.19.224.0/20"},
           "flavor_id": None, "master_flavor_id": None, "fixed_network": None, "fixed_subnet": None,
           "floating_ip_enabled": False}


def test_a_cluster_and_its_template_become_a_carina_create():
    request = translate.create_request(CLUSTER, TEMPLATE, ssh_cidr="198.18.0.0/15", binaries="")
    assert request == {
        "coe": "kubernetes", "masters": 3, "nodes": 2, "provider": "openstack", "image": "img-1",
        "openstack": {"cloud": translate.CLOUD, "flavor": "m1.small", "master_flavor": "m1.medium",
                      "fixed_network": "private", "fixed_subnet": "private-subnet", "external_network": "public",
                      "floating_ip_enabled": False, "server_type": "vm", "master_server_type": "vm",
                      "ssh_cidr": "198.18.0.0/15"},
        # Magnum's label names, as carina's options; labels carina does not read are not options.
        "coe_options": {"kubernetes_version": "1.20.2", "service_cidr": "198.19.224.0/20"}}


def test_the_cluster_overrides_its_template_and_binaries_come_from_the_config():
    cluster = dict(CLUSTER, flavor_id="m1.large", node_count=0, floating_ip_enabled=True,
                   labels={"kube_tag": "v1.21.0"})
    request = translate.create_request(cluster, TEMPLATE, ssh_cidr="0.0.0.0/0", binaries="/srv/kube")
    assert request["openstack"]["flavor"] == "m1.large" and request["openstack"]["floating_ip_enabled"] is True
    assert request["nodes"] == 0
    assert request["coe_options"] == {"kubernetes_version": "1.21.0", "binaries": "/srv/kube"}
    assert "api_cidrs" not in request["openstack"]  # no master_lb_allowed_cidrs: anywhere


def test_master_lb_allowed_cidrs_become_the_api_cidrs():
    cluster = dict(CLUSTER, labels={"master_lb_allowed_cidrs": "198.19.200.0/24, 198.19.201.7/32,"})
    request = translate.create_request(cluster, TEMPLATE, ssh_cidr="0.0.0.0/0", binaries="")
    assert request["openstack"]["api_cidrs"] == ["198.19.200.0/24", "198.19.201.7/32"]


def test_what_carina_cannot_make_is_refused_with_every_reason():
    template = dict(TEMPLATE, coe="swarm-mode", network_driver="weave", server_type="container", tls_disabled=True,
                    image_id=None, labels={"container_runtime": "docker"})
    with pytest.raises(CarinaError) as refused:
        translate.create_request(CLUSTER, template, ssh_cidr="0.0.0.0/0", binaries="")
    assert refused.value.problems == [
        "coe 'swarm-mode': this driver makes Kubernetes clusters only",
        "label container_runtime=docker: the hosts run containerd only",
        "network_driver 'weave': one of flannel, calico, carina (flannel and calico are applied from the label "
        "cni_manifest when it is set, else carina's routed pod network)",
        "server_type 'container': vm (Nova) or bm (Ironic)",
        "tls_disabled: carina's clusters always use TLS",
        "the template has no image"]


def carina(status, reason=""):
    return SimpleNamespace(status=status, status_reason=reason)


@pytest.mark.parametrize(("found", "current", "want"), [
    (carina("CREATE_IN_PROGRESS"), "CREATE_IN_PROGRESS", None),
    (carina("CREATE_COMPLETE"), "CREATE_IN_PROGRESS", ("CREATE_COMPLETE", "")),
    (carina("CREATE_FAILED", "task X failed on os-1: no valid host"), "CREATE_IN_PROGRESS",
     ("CREATE_FAILED", "task X failed on os-1: no valid host")),
    (carina("UPDATE_COMPLETE"), "UPDATE_IN_PROGRESS", ("UPDATE_COMPLETE", "")),
    (carina("DELETE_FAILED", "Octavia refused"), "DELETE_IN_PROGRESS", ("DELETE_FAILED", "Octavia refused")),
    (None, "DELETE_IN_PROGRESS", ("DELETE_COMPLETE", "")),
    (None, "CREATE_IN_PROGRESS",
     ("CREATE_FAILED", "carina has no record of this cluster (its state folder was lost?)")),
    (None, "CREATE_COMPLETE", None),
])
def test_magnum_shows_what_carina_reports(found, current, want):
    assert translate.magnum_status(found, current) == want


def test_a_create_that_has_not_reached_carina_yet_is_not_failed():
    """The status sync may run while create_cluster is still starting carina's run."""
    assert translate.magnum_status(None, "CREATE_IN_PROGRESS", age=2.0) is None
    assert translate.magnum_status(None, "CREATE_IN_PROGRESS", age=translate.STARTING)[0] == "CREATE_FAILED"
    assert translate.magnum_status(None, "DELETE_IN_PROGRESS", age=2.0) == ("DELETE_COMPLETE", "")


def test_addresses_and_removals_by_name_or_server_id():
    record = {"master_hosts": ["k-master-1"], "worker_hosts": ["k-node-1", "k-node-2"],
              "addresses": {"k-master-1": "198.18.100.11", "k-node-1": "198.18.100.12", "k-node-2": "198.18.100.13"}}
    assert translate.addresses(record) == (["198.18.100.11"], ["198.18.100.12", "198.18.100.13"])
    servers = {"4f1c": "k-node-2", "9a9a": "k-master-1"}
    assert translate.removal_names(record, ["k-node-1", "4f1c"], servers) == ["k-node-1", "k-node-2"]
    with pytest.raises(CarinaError, match="9a9a, nope are no workers of the cluster"):
        translate.removal_names(record, ["9a9a", "nope"], servers)
    assert translate.hex_id("5B1C4E1A-0C1B-4F7A-9C44-3D2E1F0A9B8C") == "5b1c4e1a0c1b4f7a9c443d2e1f0a9b8c"
