"""rax.carina.local_hosts against the real engine: create, idempotence, prune, bad input, absent."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from tests.helpers import docker, owned_objects, run_module, ssh

CLUSTER = "it-hosts"
SUBNET = "198.18.201.0/24"
# The clusters this module makes (conftest checks that nothing of theirs is left).
CLUSTERS = (CLUSTER, "Bad_Name")


@pytest.fixture
def cluster():
    yield CLUSTER
    run_module("rax.carina.local_hosts", {"cluster": CLUSTER, "state": "absent"})


def hosts_args(key, names, **extra):
    return {
        "cluster": CLUSTER,
        "subnet": SUBNET,
        "image": "carina-host:bookworm",
        "public_key": key.with_suffix(".pub").read_text(),
        "hosts": [{"name": n, "role": "worker", "engine_volume": True} for n in names],
        **extra,
    }


def assert_pinned(known_hosts, hosts, ssh_key):
    """One entry per host, each with the host's own key; ssh refuses a file that holds another key."""
    entries = [line.split() for line in known_hosts.read_text().splitlines() if not line.startswith("#")]
    assert sorted(e[0] for e in entries) == sorted(f"{h['name']},{h['address']}" for h in hosts), entries
    assert len({e[2] for e in entries}) == len(hosts), "hosts share a host key"
    forged = ssh_key.parent / "forged_hosts"
    forged.write_text(known_hosts.read_text().replace(entries[0][2], entries[1][2]))
    mismatch = ssh(ssh_key, entries[0][0].split(",")[1], "true", known_hosts=forged)
    assert mismatch.returncode == 255 and "Host key verification failed" in mismatch.stderr, mismatch


def test_lifecycle(cluster, ssh_key):
    names = [f"{CLUSTER}-1", f"{CLUSTER}-2"]
    known_hosts = ssh_key.parent / "known_hosts"
    args = hosts_args(ssh_key, names, known_hosts=str(known_hosts))

    rc, res = run_module("rax.carina.local_hosts", args, check=True)
    assert rc == 0, res
    assert res["changed"] is True
    assert res["created"] == names
    assert owned_objects(CLUSTER) == {"containers": [], "volumes": [], "networks": []}, "check mode created things"
    assert not known_hosts.exists(), "check mode wrote the known_hosts file"

    rc, res = run_module("rax.carina.local_hosts", args)
    assert rc == 0, res
    assert res["changed"] is True
    assert sorted(h["name"] for h in res["hosts"]) == names
    for host in res["hosts"]:
        assert host["status"] == "running"
        assert ipaddress.ip_address(host["address"]) in ipaddress.ip_network(SUBNET)
        # Strict host key checking with the file the module wrote: the key is the host's own.
        out = ssh(ssh_key, host["address"], "hostname; systemctl is-system-running; test -d /var/lib/docker",
                  known_hosts=known_hosts)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [host["name"], "running"]
    assert_pinned(known_hosts, res["hosts"], ssh_key)
    objs = owned_objects(CLUSTER)
    assert sorted(objs["containers"]) == names
    assert sorted(objs["volumes"]) == [f"{n}-engine" for n in names]
    assert objs["networks"] == [f"carina-{CLUSTER}"]

    # A key that is not the cluster's is refused.
    other = ssh_key.parent / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    refused = ssh(other, res["hosts"][0]["address"], "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused

    recorded = known_hosts.read_text()
    rc, again = run_module("rax.carina.local_hosts", args)
    assert rc == 0 and again["changed"] is False, again
    assert known_hosts.read_text() == recorded
    assert [h["address"] for h in again["hosts"]] == [h["address"] for h in res["hosts"]]

    # A stopped host is started again.
    docker("stop", "-t", "1", names[1])
    rc, res = run_module("rax.carina.local_hosts", args)
    assert rc == 0 and res["changed"] is True and res["started"] == [names[1]], res

    # Prune removes the host that is no longer listed, with its volume.
    pruned = hosts_args(ssh_key, names[:1], prune=True, known_hosts=str(known_hosts))
    rc, res = run_module("rax.carina.local_hosts", pruned, check=True)
    assert rc == 0 and res["changed"] is True and names[1] in res["removed"]
    assert sorted(owned_objects(CLUSTER)["containers"]) == names
    rc, res = run_module("rax.carina.local_hosts", pruned)
    assert rc == 0 and res["changed"] is True, res
    assert owned_objects(CLUSTER)["containers"] == names[:1]
    assert owned_objects(CLUSTER)["volumes"] == [f"{names[0]}-engine"]
    assert names[1] not in known_hosts.read_text() and f"{names[0]}," in known_hosts.read_text()

    rc, res = run_module("rax.carina.local_hosts", {"cluster": CLUSTER, "state": "absent"})
    assert rc == 0 and res["changed"] is True
    assert owned_objects(CLUSTER) == {"containers": [], "volumes": [], "networks": []}
    rc, res = run_module("rax.carina.local_hosts", {"cluster": CLUSTER, "state": "absent"})
    assert rc == 0 and res["changed"] is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subnet": "198.18.201.0/33"}, "not a valid IPv4 network"),
        ({"subnet": "198.18.201.0/30"}, "/29 or larger"),
        ({"cluster": "Bad_Name"}, "is not a valid name"),
        ({"hosts": [{"name": "dup", "role": "worker"}, {"name": "dup", "role": "worker"}]}, "repeated: dup"),
        ({"hosts": [{"name": "it-hosts-1", "role": "worker", "address": "198.18.201.1"}]}, "other than the gateway"),
        ({"image": "carina-host:missing"}, "build it with `make images`"),
        ({"public_key": ""}, "public_key is required"),
    ],
)
def test_bad_input_fails_before_anything_exists(cluster, ssh_key, change, message):
    args = hosts_args(ssh_key, [f"{CLUSTER}-1"]) | change
    rc, res = run_module("rax.carina.local_hosts", args)
    assert rc != 0
    assert message in res["msg"]
    assert owned_objects(args["cluster"]) == {"containers": [], "volumes": [], "networks": []}


def test_subnet_in_use_and_name_taken(cluster, ssh_key):
    """A subnet another network uses, or a container name taken, fail before anything is made."""
    docker("network", "create", "--subnet", "198.18.202.0/24", "it-foreign-net")
    docker("create", "--name", f"{CLUSTER}-taken", "carina-host:bookworm")
    try:
        rc, res = run_module("rax.carina.local_hosts", hosts_args(ssh_key, [f"{CLUSTER}-1"], subnet="198.18.202.0/25"))
        assert rc != 0 and "already in use by Docker network it-foreign-net" in res["msg"]
        rc, res = run_module("rax.carina.local_hosts", hosts_args(ssh_key, [f"{CLUSTER}-taken"]))
        assert rc != 0 and "already exists and is not part of cluster" in res["msg"]
        assert owned_objects(CLUSTER) == {"containers": [], "volumes": [], "networks": []}
    finally:
        docker("rm", "-f", f"{CLUSTER}-taken")
        docker("network", "rm", "it-foreign-net")
