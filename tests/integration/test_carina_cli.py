"""The carina command, as users and wrappers drive it: asynchronous runs over ansible-runner."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carina import api
from tests.helpers import free_subnet, left_behind, owned_objects

SUBNET = free_subnet()
# The clusters this module makes (conftest checks that nothing of theirs is left).
CLUSTERS = ("c1", "cfail", "crefused", "ckill", "crace", "ccancel", "ctimeout", "cpty", "ck8s")


def carina(home: Path, *args: str, timeout: int = 900, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["carina", *args], env=os.environ | {"CARINA_HOME": str(home)}, capture_output=True,
                          text=True, timeout=timeout, check=check)


def get(home: Path, name: str) -> dict:
    proc = carina(home, "get", name, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_status(home: Path, name: str, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        data = get(home, name)
        if not data["status"].endswith("_IN_PROGRESS"):
            return data
        time.sleep(1)
    raise AssertionError(f"{name} still in progress after {timeout}s")


def shell(home: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env=os.environ | {"CARINA_HOME": str(home)}, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("carina-cli")
    yield home
    names = ("c1", "cfail", "ckill", "crace", "ccancel", "ctimeout", "cpty", "ck8s")
    for name in names:
        if carina(home, "get", name).returncode == 0:
            carina(home, "rm", name, "--wait")
    for name in left_behind(home, names):  # what a failed test (or a failed rm) left
        subprocess.run(["ansible-playbook", "playbooks/delete.yml", "-e", f"carina_name={name}",
                        "-e", f"carina_home={home}"], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                       check=False)


@pytest.fixture(scope="module")
def c1(home):
    started = time.time()
    proc = carina(home, "create", "c1", "--masters", "3", "--nodes", "1", "--subnet", SUBNET)
    elapsed = time.time() - started
    assert proc.returncode == 0, proc.stderr
    assert "c1: CREATE_IN_PROGRESS" in proc.stdout
    assert elapsed < 5, f"create took {elapsed:.1f}s to answer"
    assert get(home, "c1")["status"] == "CREATE_IN_PROGRESS"
    data = wait_status(home, "c1")
    assert data["status"] == "CREATE_COMPLETE", data
    return data


def test_create_is_asynchronous_and_completes(home, c1):
    assert c1["masters"] == 3 and c1["nodes"] == 1
    assert c1["health"] == "HEALTHY", c1
    assert c1["api_url"] == f"tcp://{c1['endpoint']}:2376", c1
    assert c1["contract_version"] >= 1, c1
    ls = carina(home, "ls")
    row = rf"^c1\s+swarm\s+3\s+1\s+CREATE_COMPLETE\s+{re.escape(c1['api_url'])}$"
    assert re.search(row, ls.stdout, re.M), ls.stdout
    assert ipaddress.ip_address(c1["endpoint"]) in ipaddress.ip_network(SUBNET), c1
    text = carina(home, "get", "c1").stdout
    assert re.search(rf"^api_url:\s+{re.escape(c1['api_url'])}$", text, re.M), text


def test_env_points_docker_at_the_cluster(home, c1):
    proc = shell(home, 'eval "$(carina env c1)" && docker node ls --format "{{.Hostname}} {{.Status}}" '
                       '&& echo "$CARINA_CLUSTER_NAME"')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert sorted(lines[:4]) == ["c1-manager-1 Ready", "c1-manager-2 Ready", "c1-manager-3 Ready", "c1-worker-1 Ready"]
    assert lines[4] == "c1"
    fish = carina(home, "env", "c1", "--shell", "fish").stdout
    assert "set -gx DOCKER_TLS_VERIFY '1'" in fish


def test_credentials_copy(home, c1, tmp_path):
    proc = carina(home, "credentials", "c1", "--path", str(tmp_path / "bundle"))
    assert proc.returncode == 0, proc.stderr
    bundle = tmp_path / "bundle"
    assert (bundle / "key.pem").stat().st_mode & 0o777 == 0o600
    proc = shell(home, f". {bundle}/docker.env && docker info --format '{{{{.Swarm.Nodes}}}}'")
    assert proc.stdout.strip() == "4", proc.stderr


def test_kubernetes_through_the_command(home, tmp_path):
    """carina create --coe kubernetes --wait, get (health from /readyz and the nodes), env, credentials, rm."""
    kubectl = Path(os.environ.get("CARINA_CACHE", Path(__file__).resolve().parents[2] / ".cache")) / \
        "kubernetes" / "v1.20.2" / "bin" / "kubectl"
    refused = carina(home, "create", "ck8s", "--coe", "kubernetes", "--option", "pod_cidr=198.19.0.0/24")
    assert refused.returncode == 1 and "option pod_cidr 198.19.0.0/24 is too small" in refused.stderr
    assert carina(home, "get", "ck8s").returncode != 0
    proc = carina(home, "create", "ck8s", "--coe", "kubernetes", "--masters", "1", "--nodes", "1",
                  "--option", "node_cidr_mask=25", "--wait")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = get(home, "ck8s")
    assert (data["status"], data["health"]) == ("CREATE_COMPLETE", "HEALTHY"), data
    assert data["api_url"] == f"https://{data['endpoint']}:6443"
    assert data["coe_options"] == {"node_cidr_mask": 25}
    proc = shell(home, f'eval "$(carina env ck8s)" && HOME={tmp_path} {kubectl} get nodes -o name')
    assert sorted(proc.stdout.split()) == ["node/ck8s-master-1", "node/ck8s-node-1"], proc.stderr
    bundle = tmp_path / "bundle"
    assert carina(home, "credentials", "ck8s", "--path", str(bundle)).returncode == 0
    assert (bundle / "kubeconfig").stat().st_mode & 0o777 == 0o600
    assert (bundle / "key.pem").stat().st_mode & 0o777 == 0o600
    cidr = shell(home, f"HOME={tmp_path} KUBECONFIG={bundle}/kubeconfig {kubectl} get node ck8s-node-1 "
                       "-o jsonpath='{.spec.podCIDR}'")
    assert cidr.stdout.endswith("/25"), cidr.stdout + cidr.stderr
    gone = carina(home, "rm", "ck8s", "--wait")
    assert gone.returncode == 0, gone.stderr
    assert owned_objects("ck8s") == {"containers": [], "volumes": [], "networks": []}


def test_grow_then_resize_to_zero_drains_first(home, c1):
    proc = carina(home, "grow", "c1", "--by", "1", "--wait")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = get(home, "c1")
    assert (data["status"], data["masters"], data["nodes"]) == ("UPDATE_COMPLETE", 3, 2)
    nodes = shell(home, 'eval "$(carina env c1)" && docker node ls -q | wc -l').stdout.strip()
    assert nodes == "5"

    proc = carina(home, "resize", "c1", "--nodes", "0", "--wait")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = get(home, "c1")
    assert (data["status"], data["nodes"]) == ("UPDATE_COMPLETE", 0)
    listing = shell(home, 'eval "$(carina env c1)" && docker node ls --format "{{.Hostname}}"').stdout.split()
    assert sorted(listing) == ["c1-manager-1", "c1-manager-2", "c1-manager-3"]
    assert sorted(owned_objects("c1")["containers"]) == ["c1-lb", "c1-manager-1", "c1-manager-2", "c1-manager-3"]
    # The workers were drained before they were removed from the swarm.
    run_id = json.loads(carina(home, "runs", "c1", "-o", "json").stdout)[-1]["id"]
    events = [json.loads(line) for line in carina(home, "logs", run_id, "-o", "json").stdout.splitlines()]
    tasks = [e["task"] for e in events if e["event"] == "playbook_on_task_start"]
    drain = tasks.index("Drain the nodes that go away, so that their tasks move elsewhere")
    remove = tasks.index("Remove the nodes from the swarm")
    assert drain < remove
    drained = {e["stdout"] for e in events if e["task"].startswith("Drain") and e["event"] == "runner_item_on_ok"}
    assert any("c1-worker-1" in line for line in drained) and any("c1-worker-2" in line for line in drained), drained


def test_spec_refused_up_front_records_nothing(home):
    runs_before = sorted(p.name for p in (home / "runs").glob("*"))
    proc = carina(home, "create", "crefused", "--subnet", "198.18.242.0/30", "--wait")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "subnet 198.18.242.0/30 has room for 1 hosts, the cluster needs 3" in proc.stderr
    assert "CREATE_IN_PROGRESS" not in proc.stdout
    # No cluster row, no clusters/<name> folder, no run.
    assert carina(home, "get", "crefused").returncode == 1
    assert not re.search(r"^crefused\s", carina(home, "ls").stdout, re.M)
    assert json.loads(carina(home, "runs", "crefused", "-o", "json").stdout) == []
    assert not (home / "clusters" / "crefused").exists()
    assert sorted(p.name for p in (home / "runs").glob("*")) == runs_before
    assert owned_objects("crefused") == {"containers": [], "volumes": [], "networks": []}


def test_failed_create_names_the_task_and_rm_cleans_it(home):
    # A subnet an existing Docker network uses: only the provider's check inside the playbook can see it.
    subnet = free_subnet()
    foreign = "it-cli-foreign"
    subprocess.run(["docker", "network", "create", "--subnet", subnet, "--label", "carina.test=cfail", foreign],
                   capture_output=True, text=True, timeout=60, check=True)
    try:
        proc = carina(home, "create", "cfail", "--subnet", subnet, "--wait")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        data = get(home, "cfail")
        assert data["status"] == "CREATE_FAILED"
        assert ("task 'Check the hosts can be made (names, subnet, images) before anything exists' failed on localhost"
                in data["status_reason"]), data["status_reason"]
        assert f"subnet {subnet} is already in use by Docker network {foreign}" in data["status_reason"]
        assert proc.stderr.strip().splitlines()[-1].startswith("carina: create of cfail failed: task ")
        assert owned_objects("cfail") == {"containers": [], "volumes": [], "networks": []}
        proc = carina(home, "rm", "cfail", "--wait")
        assert proc.returncode == 0, proc.stderr
        assert carina(home, "get", "cfail").returncode == 1
        assert owned_objects("cfail") == {"containers": [], "volumes": [], "networks": []}
        assert not (home / "clusters" / "cfail").exists()
    finally:
        subprocess.run(["docker", "network", "rm", foreign], capture_output=True, text=True, timeout=60, check=False)


def test_two_concurrent_creates_yield_one_cluster(home):
    procs = [subprocess.Popen(["carina", "create", "crace", "--nodes", "0", "--subnet", free_subnet()],
                              env=os.environ | {"CARINA_HOME": str(home)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    refused = next(err for (out, err), p in zip(outs, procs, strict=True) if p.returncode == 1)
    assert "cluster crace already exists (CREATE_IN_PROGRESS)" in refused
    runs = json.loads(carina(home, "runs", "crace", "-o", "json").stdout)
    assert len(runs) == 1
    assert wait_status(home, "crace")["status"] == "CREATE_COMPLETE"
    assert carina(home, "rm", "crace", "--wait").returncode == 0


def test_a_killed_worker_is_detected(home):
    proc = carina(home, "create", "ckill", "--nodes", "0", "--subnet", free_subnet(), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)["run"]
    time.sleep(3)
    os.killpg(run["pid"], signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline:
        data = get(home, "ckill")
        if data["status"] != "CREATE_IN_PROGRESS":
            break
        time.sleep(0.5)
    assert data["status"] == "CREATE_FAILED", data
    assert f"run {run['id']} stopped without a result" in data["status_reason"]
    # A failed create can be cleaned.
    assert carina(home, "rm", "ckill", "--wait").returncode == 0
    assert owned_objects("ckill") == {"containers": [], "volumes": [], "networks": []}


def test_cancel_stops_the_run_and_leaves_no_process(home):
    proc = carina(home, "create", "ccancel", "--nodes", "0", "--subnet", free_subnet(), "-o", "json")
    run = json.loads(proc.stdout)["run"]
    time.sleep(4)
    proc = carina(home, "cancel", run["id"])
    assert proc.returncode == 0, proc.stderr
    data = get(home, "ccancel")
    assert data["status"] == "CREATE_FAILED"
    assert data["status_reason"] == f"canceled (run {run['id']})"
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-af", run["id"]], capture_output=True, text=True, check=False).stdout
    assert leftovers.strip() == "", leftovers
    assert carina(home, "rm", "ccancel", "--wait").returncode == 0


def test_a_create_past_its_timeout_is_stopped_and_failed(home, monkeypatch):
    """The Python API's create timeout (a Magnum create_timeout): the run is stopped, the cluster says why."""
    monkeypatch.setenv("CARINA_HOME", str(home))
    client = api.Client(home)
    _cluster, run = client.create("ctimeout", nodes=0, subnet=free_subnet(), timeout=3)
    ended = client.wait(run.id, timeout=120)
    assert ended.status == "timeout", ended
    data = get(home, "ctimeout")
    assert data["status"] == "CREATE_FAILED"
    assert data["status_reason"] == f"timed out: not done within 3 s, stopped (run {run.id})"
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-af", run.id], capture_output=True, text=True, check=False).stdout
    assert leftovers.strip() == "", leftovers
    assert carina(home, "rm", "ctimeout", "--wait").returncode == 0
    assert owned_objects("ctimeout") == {"containers": [], "volumes": [], "networks": []}


