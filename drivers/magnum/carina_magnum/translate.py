"""What a Magnum cluster and its template ask for, as a carina create; what carina reports, as Magnum's fields.

Plain data in and out (no Magnum import), so that the rules are tested without a Magnum.
"""

from __future__ import annotations

from collections.abc import Mapping

from carina.errors import CarinaError
from carina.service.magnum import MagnumAPI

COE = "kubernetes"
CLOUD = "carina-trust"  # the cloud name in each cluster's clouds.yaml (the trust's credentials)
RUNTIMES = ("containerd",)
# Magnum's network drivers: carina's pod network needs no registry (CNI bridge + routes between nodes); a CNI
# plugin such as flannel or calico is applied from a manifest when the label cni_manifest gives one.
NETWORK_DRIVERS = ("flannel", "calico", "carina")
SERVER_TYPES = ("vm", "bm")
IN_PROGRESS = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS")


def hex_id(uuid: str) -> str:
    """Magnum's uuid (8-4-4-4-12) as carina's cluster id (32 hex digits)."""
    return uuid.replace("-", "").lower()


def coe_options(labels: Mapping[str, str], binaries: str) -> dict:
    """The Kubernetes options the labels set (by carina's names or the ones Magnum's templates use, as the carina
    service reads them), and the binary source of the driver's configuration unless a label gives one."""
    options = MagnumAPI.coe_options(COE, dict(labels))
    if binaries and "binaries" not in options:
        options["binaries"] = binaries
    return options


def create_request(cluster: Mapping, template: Mapping, *, ssh_cidr: str, binaries: str) -> dict:
    """carina.api.Client.create's arguments (but name, id, credentials) for a Magnum cluster; CarinaError with
    every problem of the request when carina cannot make what it asks for."""
    labels = dict(template.get("labels") or {}) | dict(cluster.get("labels") or {})
    problems = []
    if template.get("coe") != COE:
        problems.append(f"coe {template.get('coe')!r}: this driver makes Kubernetes clusters only")
    runtime = labels.get("container_runtime") or "containerd"
    if runtime not in RUNTIMES:
        problems.append(f"label container_runtime={runtime}: the hosts run containerd only")
    network = template.get("network_driver") or "flannel"
    if network not in NETWORK_DRIVERS:
        problems.append(f"network_driver {network!r}: one of {', '.join(NETWORK_DRIVERS)} (flannel and calico are "
                        f"applied from the label cni_manifest when it is set, else carina's routed pod network)")
    server_type = template.get("server_type") or "vm"
    if server_type not in SERVER_TYPES:
        problems.append(f"server_type {server_type!r}: vm (Nova) or bm (Ironic)")
    if template.get("tls_disabled"):
        problems.append("tls_disabled: carina's clusters always use TLS")
    if not template.get("image_id"):
        problems.append("the template has no image")
    if problems:
        raise CarinaError("; ".join(problems), problems=problems)
    openstack = {
        "cloud": CLOUD,
        "flavor": cluster.get("flavor_id") or template.get("flavor_id"),
        "master_flavor": cluster.get("master_flavor_id") or template.get("master_flavor_id"),
        "fixed_network": cluster.get("fixed_network") or template.get("fixed_network"),
        "fixed_subnet": cluster.get("fixed_subnet") or template.get("fixed_subnet"),
        "external_network": template.get("external_network_id"),
        "floating_ip_enabled": bool(cluster.get("floating_ip_enabled", template.get("floating_ip_enabled"))),
        "server_type": server_type,
        "master_server_type": server_type,
        "ssh_cidr": ssh_cidr,
        "api_cidrs": MagnumAPI.allowed_cidrs(labels),
    }
    return {
        "coe": COE,
        "masters": int(cluster.get("master_count") or 1),
        "nodes": int(cluster.get("node_count") if cluster.get("node_count") is not None else 1),
        "provider": "openstack",
        "openstack": {key: value for key, value in openstack.items() if value not in (None, "")},
        "image": str(template["image_id"]),
        "coe_options": coe_options(labels, binaries),
    }


STARTING = 300.0  # seconds a new cluster may be unknown to carina: the status sync can run while the create starts


def magnum_status(found, current: str, age: float = STARTING) -> tuple[str, str] | None:
    """The status and reason Magnum should show, from carina's cluster (None: carina knows no such cluster), or
    None when nothing changes. `age`: seconds since Magnum recorded the cluster."""
    if found is None:
        if current == "DELETE_IN_PROGRESS":
            return "DELETE_COMPLETE", ""
        # A create younger than STARTING may not have reached carina yet (the driver's create_cluster is starting).
        if current in IN_PROGRESS and not (current == "CREATE_IN_PROGRESS" and age < STARTING):
            prefix = current.split("_", 1)[0]
            return f"{prefix}_FAILED", "carina has no record of this cluster (its state folder was lost?)"
        return None
    if found.status == current:
        return None
    if found.status.endswith(("_COMPLETE", "_FAILED")) or found.status in IN_PROGRESS:
        return found.status, found.status_reason or ""
    return None


def addresses(record: Mapping) -> tuple[list[str], list[str]]:
    """The masters' and the workers' addresses (floating IPs where the hosts have them), in host order."""
    by_host = dict(record.get("addresses") or {})
    masters = [by_host[h] for h in record.get("master_hosts") or [] if by_host.get(h)]
    workers = [by_host[h] for h in record.get("worker_hosts") or [] if by_host.get(h)]
    return masters, workers


def removal_names(record: Mapping, given: list[str], server_names: Mapping[str, str]) -> list[str]:
    """Magnum names nodes to remove by server id or name; carina by host name (`server_names`: the cluster's
    servers, id -> name). CarinaError for one that is no worker of the cluster."""
    workers = list(record.get("worker_hosts") or [])
    names, unknown = [], []
    for item in given:
        host = item if item in workers else server_names.get(item)
        if host in workers:
            names.append(host)
        else:
            unknown.append(item)
    if unknown:
        raise CarinaError(f"nodes_to_remove: {', '.join(unknown)} are no workers of the cluster "
                          f"(its workers: {', '.join(workers) or 'none'})")
    return names
