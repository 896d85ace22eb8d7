"""Benchmark of local clusters, with a bare baseline measured in the same run.

Swarm (3 managers + 1 worker): create until `docker info` answers through the load balancer; a
second run with nothing to change (and its task count); the leader's host stopped (seconds the
swarm's API failed through the load balancer) and started again (seconds until it is Ready); delete;
issuing certificates for 100 nodes; and the bare baseline (the same containers and swarm with
`docker swarm init/join`, no TLS, no load balancer, no Ansible). Kubernetes (3 masters + 1 node):
create until every node is Ready (kubectl through the load balancer with the bundle), a second run
with nothing to change, delete, the memory of a master host and of a node host (their containers'
cgroups, page cache left out), and a master host stopped and started again as for Swarm (`kubectl
get --raw /readyz`; the node Ready). Then `carina serve` under load (scripts/bench_service.py;
`python scripts/bench.py service` runs that part alone).
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NAME = "bench"
KUBE_NAME = "bench-kube"
SUBNET = "198.18.231.0/24"
GOALS = {"create": 45.0, "rerun": 15.0, "certs100": 2.0, "kube_create": 90.0, "kube_rerun": 15.0}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, **kw)


def playbook(name: str, home: str, *extra: str, cluster: str = NAME) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    proc = run(["ansible-playbook", f"playbooks/{name}.yml", "-e", f"carina_name={cluster}",
                "-e", f"carina_home={home}", *extra])
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return time.monotonic() - started, proc


def docker_info_through_lb(home: str) -> None:
    env_file = Path(home) / "clusters" / NAME / "docker.env"
    proc = run(["bash", "-c", f". {env_file} && docker info --format '{{{{.Swarm.Nodes}}}}'"])
    if proc.returncode != 0 or proc.stdout.strip() != "4":
        sys.exit(f"docker info through the load balancer failed: {proc.stdout} {proc.stderr}")


def outage(probe: list[str], host: str, window: float = 45.0) -> float:
    """Stop the host container, then call `probe` (a client through the load balancer) back to back for
    `window` seconds: the seconds from the first failing call to the end of the last one (0 if none failed)."""
    run(["docker", "stop", "--time", "5", host])
    stopped = time.monotonic()
    first = last = None
    while time.monotonic() - stopped < window:
        started = time.monotonic()
        try:
            ok = run(probe, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if not ok:
            first = started if first is None else first
            last = time.monotonic()
        time.sleep(0.2)
    return 0.0 if first is None else last - first


def back_ready(probe: list[str], wanted: str, host: str, timeout: float = 180.0) -> float:
    """Start the host container again: the seconds until `probe` prints `wanted`."""
    run(["docker", "start", host])
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if run(probe, timeout=10).stdout.strip() == wanted:
            return time.monotonic() - started
        time.sleep(0.5)
    sys.exit(f"{host} did not come back within {timeout:.0f} s")


def swarm_leader_lost(home: str) -> tuple[float, float]:
    """The swarm's leader host stopped: the seconds `docker node ls` through the load balancer failed (the
    managers elect a new leader, the load balancer drops the dead member), then the seconds from its start
    until the swarm lists it Ready again."""
    env_file = Path(home) / "clusters" / NAME / "docker.env"
    def through_lb(command: str) -> list[str]:
        return ["bash", "-c", f". {env_file} && {command}"]
    nodes = run(through_lb("docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'")).stdout.split("\n")
    leader = next(line.split()[0] for line in nodes if line.endswith(" Leader"))
    down = outage(through_lb("docker node ls -q"), leader)
    status = f"docker node inspect --format '{{{{.Status.State}}}}' {leader}"
    return down, back_ready(through_lb(status), "ready", leader)


def kube_master_lost(home: str) -> tuple[float, float]:
    """A master host stopped: the seconds `kubectl get --raw /readyz` through the load balancer failed, then
    the seconds from its start until its node is Ready again."""
    kubectl = [str(ROOT / ".cache" / "kubernetes" / "v1.20.2" / "bin" / "kubectl"), "--request-timeout", "5s",
               "--kubeconfig", str(Path(home) / "clusters" / KUBE_NAME / "kubeconfig")]
    host = f"{KUBE_NAME}-master-1"
    down = outage([*kubectl, "get", "--raw", "/readyz"], host)
    ready = [*kubectl, "get", "node", host, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]
    return down, back_ready(ready, "True", host)


def task_counts(output: str) -> tuple[int, int]:
    """(tasks run on some host, host-task runs excluding skips) of a playbook run."""
    recap = re.findall(r"^\S+\s+: ok=(\d+)\s+changed=(\d+).*?failed=(\d+)", output, re.M)
    host_tasks = sum(int(ok) + int(failed) for ok, _changed, failed in recap)
    headers = {line for line in output.splitlines() if line.startswith("TASK [")}
    return len(headers), host_tasks


def certs_for(nodes: int) -> float:
    sys.path.insert(0, str(ROOT / "collections"))
    pki = importlib.import_module("ansible_collections.rax.carina.plugins.module_utils.pki")
    with tempfile.TemporaryDirectory() as tmp:
        params = {
            "path": str(Path(tmp) / "pki"), "cluster_name": "bench", "state": "present", "key_type": "ecdsa",
            "rsa_key_size": 2048, "ca_valid_days": 3650, "cert_valid_days": 825, "renew_before_days": 30,
            "servers": [{"name": f"node-{i}", "common_name": None,
                         "sans": [f"node-{i}", f"198.18.{i // 250}.{i % 250 + 2}", "127.0.0.1"]}
                        for i in range(nodes)],
            "clients": [{"name": "admin", "common_name": "admin", "organization": []}],
            "extra_sans": ["198.18.0.1"], "prune": False,
        }
        started = time.monotonic()
        pki.run(params)
        return time.monotonic() - started


def kubectl_nodes_ready(home: str) -> int:
    kubectl = ROOT / ".cache" / "kubernetes" / "v1.20.2" / "bin" / "kubectl"
    proc = run([str(kubectl), "--kubeconfig", str(Path(home) / "clusters" / KUBE_NAME / "kubeconfig"), "get", "nodes",
                "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"])
    if proc.returncode != 0 or proc.stdout.split() != ["True"] * 4:
        sys.exit(f"kubectl through the load balancer: not 4 nodes Ready: {proc.stdout} {proc.stderr}")
    return 4


def host_memory_mib(container: str) -> float:
    """Memory a host container uses (its cgroup's usage less the inactive page cache), in MiB."""
    pid = run(["docker", "inspect", "--format", "{{.State.Pid}}", container]).stdout.strip()
    path = next(line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                if line.split(":")[1] == "memory")
    path = path.removesuffix("/init.scope")
    folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    usage = int((folder / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
    return (usage - int(stat.get("total_inactive_file", 0))) / 2**20


def bench_kubernetes() -> list[tuple[str, float, float | None]]:
    with tempfile.TemporaryDirectory(prefix="carina-bench-") as home:
        spec = ("-e", "carina_coe=kubernetes", "-e", "carina_masters=3", "-e", "carina_nodes=1")
        try:
            started = time.monotonic()
            playbook("create", home, *spec, cluster=KUBE_NAME)
            kubectl_nodes_ready(home)
            create = time.monotonic() - started
            rerun, proc = playbook("create", home, *spec, cluster=KUBE_NAME)
            changed = [int(c) for c in re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M)]
            tasks, host_tasks = task_counts(proc.stdout)
            time.sleep(10)  # let the control plane settle before reading memory
            master, node = host_memory_mib(f"{KUBE_NAME}-master-1"), host_memory_mib(f"{KUBE_NAME}-node-1")
            down, back = kube_master_lost(home)
        finally:
            delete, _proc = playbook("delete", home, cluster=KUBE_NAME)
    return [
        ("Kubernetes: create 3 masters + 1 node, until kubectl sees every node Ready", create, GOALS["kube_create"]),
        (f"Kubernetes: second run, nothing to change ({tasks} tasks, {host_tasks} host-task runs, "
         f"changed={sum(changed)})", rerun, GOALS["kube_rerun"]),
        ("Kubernetes: delete", delete, None),
        ("Kubernetes: memory of a master host (MiB)", master, None),
        ("Kubernetes: memory of a node host (MiB)", node, None),
        ("Kubernetes: a master host stopped, seconds the API failed through the LB", down, None),
        ("Kubernetes: that master started again, seconds until its node is Ready", back, None),
    ]


def main() -> None:
    service = importlib.import_module("bench_service")  # scripts/, next to this file
    if sys.argv[1:] == ["service"]:
        service.main()
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="carina-bench-") as home:
        playbook("delete", home)
        try:
            started = time.monotonic()
            playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1", "-e", f"carina_subnet={SUBNET}")
            docker_info_through_lb(home)
            create = time.monotonic() - started
            rerun, proc = playbook("create", home, "-e", "carina_masters=3", "-e", "carina_nodes=1",
                                   "-e", f"carina_subnet={SUBNET}")
            changed = [int(c) for c in re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M)]
            tasks, host_tasks = task_counts(proc.stdout)
            leader_down, leader_back = swarm_leader_lost(home)
        finally:
            delete, _proc = playbook("delete", home)
    certs = certs_for(100)
    base = run(["scripts/bench-baseline.sh"])
    if base.returncode != 0:
        sys.exit(f"baseline failed: {base.stderr}")
    baseline = float(base.stdout.strip().splitlines()[-1])

    rows.append(("create 3 managers + 1 worker, until docker info via the LB", create, GOALS["create"]))
    rows.append((f"second run, nothing to change ({tasks} tasks, {host_tasks} host-task runs, "
                 f"changed={sum(changed)})", rerun, GOALS["rerun"]))
    rows.append(("the leader's host stopped, seconds `docker node ls` failed through the LB", leader_down, None))
    rows.append(("that host started again, seconds until the swarm lists it Ready", leader_back, None))
    rows.append(("delete", delete, None))
    rows.append(("certificates for 100 nodes (CA + 100 servers + admin)", certs, GOALS["certs100"]))
    rows.append(("bare baseline: same containers, docker swarm init/join, no TLS/LB", baseline, None))
    rows.extend(bench_kubernetes())
    print(f"\n{'measure':<82} {'value':>8}  goal")
    for label, value, goal in rows:
        verdict = "" if goal is None else (f"<= {goal:g} s " + ("met" if value <= goal else "MISSED"))
        print(f"{label:<82} {value:8.2f}  {verdict}")
    for label, value, verdict in service.bench():
        print(f"{label:<82} {value:8.2f}  {verdict}")


if __name__ == "__main__":
    main()