def test_wait_on_a_terminal_shows_a_bar_and_ctrl_c_detaches(home):
    primary, secondary = pty.openpty()

    # Started as a shell starts a foreground job: SIGINT as default (a test session started in the
    # background inherits it ignored), the pty as the controlling terminal of its own session.
    foreground = ("import fcntl, os, signal, sys, termios; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execvp(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", foreground, "carina", "create", "cpty", "--nodes", "0",
                             "--subnet", free_subnet(), "--wait"],
                            env=os.environ | {"CARINA_HOME": str(home)}, stdin=secondary, stdout=secondary,
                            stderr=secondary, start_new_session=True)
    os.close(secondary)
    seen = b""
    deadline = time.time() + 8
    while time.time() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            seen += os.read(primary, 65536)
    os.write(primary, b"\x03")  # Ctrl-C, typed on the terminal
    assert proc.wait(timeout=30) == 130, seen.decode(errors="replace")[-2000:]
    with contextlib.suppress(OSError):
        while select.select([primary], [], [], 0.5)[0]:
            seen += os.read(primary, 65536)
    os.close(primary)
    text = seen.decode(errors="replace")
    assert re.search(r"\[#*-*\] +\d+s ok=\d+ changed=\d+ failed=\d+ \|", text), text[-2000:]
    assert "detached: run" in text and "carina logs" in text
    # The run went on without the command that started it.
    assert wait_status(home, "cpty")["status"] == "CREATE_COMPLETE"
    assert carina(home, "rm", "cpty", "--wait").returncode == 0


