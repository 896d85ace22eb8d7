"""The Python API: what the CLI (and a web panel or a service) calls.

Every action records the cluster, starts the collection's playbook in a detached worker process
through ansible-runner, and returns at once with the cluster *_IN_PROGRESS, like Magnum's API
answers 202 Accepted. The worker moves the cluster to *_COMPLETE or *_FAILED.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from carina import paths
from carina.hygiene import scrub_artifacts, stop_run_processes
from carina.store import IN_PROGRESS, RUN_ACTIVE, Cluster, Conflict, Run, Store

NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
COES = ("swarm",)
PROVIDERS = ("local", "openstack")
# Options of provider openstack, as the playbooks name them (carina_<option>).
OPENSTACK_OPTIONS = ("cloud", "flavor", "master_flavor", "fixed_network", "fixed_subnet", "external_network",
                     "floating_ip_enabled", "master_server_type", "server_type", "resource_class")
KEEP_RUNS = 10  # run folders (artifacts) kept per cluster; their events stay in the store
SHELLS = {"bash": "docker.env", "sh": "docker.env", "zsh": "docker.env", "fish": "docker.fish",
          "powershell": "docker.ps1", "cmd": "docker.cmd"}


class CarinaError(Exception):
    """An action was refused; the message says why and what to do."""


@dataclass
class Health:
    status: str  # HEALTHY, UNHEALTHY, UNKNOWN
    reason: str


def validate_spec(name: str, coe: str, masters: int, nodes: int, provider: str) -> None:
    """The checks a user gets at once; the playbook checks everything again before it makes anything."""
    if not NAME_RE.match(name) or "--" in name:
        raise CarinaError(
            f"name {name!r}: use 1 to 40 lower-case letters, digits and single '-', starting with a letter")
    if coe not in COES:
        raise CarinaError(f"coe {coe!r} is not supported; choose one of: {', '.join(COES)}")
    if provider not in PROVIDERS:
        raise CarinaError(f"provider {provider!r} is not supported; choose one of: {', '.join(PROVIDERS)}")
    if masters < 1 or masters > 7 or masters % 2 == 0:
        raise CarinaError(f"masters={masters}: the number of managers must be odd, from 1 to 7")
    if nodes < 0:
        raise CarinaError(f"nodes={nodes}: the number of workers must be 0 or more")


def docker_api(bundle: Path, endpoint: str, path: str, port: int = 2376) -> list | dict:
    """GET a Docker API path through the cluster endpoint with the bundle's mutual TLS."""
    ctx = ssl.create_default_context(cafile=str(bundle / "ca.pem"))
    ctx.load_cert_chain(str(bundle / "cert.pem"), str(bundle / "key.pem"))
    conn = http.client.HTTPSConnection(endpoint, port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise ValueError(f"{path}: HTTP {response.status} {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def process_start(pid: int) -> str:
    """The start time of a process (field 22 of /proc/PID/stat), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return "" if fields[0] in ("Z", "X") else fields[19]


class Client:
    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home else paths.home()
        self.store = Store(self.home)

    # -- reading ----------------------------------------------------------------------------
    def list(self) -> list[Cluster]:
        return [self._reconcile(c) for c in self.store.list_clusters()]

    def get(self, name: str) -> Cluster:
        cluster = self.store.get_cluster(name)
        if cluster is None:
            raise CarinaError(f"cluster {name} not found; `carina ls` lists the clusters")
        return self._reconcile(cluster)

    def runs(self, name: str | None = None) -> list[Run]:
        return self.store.list_runs(name)

    def run(self, run_id: str) -> Run:
        run = self.store.get_run(run_id)
        if run is None:
            raise CarinaError(f"run {run_id} not found; `carina runs NAME` lists a cluster's runs")
        if run.status in RUN_ACTIVE:
            cluster = self.store.get_cluster(run.cluster)
            if cluster is not None:
                self._reconcile(cluster)
            run = self.store.get_run(run.id) or run
        return run

    def events(self, run_id: str, after: int = -1) -> list[dict]:
        run = self.run(run_id)
        return [dict(row) for row in self.store.events(run.id, after)]

    def _reconcile(self, cluster: Cluster) -> Cluster:
        """A cluster IN_PROGRESS whose worker died without a word is marked FAILED, with the reason."""
        if cluster.status not in IN_PROGRESS or not cluster.current_run:
            return cluster
        run = self.store.get_run(cluster.current_run)
        if run is None or run.status not in RUN_ACTIVE:
            return cluster
        if run.pid and process_start(run.pid) == run.pid_start:
            return cluster
        if time.time() - run.started_at < 5 and not run.pid:
            return cluster  # the worker is still starting
        reason = (f"run {run.id} stopped without a result: its worker (pid {run.pid}) is gone; "
                  f"retry the action or delete the cluster")
        if run.data_dir:
            # What the dead worker left: a playbook still running, the environment in its artifacts.
            stop_run_processes(Path(run.data_dir))
            scrub_artifacts(Path(run.data_dir))
        self.store.update_run(run.id, status="crashed", reason=reason, finished_at=time.time())
        prefix = cluster.status.split("_", 1)[0]
        self.store.update_cluster(cluster.name, status=f"{prefix}_FAILED", status_reason=reason)
        return self.store.get_cluster(cluster.name) or cluster

    # -- actions ----------------------------------------------------------------------------
    def create(self, name: str, *, coe: str = "swarm", masters: int = 1, nodes: int = 1, provider: str = "local",
               subnet: str = "", extra_sans: list[str] | None = None,
               openstack: dict | None = None) -> tuple[Cluster, Run]:
        validate_spec(name, coe, masters, nodes, provider)
        extravars = {"carina_name": name, "carina_coe": coe, "carina_masters": masters, "carina_nodes": nodes,
                     "carina_provider": provider, "carina_extra_sans": extra_sans or []}
        for key, value in (openstack or {}).items():
            if key not in OPENSTACK_OPTIONS:
                raise CarinaError(f"unknown openstack option {key!r}; known: {', '.join(OPENSTACK_OPTIONS)}")
            if value not in (None, ""):
                extravars[f"carina_{key}"] = value
        if openstack and provider != "openstack":
            raise CarinaError("openstack options need --provider openstack")
        for key in ("master_server_type", "server_type"):
            if (openstack or {}).get(key) not in (None, "", "vm", "bm"):
                raise CarinaError(f"{key} {openstack[key]!r}: choose vm (Nova) or bm (Ironic)")
        if subnet:
            extravars["carina_subnet"] = subnet
        with self.store.transaction() as db:
            existing = self.store.get_cluster(name, db)
            if existing is not None:
                if existing.status != "CREATE_FAILED":
                    raise Conflict(f"cluster {name} already exists ({existing.status}); choose another name")
                if (existing.masters, existing.nodes, existing.coe) != (masters, nodes, coe):
                    raise Conflict(f"cluster {name} failed to create with masters={existing.masters} "
                                   f"nodes={existing.nodes}; retry with the same spec or `carina rm {name}` first")
            cluster = Cluster(name=name, status="CREATE_IN_PROGRESS", coe=coe, provider=provider, masters=masters,
                              nodes=nodes, subnet=subnet,
                              created_at=existing.created_at if existing else time.time())
            run = self._new_run(cluster, "create", "rax.carina.create", extravars)
            cluster.current_run = run.id
            self.store.put_cluster(db, cluster)
            self.store.add_run(db, run)
        self._spawn(run)
        return self.get(name), self.run(run.id)

    def delete(self, name: str) -> tuple[Cluster, Run]:
        with self.store.transaction() as db:
            cluster = self._idle(name, db)
            run = self._new_run(cluster, "delete", "rax.carina.delete", {"carina_name": name})
            cluster.status, cluster.status_reason, cluster.current_run = "DELETE_IN_PROGRESS", "", run.id
            self.store.put_cluster(db, cluster)
            self.store.add_run(db, run)
        self._spawn(run)
        return self.get(name), self.run(run.id)

    def grow(self, name: str, by: int) -> tuple[Cluster, Run]:
        if by < 1:
            raise CarinaError(f"--by {by}: grow adds 1 or more workers")
        cluster = self.get(name)
        return self.resize(name, nodes=cluster.nodes + by)

    def resize(self, name: str, *, nodes: int | None = None, masters: int | None = None,
               remove: list[str] | None = None) -> tuple[Cluster, Run]:
        if nodes is not None and nodes < 0:
            raise CarinaError(f"nodes={nodes}: the number of workers must be 0 or more")
        if masters is not None and (masters < 1 or masters > 7 or masters % 2 == 0):
            raise CarinaError(f"masters={masters}: the number of managers must be odd, from 1 to 7")
        with self.store.transaction() as db:
            cluster = self._idle(name, db)
            if cluster.status == "CREATE_FAILED":
                raise Conflict(f"cluster {name} failed to create; retry `carina create` or `carina rm {name}`")
            extravars: dict = {"carina_name": name, "carina_remove_nodes": remove or []}
            if nodes is not None:
                extravars["carina_nodes"] = nodes
            if masters is not None:
                extravars["carina_masters"] = masters
            run = self._new_run(cluster, "scale", "rax.carina.scale", extravars)
            cluster.status, cluster.status_reason, cluster.current_run = "UPDATE_IN_PROGRESS", "", run.id
            self.store.put_cluster(db, cluster)
            self.store.add_run(db, run)
        self._spawn(run)
        return self.get(name), self.run(run.id)

    def cancel(self, run_id: str) -> Run:
        run = self.run(run_id)
        if run.status not in RUN_ACTIVE:
            raise CarinaError(f"run {run.id} is {run.status}; only a pending or running run can be canceled")
        if run.pid and process_start(run.pid) == run.pid_start:
            os.kill(run.pid, signal.SIGTERM)
            deadline = time.time() + 60
            while time.time() < deadline and process_start(run.pid) == run.pid_start:
                time.sleep(0.2)
            if process_start(run.pid) == run.pid_start:
                os.killpg(run.pid, signal.SIGKILL)
        if run.data_dir:
            stop_run_processes(Path(run.data_dir))
        return self.run(run.id)

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.5) -> Run:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            run = self.run(run_id)
            if run.status not in RUN_ACTIVE:
                return run
            if deadline is not None and time.time() > deadline:
                raise CarinaError(f"run {run_id} still {run.status} after {timeout}s")
            time.sleep(poll)

    # -- credentials ------------------------------------------------------------------------
    def bundle_dir(self, name: str) -> Path:
        self.get(name)
        state = paths.state_dir(self.home, name)
        if not (state / "docker.env").exists():
            raise CarinaError(f"cluster {name} has no credentials yet; wait for CREATE_COMPLETE")
        return state

    def credentials(self, name: str, path: Path) -> Path:
        """Copy the bundle into path (created 0700; key.pem 0600)."""
        src = self.bundle_dir(name)
        path = Path(path).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for item in ("ca.pem", "cert.pem", "key.pem"):
            shutil.copyfile(src / item, path / item)
            (path / item).chmod(0o600 if item == "key.pem" else 0o644)
        for shell_file in ("docker.env", "docker.fish", "docker.ps1", "docker.cmd"):
            text = (src / shell_file).read_bytes().replace(str(src).encode(), str(path).encode())
            (path / shell_file).write_bytes(text)
        return path

    def env(self, name: str, shell: str = "bash") -> str:
        if shell not in SHELLS:
            raise CarinaError(f"shell {shell!r}: choose one of {', '.join(sorted(SHELLS))}")
        text = (self.bundle_dir(name) / SHELLS[shell]).read_text()
        return text.replace("\r\n", "\n") if shell != "cmd" else text

    def health(self, name: str) -> Health:
        """HEALTHY when every manager and node answers Ready through the cluster endpoint."""
        cluster = self.get(name)
        if not cluster.status.endswith("_COMPLETE"):
            return Health("UNKNOWN", f"cluster is {cluster.status}")
        state = paths.state_dir(self.home, name)
        try:
            nodes = docker_api(state, cluster.endpoint, "/nodes")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return Health("UNHEALTHY", f"the endpoint {cluster.endpoint}:2376 does not answer: {exc}")
        down = sorted(n["Description"]["Hostname"] for n in nodes if n["Status"]["State"] != "ready")
        managers = [n for n in nodes if n["Spec"].get("Role") == "manager"]
        unreachable = sorted(n["Description"]["Hostname"] for n in managers
                             if n.get("ManagerStatus", {}).get("Reachability") != "reachable")
        if down or unreachable:
            return Health("UNHEALTHY", "; ".join(filter(None, [
                f"nodes not ready: {', '.join(down)}" if down else "",
                f"managers unreachable: {', '.join(unreachable)}" if unreachable else ""])))
        if len(managers) != cluster.masters or len(nodes) != cluster.masters + cluster.nodes:
            return Health("UNHEALTHY", f"{len(managers)} managers and {len(nodes) - len(managers)} workers in the "
                                       f"swarm, {cluster.masters} and {cluster.nodes} expected")
        return Health("HEALTHY", f"{len(managers)} managers reachable, {len(nodes)} nodes ready")

    # -- internals --------------------------------------------------------------------------
    def _idle(self, name: str, db) -> Cluster:
        cluster = self.store.get_cluster(name, db)
        if cluster is None:
            raise CarinaError(f"cluster {name} not found; `carina ls` lists the clusters")
        if cluster.status in IN_PROGRESS:
            run = self.store.get_run(cluster.current_run)
            alive = run is not None and run.pid and process_start(run.pid) == run.pid_start
            if alive or run is None or (not run.pid and time.time() - run.started_at < 5):
                raise Conflict(f"cluster {name} is {cluster.status} (run {cluster.current_run}); wait for it, "
                               f"or `carina cancel {cluster.current_run}`")
        return cluster

    def _new_run(self, cluster: Cluster, action: str, playbook: str, extravars: dict) -> Run:
        run_id = uuid.uuid4().hex[:12]
        data_dir = paths.runs_dir(self.home) / run_id
        extravars = dict(extravars, carina_home=str(self.home))
        bindir = str(Path(sys.executable).parent)
        envvars = {
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "ANSIBLE_COLLECTIONS_PATH": paths.collections_path(),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_FORKS": "20",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s -o StrictHostKeyChecking=no "
                                "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(data_dir / "cp"),
            "ANSIBLE_LOCAL_TEMP": str(data_dir / "tmp"),
        }
        if os.environ.get("DOCKER_HOST"):
            envvars["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        params = {"playbook": playbook, "extravars": extravars, "envvars": envvars, "timeout": 3600}
        return Run(id=run_id, cluster=cluster.name, action=action, status="pending", params=json.dumps(params),
                   data_dir=str(data_dir))

    def _spawn(self, run: Run) -> None:
        data_dir = Path(run.data_dir)
        (data_dir / "inventory").mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir.chmod(0o700)
        (data_dir / "inventory" / "hosts").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
        env = dict(os.environ, CARINA_HOME=str(self.home))
        with open(data_dir / "worker.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "carina.worker", run.id], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                    close_fds=True)
        start = ""
        for _ in range(50):
            start = process_start(proc.pid)
            if start:
                break
            time.sleep(0.01)
        self.store.update_run(run.id, pid=proc.pid, pid_start=start)
        self._rotate(run.cluster)

    def _rotate(self, cluster: str) -> None:
        """Keep the run folders (artifacts) of the last KEEP_RUNS runs of a cluster."""
        runs = [r for r in self.store.list_runs(cluster) if r.data_dir]
        for old in runs[:-KEEP_RUNS]:
            if old.status not in RUN_ACTIVE:
                shutil.rmtree(old.data_dir, ignore_errors=True)
                self.store.update_run(old.id, data_dir="")
