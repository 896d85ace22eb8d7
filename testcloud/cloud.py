#!/usr/bin/env python3
"""The test cloud's real OpenStack services: Keystone, Octavia and Ironic on 127.0.0.1.

    python3 testcloud/cloud.py setup    build .cache/testcloud/venv (once; instant when current)
    python3 testcloud/cloud.py up       setup, fresh databases, start the services, fill Keystone
    python3 testcloud/cloud.py down     stop exactly the processes `up` started
    python3 testcloud/cloud.py status   what runs, what answers
    python3 testcloud/cloud.py env      print `export OS_CLIENT_CONFIG_FILE=... OS_CLOUD=devstack`
    python3 testcloud/cloud.py lock     re-resolve requirements.txt and rewrite constraints.txt

This file uses only the standard library (any python3); the services run from the venv.
Compute, network and image are registered in the catalog but served by the emulator
(testcloud/emulator/), which this script does not start. See testcloud/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STATE = ROOT / ".cache" / "testcloud"
VENV = STATE / "venv"
ETC = STATE / "etc"
DATA = STATE / "data"
TEMPLATES = STATE / "templates"
IDS_FILE = "keystone-ids.json"
HEARTBEAT = STATE / "run" / "sweeper.heartbeat"
LOGS = STATE / "logs"
RUN = STATE / "run"
STAMP = VENV / ".testcloud-stamp"
CLOUDS_YAML = STATE / "clouds.yaml"
SITE = HERE / "site.yml"  # what the site role readies in the test cloud
CLOUD_JSON = STATE / "cloud.json"
SERVICES_SRC = HERE / "services"
REQUIREMENTS = HERE / "requirements.txt"
CONSTRAINTS = HERE / "constraints.txt"

HOST = "127.0.0.1"
REGION = "RegionOne"
DOMAIN = "Default"
PORTS = {"keystone": 5000, "octavia": 9876, "ironic": 6385, "barbican": 9311}
AUTH_URL = f"http://{HOST}:{PORTS['keystone']}/v3"
CLOUD_NAME = "devstack"
ADMIN_CLOUD_NAME = "devstack-admin"

# The catalog: service type -> (service name, endpoint URL, served by).
CATALOG = {
    "identity": ("keystone", f"http://{HOST}:{PORTS['keystone']}/v3", "keystone"),
    "load-balancer": ("octavia", f"http://{HOST}:{PORTS['octavia']}", "octavia"),
    "baremetal": ("ironic", f"http://{HOST}:{PORTS['ironic']}", "ironic"),
    "key-manager": ("barbican", f"http://{HOST}:{PORTS['barbican']}", "barbican"),
    "compute": ("nova", f"http://{HOST}:8774/v2.1", "emulator"),
    "network": ("neutron", f"http://{HOST}:9696", "emulator"),
    "image": ("glance", f"http://{HOST}:9292", "emulator"),
}

# Test-only credentials of a cloud that listens on 127.0.0.1 and lives for one test run.
ACCOUNTS = {
    "admin": {"project": "admin", "secret": "admin-testcloud", "roles": ["admin"]},
    "demo": {"project": "demo", "secret": "demo-testcloud", "roles": ["member", "load-balancer_member"]},
    "octavia": {"project": "service", "secret": "octavia-testcloud", "roles": ["admin", "service"]},
    "ironic": {"project": "service", "secret": "ironic-testcloud", "roles": ["admin", "service"]},
    "barbican": {"project": "service", "secret": "barbican-testcloud", "roles": ["admin", "service"]},
    # A second tenant (for isolation tests), and the carina service's own user: it validates callers' tokens
    # (Keystone lets the service role do that) and may do nothing else.
    "alt": {"project": "alt", "secret": "alt-testcloud", "roles": ["member"]},
    "carina": {"project": "service", "secret": "carina-testcloud", "roles": ["service"]},
}
EXTRA_ROLES = [
    "member",
    "reader",
    "service",
    "load-balancer_member",
    "load-balancer_observer",
    "load-balancer_global_observer",
    "load-balancer_admin",
    "load-balancer_quota_admin",
]

START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


def log(msg: str) -> None:
    print(f"testcloud: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the venv
def base_python() -> str:
    """The interpreter the venv is built from: $TESTCLOUD_PYTHON, else python3.11, else python3."""
    for candidate in (os.environ.get("TESTCLOUD_PYTHON"), "python3.11", "python3"):
        if candidate and (path := shutil.which(candidate)):
            return path
    raise SystemExit("testcloud: no python3 found on PATH")


def python_version(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout.strip()


def requirements_hash(python: str) -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, CONSTRAINTS):
        digest.update(path.read_bytes())
    digest.update(python_version(python).encode())
    return digest.hexdigest()


def venv_current() -> bool:
    return STAMP.exists() and STAMP.read_text().strip() == requirements_hash(base_python())


def installer(venv: Path) -> tuple[list[str], list[str]]:
    """The commands that install into the venv and check it: uv's when the project venv has it (cold, it installs
    the test cloud in seconds where pip takes minutes; its cache is .cache/uv), else the venv's own pip. Neither
    compiles bytecode up front: the services compile what they import on first use."""
    python = str(venv / "bin" / "python")
    uv = ROOT / ".venv" / "bin" / "uv"
    if uv.exists() or (uv := shutil.which("uv")):
        os.environ.setdefault("UV_CACHE_DIR", str(ROOT / ".cache" / "uv"))
        return ([str(uv), "pip", "install", "--quiet", "--python", python],
                [str(uv), "pip", "check", "--quiet", "--python", python])
    return [python, "-m", "pip", "install", "--no-input", "--quiet", "--no-compile"], [python, "-m", "pip", "check"]


def setup() -> None:
    python = base_python()
    wanted = requirements_hash(python)
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    started = time.monotonic()
    log(f"building {VENV} from {python} ({python_version(python).split()[0]})")
    if VENV.exists():
        shutil.rmtree(VENV)
    STATE.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    install, check = installer(VENV)
    subprocess.run([*install, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run(check, check=True)
    STAMP.write_text(wanted + "\n")
    log(f"venv ready in {time.monotonic() - started:.0f} s")


def lock() -> None:
    """Resolve requirements.txt afresh (without constraints) and write the result to constraints.txt."""
    python = base_python()
    with tempfile.TemporaryDirectory(prefix="testcloud-lock-") as tmp:
        subprocess.run([python, "-m", "venv", tmp], check=True)
        pip = [f"{tmp}/bin/python", "-m", "pip"]
        tops = [line for line in REQUIREMENTS.read_text().splitlines() if line and not line.startswith(("#", "-"))]
        subprocess.run([*pip, "install", "--no-input", "--quiet", *tops], check=True)
        subprocess.run([*pip, "check"], check=True)
        frozen = subprocess.run([*pip, "freeze", "--all"], check=True, capture_output=True, text=True).stdout
    pins = [line for line in frozen.splitlines() if line.split("==")[0].lower() not in {"pip", "setuptools", "wheel"}]
    CONSTRAINTS.write_text(
        "# Every package of the test-cloud venv, as resolved for requirements.txt on Python 3.11\n"
        "# (pip check clean). Written by `python3 testcloud/cloud.py lock`.\n" + "\n".join(pins) + "\n"
    )
    log(f"wrote {CONSTRAINTS} ({len(pins)} pins)")


def venv_bin(name: str) -> str:
    return str(VENV / "bin" / name)


# ----------------------------------------------------------------------------- configuration
def _ini(sections: dict[str, dict[str, object]]) -> str:
    out = ["# Written by testcloud/cloud.py up; rewritten on every up."]
    for section, options in sections.items():
        out.append(f"\n[{section}]")
        for key, value in options.items():
            text = ("true" if value else "false") if isinstance(value, bool) else value
            out.append(f"{key} = {text}")
    return "\n".join(out) + "\n"


def _service_user(user: str) -> dict[str, object]:
    return {
        "auth_type": "password",
        "auth_url": AUTH_URL,
        "username": user,
        "password": ACCOUNTS[user]["secret"],
        "project_name": ACCOUNTS[user]["project"],
        "user_domain_name": DOMAIN,
        "project_domain_name": DOMAIN,
        "region_name": REGION,
    }


def _authtoken(user: str) -> dict[str, object]:
    return {"www_authenticate_uri": AUTH_URL, **_service_user(user), "memcached_servers": ""}


def keystone_conf(data: Path = DATA) -> str:
    """keystone.conf with its database and keys in `data` (the test cloud's, or a test session's own)."""
    return _ini(
        {
            "DEFAULT": {"debug": False},
            "database": {"connection": f"sqlite:///{data}/keystone.sqlite"},
            "token": {"provider": "fernet", "expiration": 14400},
            "fernet_tokens": {"key_repository": data / "fernet-keys"},
            "fernet_receipts": {"key_repository": data / "fernet-receipts"},
            "credential": {"key_repository": data / "credential-keys"},
            # bcrypt's cheapest cost: a token costs a few ms instead of ~0.3 s (test passwords only).
            "identity": {"password_hash_rounds": 4},
            "oslo_policy": {"enforce_scope": False, "enforce_new_defaults": False},
        }
    )


def octavia_conf() -> str:
    return _ini(
        {
            "DEFAULT": {"debug": False, "transport_url": "fake://"},
            "api_settings": {
                "bind_host": HOST,
                "bind_port": PORTS["octavia"],
                "auth_strategy": "keystone",
                "api_base_uri": f"http://{HOST}:{PORTS['octavia']}",
                "enabled_provider_drivers": "noop_driver:'The no-op driver; the test cloud sweeper makes it ACTIVE.'",
                "default_provider_driver": "noop_driver",
            },
            "database": {"connection": f"sqlite:///{DATA}/octavia.sqlite", "pool_timeout": ""},
            "controller_worker": {
                "network_driver": "network_noop_driver",
                "compute_driver": "compute_noop_driver",
                "amphora_driver": "amphora_noop_driver",
                "image_driver": "image_noop_driver",
                "volume_driver": "volume_noop_driver",
                "loadbalancer_topology": "SINGLE",
            },
            "keystone_authtoken": _authtoken("octavia"),
            "service_auth": _service_user("octavia"),
            "oslo_policy": {"enforce_scope": False, "enforce_new_defaults": False},
            "oslo_messaging": {"topic": "octavia_prov"},
        }
    )


def ironic_conf() -> str:
    interfaces = {
        "boot": "fake",
        "deploy": "fake",
        "management": "fake",
        "power": "fake",
        "inspect": "no-inspect",
        "console": "no-console",
        "raid": "no-raid",
        "vendor": "no-vendor",
        "bios": "no-bios",
        "rescue": "no-rescue",
        "firmware": "no-firmware",
        "network": "noop",
        "storage": "noop",
    }
    default: dict[str, object] = {
        "debug": False,
        "host": "testcloud",
        "auth_strategy": "keystone",
        "rpc_transport": "none",
        "enabled_hardware_types": "fake-hardware",
        "default_resource_class": "baremetal",
    }
    for kind, name in interfaces.items():
        default[f"enabled_{kind}_interfaces"] = name
        default[f"default_{kind}_interface"] = name
    return _ini(
        {
            "DEFAULT": default,
            "api": {"host_ip": HOST, "port": PORTS["ironic"], "api_workers": 1},
            "database": {"connection": f"sqlite:///{DATA}/ironic.sqlite"},
            "conductor": {"automated_clean": False},
            "dhcp": {"dhcp_provider": "none"},
            "vnc": {"enabled": False},
            "keystone_authtoken": _authtoken("ironic"),
            "service_catalog": _service_user("ironic"),
            "neutron": _service_user("ironic"),
            "glance": _service_user("ironic"),
            "oslo_policy": {"enforce_scope": False, "enforce_new_defaults": False,
                            "policy_file": str(ETC / "ironic-policy.yaml")},
        }
    )


# Ironic hides instance_info.configdrive from everybody by default ("!"); the data-plane agent,
# as admin, reads the SSH keys from it, as cloud-init on a real node would.
IRONIC_POLICY = '"show_instance_secrets": "role:admin"\n'


# Barbican's key-encryption key for its simple_crypto plugin: test-only, like the passwords above (a Fernet key,
# 32 bytes in url-safe base64).
BARBICAN_KEK = "dGVzdGNsb3VkLWJhcmJpY2FuLWtlay0zMi1ieXRlcyE="


def barbican_conf() -> str:
    return _ini(
        {
            "DEFAULT": {"host_href": f"http://{HOST}:{PORTS['barbican']}", "db_auto_create": True, "debug": False},
            "database": {"connection": f"sqlite:///{DATA}/barbican.sqlite"},
            "secretstore": {"namespace": "barbican.secretstore.plugin", "enabled_secretstore_plugins": "store_crypto"},
            "crypto": {"namespace": "barbican.crypto.plugin", "enabled_crypto_plugins": "simple_crypto"},
            "simple_crypto_plugin": {"kek": BARBICAN_KEK},
            "keystone_authtoken": _authtoken("barbican"),
            "oslo_policy": {"enforce_scope": False, "enforce_new_defaults": True},
        }
    )


def write_configs() -> None:
    ETC.mkdir(parents=True, exist_ok=True)
    (ETC / "keystone.conf").write_text(keystone_conf())
    (ETC / "octavia.conf").write_text(octavia_conf())
    (ETC / "ironic.conf").write_text(ironic_conf())
    (ETC / "barbican.conf").write_text(barbican_conf())
    (ETC / "ironic-policy.yaml").write_text(IRONIC_POLICY)
    for conf in ETC.glob("*.conf"):
        conf.chmod(0o600)


# ----------------------------------------------------------------------------- processes
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (index 0 = state, 2 = pgrp, 19 = starttime)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rsplit(")", 1)[1].split()


def _alive(pid: int, starttime: str | None = None) -> bool:
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return starttime is None or stat[19] == starttime


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[2] == str(pgid) and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


@dataclass
class Service:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return LOGS / f"{self.name}.log"

    def recorded(self) -> tuple[int, str] | None:
        try:
            pid, starttime = self.pidfile.read_text().split()
            return int(pid), starttime
        except (FileNotFoundError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid of the process `up` started, if it still runs."""
        rec = self.recorded()
        if rec and _alive(*rec):
            return rec[0]
        return None

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        RUN.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(SERVICES_SRC), **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("VIRTUAL_ENV", None)
        with self.logfile.open("ab") as out:
            out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start {' '.join(self.argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                self.argv,
                cwd=STATE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: `down` stops the group and nothing else
            )
        stat = _proc_stat(proc.pid)
        self.pidfile.write_text(f"{proc.pid} {stat[19] if stat else '0'}\n")

    def group(self) -> int | None:
        """The id of the process group `up` started for this service, while anything of it may run.

        The group's id is the pid of the process `start` started (its own session). While any
        process of the group lives, Linux does not give that number to another process, so
        the group is ours unless the pid now belongs to a different process (start time)."""
        rec = self.recorded()
        if rec is None:
            return None
        pid, starttime = rec
        stat = _proc_stat(pid)
        if stat is not None and stat[19] != starttime:
            return None  # the number was reused: not ours
        return pid if (stat is not None and stat[0] not in ("Z", "X")) or _group_members(pid) else None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def stop_all(svcs: list[Service]) -> list[str]:
    """SIGTERM every service's process group at once, wait for all of them, SIGKILL what is left."""
    groups: dict[str, int] = {}
    for svc in svcs:
        pgid = svc.group()
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            groups[svc.name] = pgid
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_group_members(g) for g in groups.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pgid in groups.items():
        if left := _group_members(pgid):
            log(f"{name}: {len(left)} process(es) ignored SIGTERM for {STOP_TIMEOUT:.0f} s; SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    while any(_group_members(g) for g in groups.values()) and time.monotonic() < deadline + 5:
        time.sleep(0.1)
    for svc in svcs:
        svc.pidfile.unlink(missing_ok=True)
    HEARTBEAT.unlink(missing_ok=True)  # so that readiness is never judged on a dead sweeper's file
    return list(groups)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when something answers HTTP at url (any status below 500)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http://127.0.0.1 only)
            return resp.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (OSError, ValueError):
        return False


def port_taken(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


def heartbeat_fresh(path: Path, max_age: float = 5.0) -> bool:
    try:
        return time.time() - path.stat().st_mtime < max_age
    except FileNotFoundError:
        return False


def services() -> list[Service]:
    gunicorn = venv_bin("gunicorn")
    common = ["--workers", "1", "--access-logfile", "-", "--error-logfile", "-", "--timeout", "120"]
    heartbeat = HEARTBEAT
    noop_db = str(DATA / "octavia-noop.sqlite")
    db_lock = str(RUN / "octavia-db.lock")
    return [
        Service(
            "keystone",
            # One thread: Keystone writes to sqlite on every login (last_active_at); concurrent
            # writers in one process fail with "database is locked".
            [
                gunicorn,
                *common,
                "--worker-class",
                "sync",
                "--name",
                "testcloud-keystone",
                "--bind",
                f"{HOST}:{PORTS['keystone']}",
                "keystone_app:application",
            ],
            lambda: http_ok(f"http://{HOST}:{PORTS['keystone']}/v3"),
            {"OS_KEYSTONE_CONFIG_DIR": str(ETC), "OS_KEYSTONE_CONFIG_FILES": "keystone.conf"},
        ),
        Service(
            "octavia",
            [
                gunicorn,
                *common,
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--name",
                "testcloud-octavia",
                "--bind",
                f"{HOST}:{PORTS['octavia']}",
                "octavia_app:application",
            ],
            lambda: http_ok(f"http://{HOST}:{PORTS['octavia']}/"),
            {
                "TESTCLOUD_OCTAVIA_CONF": str(ETC / "octavia.conf"),
                "TESTCLOUD_OCTAVIA_NOOP_DB": noop_db,
                "TESTCLOUD_OCTAVIA_DB_LOCK": db_lock,
            },
        ),
        Service(
            "ironic",
            [venv_bin("ironic"), "--config-file", str(ETC / "ironic.conf")],
            lambda: http_ok(f"http://{HOST}:{PORTS['ironic']}/"),
        ),
        Service(
            "barbican",
            # One thread: sqlite, as Keystone's.
            [
                gunicorn,
                *common,
                "--worker-class",
                "sync",
                "--name",
                "testcloud-barbican",
                "--bind",
                f"{HOST}:{PORTS['barbican']}",
                "barbican_app:application",
            ],
            lambda: http_ok(f"http://{HOST}:{PORTS['barbican']}/"),
            {
                "TESTCLOUD_BARBICAN_CONF": str(ETC / "barbican.conf"),
                "TESTCLOUD_BARBICAN_PASTE": str(VENV / "etc" / "barbican" / "barbican-api-paste.ini"),
            },
        ),
        Service(
            "octavia-sweeper",
            [
                venv_bin("python"),
                str(SERVICES_SRC / "octavia_sweeper.py"),
                "--config-file",
                str(ETC / "octavia.conf"),
                "--noop-db",
                noop_db,
                "--db-lock",
                db_lock,
                "--interval",
                "0.5",
                "--heartbeat",
                str(heartbeat),
            ],
            lambda: heartbeat_fresh(heartbeat),
        ),
    ]


def project_python() -> str:
    """The project's virtualenv (openstacksdk, docker SDK), where the emulator and agent run."""
    return os.environ.get("TESTCLOUD_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


def dataplane_services() -> list[Service]:
    """The emulated Nova/Neutron/Glance and the agent that runs Ironic's and Octavia's data plane."""
    common = {"PYTHONPATH": str(ROOT), "OS_CLIENT_CONFIG_FILE": str(CLOUDS_YAML)}
    return [
        Service(
            "emulator",
            [project_python(), "-m", "testcloud.emulator", "--state-dir", str(STATE), "--keystone", AUTH_URL],
            lambda: http_ok(f"http://{HOST}:8774/"),
            common,
        ),
        Service(
            "agent",
            [project_python(), "-m", "testcloud.agent", "--state-dir", str(STATE), "--cloud", ADMIN_CLOUD_NAME,
             "--clouds-yaml", str(CLOUDS_YAML)],
            lambda: True,
            common,
        ),
    ]


def purge_dataplane() -> None:
    """Remove the containers, volumes and networks the emulator and agent made (label carina.testcloud=1)."""
    if Path(project_python()).exists():
        subprocess.run([project_python(), "-m", "testcloud.emulator", "--state-dir", str(STATE), "purge"],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, check=False,
                       timeout=300)


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    RUN.mkdir(parents=True, exist_ok=True)
    with (RUN / "lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- databases
def run_step(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / "init.log").open("ab") as out:
        out.write(f"\n==== {time.strftime('%H:%M:%S')} {name}: {' '.join(argv)}\n".encode())
        out.flush()
        full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(SERVICES_SRC)}
        result = subprocess.run(argv, cwd=STATE, env=full_env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode:
        raise SystemExit(f"testcloud: {name} failed (exit {result.returncode}); see {LOGS / 'init.log'}")


def template_key() -> str:
    """What the initial databases depend on: the venv, the configuration, the code that builds them."""
    digest = hashlib.sha256(STAMP.read_bytes())
    for path in [*sorted(ETC.glob("*.conf")), SERVICES_SRC / "octavia_schema.py", Path(__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fresh_databases() -> Path | None:
    """Wipe the data folder and put fresh databases there: a copy of the template when one matches
    (returns None), else built from scratch (returns the folder `save_template` fills)."""
    if DATA.exists():
        shutil.rmtree(DATA)
    template = TEMPLATES / template_key()
    if (template / IDS_FILE).is_file():
        shutil.copytree(template, DATA, symlinks=True)
        return None
    build_databases()
    # Ironic's and Octavia's databases are kept before their services touch them; Keystone's
    # once it has its users and catalog (see save_template).
    shutil.rmtree(TEMPLATES, ignore_errors=True)  # one template is enough
    TEMPLATES.mkdir(parents=True)
    for name in ("ironic.sqlite", "octavia.sqlite"):
        shutil.copy2(DATA / name, TEMPLATES / name)
    return template


def save_template(template: Path, ids: dict) -> None:
    """Keep the databases as they are right after `up` filled Keystone, for the next `up`."""
    partial = TEMPLATES / f"{template.name}.partial"
    partial.mkdir()
    for name in ("ironic.sqlite", "octavia.sqlite"):
        (TEMPLATES / name).rename(partial / name)
    for keys in ("fernet-keys", "fernet-receipts", "credential-keys"):
        shutil.copytree(DATA / keys, partial / keys, symlinks=True)
    # sqlite's online backup: a consistent copy while Keystone runs.
    with sqlite3.connect(DATA / "keystone.sqlite") as src, sqlite3.connect(partial / "keystone.sqlite") as dst:
        src.backup(dst)
    (partial / IDS_FILE).write_text(json.dumps(ids, indent=2) + "\n")
    partial.rename(template)


def build_databases() -> None:
    DATA.mkdir(parents=True)
    (LOGS / "init.log").unlink(missing_ok=True)
    side = [
        subprocess.Popen(
            [venv_bin("ironic-dbsync"), "--config-file", str(ETC / "ironic.conf"), "create_schema"],
            cwd=STATE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [venv_bin("python"), str(SERVICES_SRC / "octavia_schema.py"), str(DATA / "octavia.sqlite")],
            cwd=STATE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": ""},
        ),
    ]
    manage = [venv_bin("keystone-manage"), "--config-file", str(ETC / "keystone.conf")]
    owner = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    run_step("keystone db_sync", [*manage, "db_sync"])
    run_step("keystone fernet_setup", [*manage, "fernet_setup", *owner])
    run_step("keystone credential_setup", [*manage, "credential_setup", *owner])
    identity = CATALOG["identity"][1] + "/"
    run_step(
        "keystone bootstrap",
        [
            *manage,
            "bootstrap",
            "--bootstrap-username",
            "admin",
            "--bootstrap-project-name",
            "admin",
            "--bootstrap-role-name",
            "admin",
            "--bootstrap-service-name",
            "keystone",
            "--bootstrap-region-id",
            REGION,
            "--bootstrap-admin-url",
            identity,
            "--bootstrap-internal-url",
            identity,
            "--bootstrap-public-url",
            identity,
        ],
        env={"OS_BOOTSTRAP_PASSWORD": ACCOUNTS["admin"]["secret"]},
    )
    for proc, name in zip(side, ("ironic-dbsync create_schema", "octavia schema"), strict=True):
        output, _ = proc.communicate()
        with (LOGS / "init.log").open("ab") as out:
            out.write(f"\n==== {name}\n".encode() + output)
        if proc.returncode:
            raise SystemExit(f"testcloud: {name} failed (exit {proc.returncode}); see {LOGS / 'init.log'}")


# ----------------------------------------------------------------------------- Keystone content
class Keystone:
    """Just enough of Keystone's v3 API (stdlib HTTP) to fill a fresh Keystone."""

    def __init__(self) -> None:
        self.token = ""

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(AUTH_URL + path, data=data, method=method)  # noqa: S310 (127.0.0.1)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("X-Auth-Token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                raw = resp.read()
                return resp.status, dict(resp.headers), json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            raw = e.read()
            raise SystemExit(f"testcloud: keystone {method} {path}: HTTP {e.code} {raw[:300]!r}") from e

    def login(self, user: str) -> dict:
        _, headers, body = self.call(
            "POST",
            "/auth/tokens",
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {"name": user, "domain": {"name": DOMAIN}, "password": ACCOUNTS[user]["secret"]}
                        },
                    },
                    "scope": {"project": {"name": ACCOUNTS[user]["project"], "domain": {"name": DOMAIN}}},
                }
            },
        )
        self.token = headers.get("X-Subject-Token", "")
        return body["token"]

    def find(self, collection: str, name: str) -> dict | None:
        _, _, body = self.call("GET", f"/{collection}?name={name}")
        found = body.get(collection, [])
        return found[0] if found else None

    def ensure(self, collection: str, kind: str, attrs: dict) -> dict:
        return self.find(collection, attrs["name"]) or self.call("POST", f"/{collection}", {kind: attrs})[2][kind]


def fill_keystone() -> dict:
    ks = Keystone()
    ks.login("admin")
    _, _, domains = ks.call("GET", f"/domains?name={DOMAIN}")
    domain_id = domains["domains"][0]["id"]
    roles = {name: ks.ensure("roles", "role", {"name": name})["id"] for name in ["admin", *EXTRA_ROLES]}
    projects: dict[str, str] = {}
    users: dict[str, str] = {}
    for user, account in ACCOUNTS.items():
        project = account["project"]
        if project not in projects:
            projects[project] = ks.ensure(
                "projects",
                "project",
                {"name": project, "domain_id": domain_id, "description": f"test cloud project {project}"},
            )["id"]
        users[user] = ks.ensure(
            "users",
            "user",
            {
                "name": user,
                "domain_id": domain_id,
                "password": account["secret"],
                "default_project_id": projects[project],
                "enabled": True,
            },
        )["id"]
        for role in account["roles"]:
            ks.call("PUT", f"/projects/{projects[project]}/users/{users[user]}/roles/{roles[role]}")
    _, _, existing = ks.call("GET", "/services")
    by_type = {s["type"]: s for s in existing["services"]}
    for stype, (sname, url, _) in CATALOG.items():
        service = (
            by_type.get(stype)
            or ks.call("POST", "/services", {"service": {"type": stype, "name": sname, "enabled": True}})[2]["service"]
        )
        _, _, eps = ks.call("GET", f"/endpoints?service_id={service['id']}")
        have = {e["interface"] for e in eps["endpoints"]}
        for interface in ("public", "internal", "admin"):
            if interface not in have:
                ks.call(
                    "POST",
                    "/endpoints",
                    {
                        "endpoint": {
                            "service_id": service["id"],
                            "interface": interface,
                            "url": url,
                            "region_id": REGION,
                            "enabled": True,
                        }
                    },
                )
    return {"domain_id": domain_id, "projects": projects, "users": users, "roles": roles}


def write_client_files(ids: dict) -> None:
    def cloud(user: str) -> list[str]:
        account = ACCOUNTS[user]
        return [
            "    auth:",
            f"      auth_url: {AUTH_URL}",
            f"      username: {user}",
            f"      password: {account['secret']}",
            f"      project_name: {account['project']}",
            f"      user_domain_name: {DOMAIN}",
            f"      project_domain_name: {DOMAIN}",
            f"    region_name: {REGION}",
            "    identity_api_version: 3",
            "    interface: public",
        ]

    lines = [
        "# Written by testcloud/cloud.py up. The test cloud on 127.0.0.1 (see testcloud/README.md).",
        "clouds:",
        f"  {CLOUD_NAME}:",
        *cloud("demo"),
        f"  {ADMIN_CLOUD_NAME}:",
        *cloud("admin"),
    ]
    CLOUDS_YAML.write_text("\n".join(lines) + "\n")
    facts = {
        "auth_url": AUTH_URL,
        "region": REGION,
        "domain": DOMAIN,
        "domain_id": ids["domain_id"],
        "clouds_yaml": str(CLOUDS_YAML),
        "clouds": {CLOUD_NAME: "demo", ADMIN_CLOUD_NAME: "admin"},
        "users": {
            user: {
                "id": ids["users"][user],
                "password": account["secret"],
                "project": account["project"],
                "project_id": ids["projects"][account["project"]],
                "roles": account["roles"],
            }
            for user, account in ACCOUNTS.items()
        },
        "projects": ids["projects"],
        "roles": ids["roles"],
        "ports": {**PORTS, "nova": 8774, "neutron": 9696, "glance": 9292},
        "endpoints": {stype: {"name": name, "url": url, "served_by": by} for stype, (name, url, by) in CATALOG.items()},
        "logs": str(LOGS),
    }
    CLOUD_JSON.write_text(json.dumps(facts, indent=2) + "\n")


def prepare_cloud(clouds_yaml: Path, cloud_name: str, log_file: Path, extra: dict | None = None) -> None:
    """Ready the cloud as an operator readies theirs: the site role carina_cloud (playbooks/prepare_cloud.yml)
    with the test cloud's site (site.yml: carina's images, the flavors, the demo project's quotas), as admin."""
    playbook = Path(project_python()).parent / "ansible-playbook"
    argv = [str(playbook), str(ROOT / "playbooks" / "prepare_cloud.yml"), "-e", f"@{SITE}",
            "-e", json.dumps({"carina_cloud_cloud": cloud_name, **(extra or {})})]
    env = {key: value for key, value in os.environ.items() if not key.startswith("OS_")}
    env.update(OS_CLIENT_CONFIG_FILE=str(clouds_yaml), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with log_file.open("wb") as out:
        proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"the site role failed (exit {proc.returncode}); see {log_file}:\n{tail}")


# ----------------------------------------------------------------------------- commands
def wait_ready(svcs: list[Service], since: float, times: dict[str, float]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = [s for s in svcs if s.name not in times]
    while pending:
        for svc in list(pending):
            if svc.ready():
                times[svc.name] = time.monotonic() - since
                pending.remove(svc)
            elif svc.pid() is None:
                raise RuntimeError(f"{svc.name} exited while starting:\n{svc.tail()}")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{pending[0].name} did not answer within {START_TIMEOUT:.0f} s:\n{pending[0].tail()}")
        if pending:
            time.sleep(0.2)


def up() -> int:
    with state_lock():
        setup()
        svcs = services()
        dataplane = dataplane_services()
        every = svcs + dataplane
        running = [s for s in every if s.group() is not None]
        if len(running) == len(every) and all(s.ready() for s in every) and CLOUD_JSON.exists():
            log("already up")
            return 0
        if running:
            log("partly up: stopping " + ", ".join(s.name for s in running) + " for a clean start")
            stop_all(running)
        purge_dataplane()
        (STATE / "emulator.json").unlink(missing_ok=True)
        taken = [f"{name} {port}" for name, port in {**PORTS, "nova": 8774, "neutron": 9696, "glance": 9292}.items()
                 if port_taken(port)]
        if taken:
            log(f"cannot start: something else listens on {HOST} port(s): {', '.join(taken)}")
            return 1
        started = time.monotonic()
        CLOUD_JSON.unlink(missing_ok=True)
        write_configs()
        new_template = fresh_databases()
        how = "built" if new_template else "copied from the template"
        t_db = time.monotonic() - started
        by_name = {s.name: s for s in svcs}
        times: dict[str, float] = {}
        try:
            t_start = time.monotonic()
            HEARTBEAT.unlink(missing_ok=True)
            for svc in svcs:
                svc.start()
            if new_template:
                wait_ready([by_name["keystone"]], t_start, times)
                ids = fill_keystone()
                save_template(new_template, ids)
                times["keystone content"] = time.monotonic() - t_start
            else:
                ids = json.loads((DATA / IDS_FILE).read_text())
            write_client_files(ids)
            for svc in dataplane:
                svc.start()
            wait_ready(every, t_start, times)
            t_site = time.monotonic()
            prepare_cloud(CLOUDS_YAML, ADMIN_CLOUD_NAME, LOGS / "site.log")
            times["site role"] = time.monotonic() - t_site
        except (RuntimeError, SystemExit) as e:
            log(f"up failed: {e}")
            stop_all(every)
            purge_dataplane()
            return 1
        ready = ", ".join(f"{name} {secs:.1f} s" for name, secs in times.items())
        log(f"up in {time.monotonic() - started:.1f} s (databases {how} in {t_db:.1f} s; ready after start: {ready})")
        log(f"export OS_CLIENT_CONFIG_FILE={CLOUDS_YAML} OS_CLOUD={CLOUD_NAME}")
    return 0


def down() -> int:
    with state_lock():
        stopped = stop_all(dataplane_services() + services())
        purge_dataplane()
    log("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def status() -> int:
    svcs = services() + dataplane_services()
    up_count = 0
    for svc in svcs:
        pid = svc.pid()
        answers = svc.ready()
        up_count += bool(pid and answers)
        state = "up" if pid and answers else ("starting/unhealthy" if pid else "down")
        members = len(_group_members(pid)) if pid else 0
        print(f"{svc.name:16} {state:18} pid={pid or '-':<8} processes={members} log={svc.logfile}")
    print(
        f"{'emulated':16} compute/network/image at {CATALOG['compute'][1]}, {CATALOG['network'][1]}, "
        f"{CATALOG['image'][1]} (testcloud/emulator)"
    )
    print(f"venv: {'current' if venv_current() else 'missing or stale'} ({VENV})")
    if CLOUD_JSON.exists():
        print(f"clouds.yaml: {CLOUDS_YAML} (clouds {CLOUD_NAME}, {ADMIN_CLOUD_NAME})")
    return 0 if up_count == len(svcs) else (3 if up_count == 0 else 1)


def env() -> int:
    print(f"export OS_CLIENT_CONFIG_FILE={CLOUDS_YAML} OS_CLOUD={CLOUD_NAME}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "up", "down", "status", "env", "lock"])
    args = parser.parse_args(argv)
    if args.command == "setup":
        with state_lock():
            setup()
        return 0
    if args.command == "lock":
        lock()
        return 0
    return {"up": up, "down": down, "status": status, "env": env}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
