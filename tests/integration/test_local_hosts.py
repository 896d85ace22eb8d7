"""rax.carina.local_hosts against the real engine: create, idempotence, prune, bad input, absent."""

from __future__ import annotations

import ipaddress
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import docker, free_subnet, owned_objects, run_module, ssh

CLUSTER = "it-hosts"
SUBNET = free_subnet()
NET = ipaddress.ip_network(SUBNET)
FOREIGN = free_subnet()  # held by a network that is not carina's
# The clusters this module makes (conftest checks that nothing of theirs is left).
RACERS = tuple(f"{CLUSTER}-race{i}" for i in range(3))
CLUSTERS = (CLUSTER, "Bad_Name", *RACERS)


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
        ({"subnet": f"{NET.network_address}/33"}, "not a valid IPv4 network"),
        ({"subnet": f"{NET.network_address}/30"}, "/29 or larger"),
        ({"cluster": "Bad_Name"}, "is not a valid name"),
        ({"hosts": [{"name": "dup", "role": "worker"}, {"name": "dup", "role": "worker"}]}, "repeated: dup"),
        ({"hosts": [{"name": "it-hosts-1", "role": "worker", "address": str(NET[1])}]}, "other than the gateway"),
        ({"image": "carina-host:missing"}, "build it with `make images`"),
        ({"public_key": ""}, "public_key or ssh_key is required"),
        # The machine's real limit and count: no limit has room for a million instances per host.
        ({"inotify_per_host": 1_000_000}, "fs.inotify.max_user_instances is"),
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
    docker("network", "create", "--subnet", FOREIGN, "it-foreign-net")
    docker("create", "--name", f"{CLUSTER}-taken", "carina-host:bookworm")
    try:
        overlapping = FOREIGN.replace("/24", "/25")
        rc, res = run_module("rax.carina.local_hosts", hosts_args(ssh_key, [f"{CLUSTER}-1"], subnet=overlapping))
        assert rc != 0 and "already in use by Docker network it-foreign-net" in res["msg"]
        rc, res = run_module("rax.carina.local_hosts", hosts_args(ssh_key, [f"{CLUSTER}-taken"]))
        assert rc != 0 and "already exists and is not part of cluster" in res["msg"]
        assert owned_objects(CLUSTER) == {"containers": [], "volumes": [], "networks": []}
    finally:
        docker("rm", "-f", f"{CLUSTER}-taken")
        docker("network", "rm", "it-foreign-net")


def test_ssh_key_pair_made_kept_and_checked(cluster, tmp_path):
    """With ssh_key the module makes the cluster's key pair (0600 in a 0700 folder), installs it, keeps
    it on the next run, takes an existing key as it is, and refuses a key others can read."""
    key = tmp_path / "keys" / "id_ed25519"
    args = {"cluster": CLUSTER, "subnet": SUBNET, "image": "carina-host:bookworm", "ssh_key": str(key),
            "hosts": [{"name": f"{CLUSTER}-1", "role": "worker", "engine_volume": False}]}

    rc, res = run_module("rax.carina.local_hosts", args, check=True)
    assert rc == 0 and res["changed"] is True, res
    assert not key.parent.exists(), "check mode made the key folder"

    rc, res = run_module("rax.carina.local_hosts", args)
    assert rc == 0 and res["changed"] is True, res
    assert oct(key.stat().st_mode & 0o777) == "0o600" and oct(key.parent.stat().st_mode & 0o777) == "0o700"
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    pub = key.with_suffix(".pub")
    assert res["public_key"].split()[:2] == derived.stdout.split()[:2] == pub.read_text().split()[:2]
    assert res["public_key"].split()[2] == f"carina-{CLUSTER}"
    out = ssh(key, res["hosts"][0]["address"], "hostname")
    assert out.returncode == 0 and out.stdout.strip() == f"{CLUSTER}-1", out

    rc, again = run_module("rax.carina.local_hosts", args)
    assert rc == 0 and again["changed"] is False and again["public_key"] == res["public_key"], again

    # A lost .pub file comes back from the private key.
    pub.unlink()
    rc, again = run_module("rax.carina.local_hosts", args)
    assert rc == 0 and again["changed"] is True and pub.read_text().split() == res["public_key"].split(), again

    # An existing key pair (made by ssh-keygen) is taken as it is.
    other = tmp_path / "other" / "id_ed25519"
    other.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(other)], check=True)
    rc, res = run_module("rax.carina.local_hosts", args | {"ssh_key": str(other)})
    assert rc == 0 and res["changed"] is False, res  # the .pub file's comment is not compared
    assert res["public_key"].split()[:2] == other.with_suffix(".pub").read_text().split()[:2]

    # A key others can read, or a file that is not a key, is refused before anything changes.
    other.chmod(0o644)
    rc, res = run_module("rax.carina.local_hosts", args | {"ssh_key": str(other)})
    assert rc != 0 and "make it mode 0600" in res["msg"], res
    other.write_text("not a key\n")
    other.chmod(0o600)
    rc, res = run_module("rax.carina.local_hosts", args | {"ssh_key": str(other)})
    assert rc != 0 and "not an unencrypted OpenSSH private key" in res["msg"], res


def test_concurrent_creates_each_get_a_free_subnet(ssh_key):
    """Creates on one engine at the same time, none naming a subnet: each picks the lowest free /24, and the
    ones that lose the race to the engine pick again instead of failing."""
    def create(name):
        return run_module("rax.carina.local_hosts", {
            "cluster": name, "image": "carina-host:bookworm", "public_key": ssh_key.with_suffix(".pub").read_text(),
            "hosts": [{"name": f"{name}-1", "role": "worker", "engine_volume": False}]})
    try:
        with ThreadPoolExecutor(len(RACERS)) as pool:
            results = list(pool.map(create, RACERS))
        assert all(rc == 0 for rc, _res in results), [res.get("msg") for _rc, res in results]
        subnets = [res["network"]["subnet"] for _rc, res in results]
        assert len(set(subnets)) == len(RACERS), subnets
    finally:
        for name in RACERS:
            run_module("rax.carina.local_hosts", {"cluster": name, "state": "absent"})
