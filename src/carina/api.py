"""The Python API: what the CLI (and a web panel or a service) calls.

Every action records the cluster, starts the collection's playbook in a detached worker process
through ansible-runner, and returns at once with the cluster *_IN_PROGRESS, like Magnum's API
answers 202 Accepted. The worker moves the cluster to *_COMPLETE or *_FAILED.

A spec is judged first by the collection's own planning rules (carina.planning); nothing is
recorded for a refused one. Nothing here knows a COE: its words, ports, bundle, shells and health
probe come from its contract and plug-in (carina.coes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from carina import coes, paths, planning
from carina.coes import Coe, Health
from carina.errors import CarinaError
from carina.hygiene import scrub_artifacts, stop_run_processes
from carina.store import IN_PROGRESS, RUN_ACTIVE, Cluster, Conflict, Run, Store

__all__ = ["CarinaError", "Client", "Conflict", "Health", "static_hosts"]

ID_PATTERN = re.compile(r"[0-9a-f]{32}")  # a cluster's unique id, as rax.carina.cluster_lock makes it
KEEP_RUNS = 10  # run folders (artifacts) kept per cluster; their events stay in the store
RUN_TIMEOUT = 3600  # seconds a run may take unless its caller says otherwise (create: a Magnum create_timeout)
# The inventory groups a provider whose hosts exist already (static) reads, by what they hold; the
# playbooks read the same defaults (carina_masters_group, carina_workers_group, carina_lb_group).
STATIC_GROUPS = {"master": "masters", "worker": "workers", "lb": "lb"}
STATIC = "static"


def openstack_extravars(openstack: dict) -> dict:
    """The playbooks' variables for the openstack options (cloud -> carina_cloud, ...)."""
    return {f"carina_{key}": value for key, value in openstack.items()}


def static_hosts(inventory: Path) -> dict:
    """{master: [...], worker: [...], lb: [...], vip: ...}: the hosts an inventory puts in groups masters,
    workers and lb, and its carina_vip.

    Read with ansible-inventory (any inventory source Ansible reads: INI, YAML, a plugin's config),
    in a process of its own so that its warnings do not reach the user's terminal.
    """
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_COLLECTIONS_PATH=paths.collections_path())
    try:
        proc = subprocess.run([sys.executable, "-m", "ansible.cli.inventory", "-i", str(inventory), "--list"],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CarinaError(f"inventory {inventory} could not be read: {exc}") from exc
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line or "Failed" in line] or lines or [f"rc={proc.returncode}"]
        raise CarinaError(f"inventory {inventory} could not be read: {errors[0]}")
    groups = json.loads(proc.stdout)

    def members(group: str, seen: frozenset = frozenset()) -> list[str]:
        entry = groups.get(group) or {}
        found = list(entry.get("hosts") or [])
        for child in entry.get("children") or []:
            if child not in seen:
                found += [h for h in members(child, seen | {group}) if h not in found]
        return found

    found: dict = {role: members(group) for role, group in STATIC_GROUPS.items()}
    hostvars = (groups.get("_meta") or {}).get("hostvars") or {}
    found["vip"] = next((str(hostvars[h]["carina_vip"]) for h in found["master"]
                         if (hostvars.get(h) or {}).get("carina_vip")), "")
    return found