def test_no_private_key_outside_key_files(home, c1):
    keys = []
    for path in home.rglob("*"):
        if path.is_file() and "PRIVATE KEY" in path.read_text(errors="replace"):
            keys.append(path)
            assert path.stat().st_mode & 0o777 == 0o600, path
    assert keys, "expected the clusters' key files"
    bodies = {line: k for k in keys for line in k.read_text().splitlines() if len(line) >= 40 and "-----" not in line}
    # A key file also holds its public key, which certificates carry too: such lines are public.
    public = "\n".join(p.read_text() for p in [*home.rglob("*.pem"), *home.rglob("*.pub")] if p not in keys)
    bodies = {line: k for line, k in bodies.items() if line not in public}
    assert bodies
    offenders = []
    for path in home.rglob("*"):
        if not path.is_file() or path in keys:
            continue
        data = path.read_bytes().decode(errors="replace")
        if "PRIVATE KEY" in data:
            offenders.append(f"{path}: PRIVATE KEY")
        offenders += [f"{path}: a line of {key}" for body, key in bodies.items() if body in data]
    assert not offenders, offenders
    # The recorded commands keep the names of the environment, not its values.
    commands = list(home.glob("runs/*/artifacts/*/command"))
    assert commands
    for command in commands:
        assert isinstance(json.loads(command.read_text())["env"], list)
