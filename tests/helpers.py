"""Helpers the tests share: run Ansible, look at the Docker engine, find leftovers."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABEL = "carina.cluster"


def env() -> dict[str, str]:
    """Environment for Ansible commands: the repository's ansible.cfg, JSON output."""
    out = dict(os.environ)
    out["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    return out


COLLECTION = ROOT / "collections" / "ansible_collections" / "rax" / "carina"


def bare_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any Ansible setting (as a user elsewhere or an AWX job has it)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")} | extra


def install_collection(base: Path) -> Path:
    """The collection as a Galaxy user has it: built into a tarball in `base`, installed into
    `base`/collections with no Ansible settings of ours (run from `base`, no ansible.cfg there). The
    dependencies (ansible.posix, community.crypto, ...) come with the ansible package: no network.
    Returns the installed collection's folder."""
    def galaxy(*args: str) -> None:
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-galaxy"), "collection", *args], cwd=base,
                              env=bare_env(), capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    galaxy("build", str(COLLECTION), "--output-path", str(base))
    galaxy("install", "--no-deps", "-p", str(base / "collections"), str(next(base.glob("rax-carina-*.tar.gz"))))
    installed = base / "collections" / "ansible_collections" / "rax" / "carina"
    assert (installed / "MANIFEST.json").exists()
    return installed


def run_module(module: str, args: dict, *, check: bool = False) -> tuple[int, dict]:
    """Run one module on localhost through `ansible` and return (rc, result)."""
    cmd = [
        "ansible", "localhost", "-m", module, "-a", json.dumps(args),
        "-e", "ansible_python_interpreter={{ ansible_playbook_python }}",
    ]
    if check:
        cmd.append("--check")
    e = env() | {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
    proc = subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=600, check=False)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"no JSON from ansible: {proc.stdout}\n{proc.stderr}") from exc
    result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return proc.returncode, result


def docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout.strip()


_HANDED_OUT: list[ipaddress.IPv4Network] = []


def free_subnet() -> str:
    """A /24 of 198.18.128.0/17 that no Docker network and no route of this machine uses, and that no other
    test of this session was given: tests never hold a fixed subnet another network may have. Handed out from
    the top down (rax.carina.local_hosts picks its own free /24s from the bottom of 198.18.0.0/16 up). Under
    pytest-xdist each worker takes every n-th /24 of its own, so that two workers never pick the same one
    before either has made its network."""
    used = list(_HANDED_OUT)
    proc = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode == 0 and proc.stdout.split():
        out = subprocess.run(["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                              *proc.stdout.split()], capture_output=True, text=True, timeout=60, check=False).stdout
        used += [ipaddress.ip_network(net, strict=False) for net in out.split() if "." in net]
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                            timeout=60, check=False).stdout
    for line in routes.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            dest = line.split()[0] if line.split()[0] not in ("local", "broadcast", "unicast") else line.split()[1]
            if dest != "default":
                used.append(ipaddress.ip_network(dest, strict=False))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    for third in range(255 - worker, 127, -workers):
        candidate = ipaddress.ip_network(f"198.18.{third}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            _HANDED_OUT.append(candidate)
            return str(candidate)
    raise AssertionError("no free /24 left in 198.18.128.0/17 for a test network")


def owned_objects(cluster: str | None = None) -> dict[str, list[str]]:
    """Containers, volumes and networks labelled by carina (for one cluster, or any)."""
    flt = f"label={LABEL}={cluster}" if cluster else f"label={LABEL}"
    return {
        "containers": docker("ps", "-a", "--filter", flt, "--format", "{{.Names}}").split(),
        "volumes": docker("volume", "ls", "--filter", flt, "--format", "{{.Name}}").split(),
        "networks": docker("network", "ls", "--filter", flt, "--format", "{{.Name}}").split(),
    }


def owned_by_cluster() -> dict[str, dict[str, str]]:
    """{kind: {object name: its carina.cluster label}} of every object labelled by carina."""
    flt = f"label={LABEL}"
    fmt = "{{.%s}}\t{{.Label \"%s\"}}"
    out: dict[str, dict[str, str]] = {}
    for kind, cmd, field in (("containers", ["ps", "-a"], "Names"), ("volumes", ["volume", "ls"], "Name"),
                             ("networks", ["network", "ls"], "Name")):
        lines = docker(*cmd, "--filter", flt, "--format", fmt % (field, LABEL)).splitlines()
        out[kind] = dict(line.split("\t", 1) for line in lines if "\t" in line)
    return out


def ssh(key: Path, address: str, command: str, known_hosts: Path | None = None) -> subprocess.CompletedProcess:
    """A command on a host as root with the key; with known_hosts, the host's key must be in that file."""
    checking = (["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"] if known_hosts
                else ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
    return subprocess.run(
        ["ssh", "-i", str(key), *checking, "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", f"root@{address}", command],
        capture_output=True, text=True, timeout=60, check=False,
    )


def wait_until(predicate, timeout: float, what: str):
    """The first truthy value of predicate(), polled every second; fails after `timeout` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")


def recap_changed(output: str) -> dict[str, int]:
    """{host: changed count} from an ansible-playbook PLAY RECAP."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def changed_tasks(output: str) -> list[str]:
    """'task: host' for every change an ansible-playbook run reports, to say what a rerun changed."""
    found, task = [], "?"
    for line in output.splitlines():
        header = re.match(r"^TASK \[(.*)\]", line)
        if header:
            task = header.group(1)
        changed = re.match(r"^changed: \[([^\]]+)\]", line)
        if changed:
            found.append(f"{task}: {changed.group(1)}")
    return found


def left_behind(home: Path, names) -> list[str]:
    """The clusters of `names` a failed test left: a state folder in `home`, or host objects on the engine."""
    return [name for name in names if (Path(home) / "clusters" / name).exists() or any(owned_objects(name).values())]