BUNDLE_MARK = ".carina-bundle"  # in an exported bundle: the name of the cluster it belongs to


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file created with `mode`, renamed over path (which replaces a link, never
    writes through it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".carina-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
        return [self._with_url(self._reconcile(c)) for c in self.store.list_clusters()]

    def get(self, name: str) -> Cluster:
        cluster = self.store.get_cluster(name)
        if cluster is None:
            raise CarinaError(f"cluster {name} not found; `carina ls` lists the clusters")
        return self._with_url(self._reconcile(cluster))

    def find(self, cluster_id: str) -> Cluster:
        """The cluster with this unique id (32 hex digits, or a UUID with dashes)."""
        key = cluster_id.replace("-", "").lower()
        cluster = None
        if ID_PATTERN.fullmatch(key):
            cluster = self.store.find_cluster(key) or next(
                (c for c in self.store.list_clusters() if not c.uuid and self._state_id(c.name) == key), None)
        if cluster is None:
            raise CarinaError(f"cluster {cluster_id} not found; `carina ls` lists the clusters")
        return self._with_url(self._reconcile(cluster))

    def coe(self, name: str) -> Coe:
        """The plug-in of a cluster's COE."""
        return coes.get(self.get(name).coe)

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
        prefix = cluster.status.split("_", 1)[0]
        self.store.end_run(run.id, {"status": "crashed", "reason": reason, "finished_at": time.time()}, cluster.name,
                           {"status": f"{prefix}_FAILED", "status_reason": reason})
        return self.store.get_cluster(cluster.name) or cluster

    # -- actions ----------------------------------------------------------------------------
    def create(self, name: str, *, coe: str | None = None, masters: int | None = None, nodes: int | None = None,
               provider: str = "local", subnet: str = "", extra_sans: list[str] | None = None,
               openstack: dict | None = None, inventory: str | Path | None = None,
               coe_options: dict | None = None, allow_public_subnet: bool = False, cluster_id: str = "",
               project: str = "", extra: dict | None = None, run_env: dict | None = None,
               image: str = "", ca_import: dict | None = None,
               authorized_keys: list[str] | None = None, timeout: int | None = None) -> tuple[Cluster, Run]:
        """Record the cluster CREATE_IN_PROGRESS and start its create run; counts left out come from the contract.

        The spec is judged by the collection's planning rules first: a refused spec raises CarinaError
        with every problem and records nothing. Provider static takes its hosts from `inventory`
        (groups masters and workers), which every later run of the cluster reuses. `coe_options` are
        the COE's own options ({name: value}, text typed by the contract's declared type); a retry of a
        failed create reuses the ones given before, the playbook fills the rest from the contract.

        The cluster's unique id (32 hex digits, carried on everything the cluster leaves) is `cluster_id` or
        a new one; a retried create keeps the first. `project` and `extra` are the service's: the owner and
        the fields it shows (template, keypair, labels). `run_env` is environment every run of the cluster gets
        (the service's per-cluster OS_CLIENT_CONFIG_FILE: the cluster's own delegated cloud credentials).
        `ca_import` ({cert, key}: paths) is a cluster CA made elsewhere (a Magnum driver's: Magnum's own CA of the
        cluster), used instead of one made here and kept by every later run. `authorized_keys` are the users' SSH
        public keys every host lets in (recorded: later runs keep them). `timeout` is how many seconds the create
        run may take (RUN_TIMEOUT when left out; a Magnum create_timeout): a run still going then is stopped and the
        cluster is CREATE_FAILED, saying so.
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
            raise CarinaError(f"timeout {timeout!r}: seconds, a whole number of 1 or more")
        coe = coe or coes.default()
        openstack = {k: v for k, v in (openstack or {}).items() if v not in (None, "")}
        if openstack and provider != "openstack":
            raise CarinaError("openstack options need --provider openstack")
        options, hosts = self._provider_inputs(provider, inventory, masters, nodes)
        if openstack:
            options["openstack"] = openstack  # a delete before the create run recorded anything still finds the cloud
        if run_env:
            options["run_env"] = {str(k): str(v) for k, v in run_env.items()}
        given = self._coe_options(name, coe, coe_options)
        request = {"name": name, "coe": coe, "operation": "create", "masters": masters, "nodes": nodes,
                   "provider": provider, "openstack": openstack, "subnet": subnet, "extra_sans": extra_sans or [],
                   "coe_options": given, "allow_public_subnet": allow_public_subnet,
                   "machine_routes": planning.spec().machine_routes(), **self._inventory_request(hosts)}
        plan = self._plan(request)
        masters, nodes = plan["masters"], plan["nodes"]
        extravars = {"carina_name": name, "carina_coe": coe, "carina_masters": masters, "carina_nodes": nodes,
                     "carina_provider": provider, "carina_extra_sans": extra_sans or []}
        extravars.update(openstack_extravars(openstack))
        optional = {"carina_subnet": subnet, "carina_image": image,  # the hosts' image (openstack: a Glance image)
                    "carina_allow_public_subnet": allow_public_subnet or None, "carina_coe_options": given,
                    "carina_ca_import": ca_import and {"cert": str(ca_import["cert"]), "key": str(ca_import["key"])},
                    "carina_authorized_keys": list(authorized_keys or [])}
        extravars.update((key, value) for key, value in optional.items() if value)
        if cluster_id and not ID_PATTERN.fullmatch(cluster_id):
            raise CarinaError(f"cluster id {cluster_id!r}: 32 hexadecimal digits")
        self._unlocked(name)
        with self.store.transaction() as db:
            existing = self.store.get_cluster(name, db)
            state = paths.state_dir(self.home, name)
            if existing is None and ((state / planning.RECORD).exists() or (state / "id").exists()):
                raise Conflict(f"cluster {name} already has a state folder ({state}) that carina did not make "
                               f"(a playbook run made it); choose another name, or delete it with "
                               f"`ansible-playbook rax.carina.delete -e carina_name={name}`")
            if existing is not None:
                if existing.status != "CREATE_FAILED":
                    raise Conflict(f"cluster {name} already exists ({existing.status}); choose another name")
                if (existing.masters, existing.nodes, existing.coe) != (masters, nodes, coe):
                    raise Conflict(f"cluster {name} failed to create with masters={existing.masters} "
                                   f"nodes={existing.nodes}; retry with the same spec or `carina rm {name}` first")
                if existing.project != project:
                    raise Conflict(f"cluster {name} already exists; choose another name")
            cluster_id = (existing.uuid if existing and existing.uuid else "") or cluster_id or uuid.uuid4().hex
            extravars["carina_cluster_id"] = cluster_id
            cluster = Cluster(name=name, status="CREATE_IN_PROGRESS", coe=coe, provider=provider, masters=masters,
                              nodes=nodes, subnet=subnet, contract_version=plan["contract_version"],
                              options=options, coe_options=given, uuid=cluster_id, project=project,
                              extra=(existing.extra if existing else {}) | (extra or {}),
                              created_at=existing.created_at if existing else time.time())
            run = self._new_run(cluster, "create", "rax.carina.create", extravars, timeout=timeout)
            cluster.current_run = run.id
            self.store.put_cluster(db, cluster)
            self.store.add_run(db, run)
        self._spawn(run)
        return self.get(name), self.run(run.id)

    def delete(self, name: str) -> tuple[Cluster, Run]:
        with self.store.connect() as db:
            cluster = self._idle(name, db)
        self._unlocked(name)
        self._plan({"name": name, "coe": cluster.coe, "operation": "delete"})
        with self.store.transaction() as db:
            cluster = self._idle(name, db)
            extravars = {"carina_name": name}
            if cluster.uuid:
                extravars["carina_cluster_id"] = cluster.uuid  # a state folder with another id is not this cluster's
            if not (paths.state_dir(self.home, name) / planning.RECORD).exists():
                # A create stopped (or failed) before its run recorded the cluster: the playbook cannot read the
                # provider and its cloud from the record, so they come from carina's own.
                extravars["carina_provider"] = cluster.provider
                extravars.update(openstack_extravars(cluster.options.get("openstack") or {}))
            run = self._new_run(cluster, "delete", "rax.carina.delete", extravars)
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
        """Start a scale run; the counts are judged by the COE's rules and the cluster's record first."""
        with self.store.connect() as db:
            cluster = self._scalable(name, db)
        self._unlocked(name)
        _options, hosts = self._provider_inputs(cluster.provider, cluster.options.get("inventory"), masters, nodes)
        self._plan({"name": name, "coe": cluster.coe, "operation": "scale", "masters": masters, "nodes": nodes,
                    "provider": cluster.provider, "remove": remove or [], **self._inventory_request(hosts)})
        extravars: dict = {"carina_name": name, "carina_remove_nodes": remove or []}
        if nodes is not None:
            extravars["carina_nodes"] = nodes
        if masters is not None:
            extravars["carina_masters"] = masters
        with self.store.transaction() as db:
            cluster = self._scalable(name, db)
            run = self._new_run(cluster, "scale", "rax.carina.scale", extravars)
            cluster.status, cluster.status_reason, cluster.current_run = "UPDATE_IN_PROGRESS", "", run.id
            self.store.put_cluster(db, cluster)
            self.store.add_run(db, run)
        self._spawn(run)
        return self.get(name), self.run(run.id)

    def repair(self, name: str) -> tuple[Cluster, Run]:
        """Bring a cluster back to its recorded spec: hosts that were lost are made again, the entries they
        left in the control plane are removed, the new ones join and the load balancer follows. The same
        converge as a scale with the counts unchanged, so that a rerun of the create playbook repairs too."""
        with self.store.connect() as db:
            cluster = self._scalable(name, db)
        self._unlocked(name)
        _options, hosts = self._provider_inputs(cluster.provider, cluster.options.get("inventory"), None, None)
        self._plan({"name": name, "coe": cluster.coe, "operation": "scale", "provider": cluster.provider,
                    "remove": [], **self._inventory_request(hosts)})
        with self.store.transaction() as db:
            cluster = self._scalable(name, db)
            run = self._new_run(cluster, "repair", "rax.carina.scale", {"carina_name": name, "carina_remove_nodes": []})
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
        return self._bundle(name)[1]

    def credentials(self, name: str, path: Path) -> Path:
        """Copy the bundle into path (created 0700; private files 0600), its shell files pointing there.

        Never through a symbolic link, never into the cluster's own state folder, and never over a file
        carina did not write: a folder is carina's to rewrite once it holds the marker of an export of
        the same cluster (BUNDLE_MARK).
        """
        coe, src = self._bundle(name)
        path = Path(path).expanduser().absolute()
        if path.is_symlink():
            raise CarinaError(f"{path} is a symbolic link; export into a real folder")
        if path.exists() and not path.is_dir():
            raise CarinaError(f"{path} exists and is not a folder")
        real, state = path.resolve(), src.resolve()
        if real == state or state in real.parents:
            raise CarinaError(f"{path} is cluster {name}'s own state folder; export the bundle somewhere else")
        mark = path / BUNDLE_MARK
        ours = mark.is_file() and not mark.is_symlink() and mark.read_text(errors="replace").strip() == name
        items = coe.bundle_files()
        for item in [BUNDLE_MARK, *items]:
            target = path / item
            if target.is_symlink():
                raise CarinaError(f"{target} is a symbolic link; carina writes no file through a link")
            if target.exists() and not ours:
                raise CarinaError(f"{target} exists and carina did not write it; export into an empty folder "
                                  f"or one an earlier export of {name} made")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = set(coe.secret_files())
        write_file(mark, f"{name}\n".encode(), 0o644)
        for item in items:
            data = (src / item).read_bytes().replace(str(src).encode(), str(path).encode())
            write_file(path / item, data, 0o600 if item in secret else 0o644)
        return path

    def env(self, name: str, shell: str = "bash") -> str:
        """What to eval in `shell` to point the COE's own client at the cluster."""
        coe = self.coe(name)
        if shell not in coe.shells():
            raise CarinaError(f"shell {shell!r}: choose one of {', '.join(sorted(coe.shells()))}")
        return coe.env(self._bundle(name)[1], shell)

    def env_vars(self, name: str) -> dict[str, str]:
        """The environment the bundle's files set, by variable name (the contract's credentials.env)."""
        coe, state = self._bundle(name)
        cluster = self.get(name)
        env = coe.contract["credentials"].get("env") or {}
        return {key: str(value).format(endpoint=cluster.endpoint, path=state) for key, value in env.items()}

    def health(self, name: str) -> Health:
        """The health probe of the cluster's COE, once the cluster is *_COMPLETE."""
        cluster = self.get(name)
        if not cluster.status.endswith("_COMPLETE"):
            return Health("UNKNOWN", f"cluster is {cluster.status}")
        if not cluster.endpoint:
            return Health("UNKNOWN", "the cluster has no endpoint on record")
        try:
            coe = coes.get(cluster.coe)
        except CarinaError as exc:
            return Health("UNKNOWN", str(exc))
        return coe.health(cluster, paths.state_dir(self.home, name))

    # -- internals --------------------------------------------------------------------------
    def _plan(self, request: dict) -> dict:
        """The collection's planning rules on a request, against the cluster's record: the filled plan,
        with contract_version, or CarinaError naming every problem."""
        spec = planning.spec()
        contracts = planning.contracts()
        contract = contracts.get(request["coe"])
        request = dict(request, coes=sorted(contracts))
        unsupported = spec.operation_problems(contract, request["operation"]) if contract else []
        if unsupported:
            raise CarinaError("; ".join(unsupported), unsupported)
        if request["operation"] == "delete":
            return request  # a cluster is deleted whatever its record holds, or its COE's driver is gone
        # The record of an invalid name is never looked for: the name is a path.
        recorded = {} if spec.name_problems(request["name"]) else \
            planning.read_record(paths.state_dir(self.home, request["name"]))
        if request["operation"] == "scale" and not recorded:
            raise CarinaError(f"cluster {request['name']} has no record "
                              f"({paths.state_dir(self.home, request['name']) / planning.RECORD}), so its hosts are "
                              f"not known; `carina rm {request['name']}` and create it again")
        try:
            plan = spec.plan(request, contract, recorded)
        except spec.SpecError as exc:
            raise CarinaError("; ".join(exc.problems), exc.problems) from exc
        plan["contract_version"] = int(contract["version"]) if contract else 0
        return plan

    def _coe_options(self, name: str, coe: str, given: dict | None) -> dict:
        """The COE options of a create: those given, typed by the COE's contract, over those a failed create of
        the cluster was given; an empty value drops an option (the default applies)."""
        typed = dict(given or {})
        if typed and coe in planning.contracts():
            typed = coes.get(coe).option_values(typed)
        existing = self.store.get_cluster(name)
        retried = existing is not None and existing.status == "CREATE_FAILED" and existing.coe == coe
        merged = (existing.coe_options if retried else {}) | typed
        return {key: value for key, value in merged.items() if value not in (None, "")}

    @staticmethod
    def _inventory_request(hosts: dict | None) -> dict:
        """The planning rules' view of an inventory's hosts: who is master and worker, and the load balancer."""
        if hosts is None:
            return {}
        return {"inventory_hosts": {"master": hosts["master"], "worker": hosts["worker"]},
                "static": {"vip": hosts.get("vip", ""), "lb_hosts": hosts.get("lb", [])}}

    def _provider_inputs(self, provider: str, inventory: str | Path | None, masters: int | None,
                         nodes: int | None) -> tuple[dict, dict | None]:
        """Options to record for a provider, and the hosts it names (static), checked before anything is made."""
        if provider != STATIC:
            if inventory:
                raise CarinaError(f"an inventory is for --provider {STATIC}; provider {provider} makes its hosts")
            return {}, None
        if not inventory:
            raise CarinaError(f"provider {STATIC} needs --inventory PATH: an Ansible inventory whose groups "
                              f"{' and '.join(STATIC_GROUPS.values())} name the hosts")
        path = Path(inventory).expanduser().resolve()
        if not path.exists():
            raise CarinaError(f"inventory {inventory}: no such file")
        hosts = static_hosts(path)
        if not hosts["master"]:
            raise CarinaError(f"inventory {path} has no host in group {STATIC_GROUPS['master']}")
        given = {"masters": (masters, len(hosts["master"])), "nodes": (nodes, len(hosts["worker"]))}
        differ = [f"{key}={want} (the inventory has {have})" for key, (want, have) in given.items()
                  if want is not None and want != have]
        if differ:
            raise CarinaError(f"provider {STATIC} takes its hosts from the inventory {path}: {', '.join(differ)}; "
                              f"edit the inventory's groups instead of giving counts")
        return {"inventory": str(path)}, hosts

    def _scalable(self, name: str, db) -> Cluster:
        cluster = self._idle(name, db)
        if cluster.status == "CREATE_FAILED":
            raise Conflict(f"cluster {name} failed to create; retry `carina create` or `carina rm {name}`")
        return cluster

    def _bundle(self, name: str) -> tuple[Coe, Path]:
        coe = self.coe(name)
        state = paths.state_dir(self.home, name)
        if not all((state / item).exists() for item in coe.bundle_files()):
            raise CarinaError(f"cluster {name} has no credentials yet; wait for CREATE_COMPLETE")
        return coe, state

    def _state_id(self, name: str) -> str:
        """The unique id a playbook run gave the cluster (its state folder's `id`), '' when none."""
        try:
            found = (paths.state_dir(self.home, name) / "id").read_text().strip()
        except OSError:
            return ""
        return found if ID_PATTERN.fullmatch(found) else ""

    def _with_url(self, cluster: Cluster) -> Cluster:
        """A cluster recorded before the store kept API URLs gets one from its COE's contract, and one
        recorded before it kept ids the id of its state folder."""
        if not cluster.uuid:
            cluster.uuid = self._state_id(cluster.name)
        if not cluster.api_url and cluster.endpoint:
            with contextlib.suppress(CarinaError):
                cluster.api_url = coes.get(cluster.coe).api_url(cluster.endpoint)
        return cluster

    def _unlocked(self, name: str) -> None:
        """Refuse while a run this store did not start (plain ansible-playbook, AWX) holds the cluster's lock.

        The playbooks take the lock (rax.carina.cluster_lock, the file `lock` in the state folder) for as
        long as their ansible-playbook process lives; carina's own runs take it the same way.
        """
        path = paths.state_dir(self.home, name) / "lock"
        try:
            holder = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            return
        if not isinstance(holder, dict) or not holder.get("pid"):
            return
        if process_start(int(holder["pid"])) == holder.get("start"):
            raise Conflict(f"cluster {name} is busy: a {holder.get('operation', '?')} run (pid {holder['pid']}, "
                           f"since {holder.get('since', '?')}) holds its lock ({path}); wait for it to end")

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

    def _new_run(self, cluster: Cluster, action: str, playbook: str, extravars: dict,
                 timeout: int | None = None) -> Run:
        run_id = uuid.uuid4().hex[:12]
        data_dir = paths.runs_dir(self.home) / run_id
        extravars = dict(extravars, carina_home=str(self.home))
        bindir = str(Path(sys.executable).parent)
        envvars = {
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "ANSIBLE_COLLECTIONS_PATH": paths.collections_path(),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_FORKS": "20",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
            # Host keys are checked against what the cluster's provider recorded (its known_hosts).
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s -o LogLevel=ERROR",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(paths.control_path_dir(data_dir)),
            "ANSIBLE_LOCAL_TEMP": str(data_dir / "tmp"),
        }
        # The worker inherits the caller's environment (the provider's engine or cloud settings);
        # envvars only adds carina's Ansible settings, and the cluster's own (run_env).
        envvars.update(cluster.options.get("run_env") or {})
        params = {"playbook": playbook, "extravars": extravars, "envvars": envvars,
                  "timeout": timeout or RUN_TIMEOUT}
        if cluster.options.get("inventory"):
            params["inventory"] = [cluster.options["inventory"]]  # after the run's own (localhost)
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
