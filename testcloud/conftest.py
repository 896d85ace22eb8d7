"""What testcloud's own tests (testcloud/emulator, testcloud/agent) need, started for the session and
stopped at its end; `make test` runs them (pytest tests testcloud ...).

- The Docker engine ($DOCKER_HOST, which `make test` exports) and the carina-host images (`make images`).
- A Keystone v3 whose catalog names the emulator. By default a Keystone of the session's own: Keystone
  30 from the test cloud's venv (`cloud.py setup` builds it once, the same venv and stamp as
  `cloud.py up`), bootstrapped once into a template under .cache/testcloud-tests/, copied to a temporary
  folder and served by gunicorn on a free port of 127.0.0.1; its catalog points compute, network and
  image at free ports too. So the tests never collide with a test cloud on the usual ports.
  TESTCLOUD_KEYSTONE=URL uses a running Keystone instead (the test cloud's: http://127.0.0.1:5000/v3),
  with admin credentials from TESTCLOUD_ADMIN_USER/_PASSWORD/_PROJECT or a clouds.yaml of
  .cache/testcloud or .cache/testcloud-dev/keystone whose auth_url is that URL.
- The emulator (Nova, Neutron, Glance) on the catalog's ports: one of the session's own on a temporary
  state dir, or, with TESTCLOUD_KEYSTONE, the one that already answers there.

The session's emulator and the agent's tests label their Docker objects with an instance of their
own (carina.testcloud.instance=tests-<random>): a test cloud on the same engine (`cloud.py up`, instance
testcloud) neither sees nor purges them, and they never touch its objects. At the end the session
stops exactly the processes it started (each in its own process group) and removes the Docker objects
of its instance; nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import docker
import openstack
import pytest
import yaml
from openstack import exceptions as osexc

from testcloud import cloud
from testcloud.agent.dataplane import LABEL_INSTANCE

ROOT = cloud.ROOT
HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".cache" / "testcloud-tests"
HOST = "127.0.0.1"
REGION = "RegionOne"
IMAGES = ("carina-host:bookworm-engine", "carina-host:bookworm-lb")
# Test-only credentials of a Keystone that listens on 127.0.0.1 for one test session.
ADMIN = {"username": "admin", "password": "admin-testcloud-tests", "project_name": "admin"}
START_TIMEOUT = 90.0


def pytest_collection_modifyitems(items):
    """They need the engine and the images like tests/integration (`make integration` runs them too)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


# -- helpers ----------------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    """Distinct ports of 127.0.0.1 that nothing listens on (the kernel's choice)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def http_json(method: str, url: str, body: dict | None = None, token: str = "") -> tuple[dict, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,  # noqa: S310
                                 method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - 127.0.0.1 only
        raw = resp.read()
        return dict(resp.headers), (json.loads(raw) if raw else {})


def login(url: str, creds: dict) -> tuple[str, dict]:
    """(token, token body with the catalog) of a project-scoped password login."""
    headers, body = http_json("POST", url + "/auth/tokens", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": creds["username"], "domain": {"id": "default"}, "password": creds["password"]}}},
        "scope": {"project": {"name": creds["project_name"], "domain": {"id": "default"}}}}})
    return headers["X-Subject-Token"], body["token"]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - 127.0.0.1 only
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


class Group:
    """A process started in its own session (process group): stop() ends that group and nothing else."""

    def __init__(self, argv: list[str], log: Path, **kwargs):
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, **kwargs)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while (self.proc.poll() is None or cloud._group_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.proc.poll() is None or cloud._group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def wait_until(ready, group: Group, what: str, timeout: float = START_TIMEOUT) -> float:
    started = time.monotonic()
    while not ready():
        assert group.alive(), "%s exited while starting:\n%s" % (what, group.tail())
        assert time.monotonic() - started < timeout, "%s did not answer within %.0f s:\n%s" % (
            what, timeout, group.tail())
        time.sleep(0.2)
    return time.monotonic() - started


# -- Keystone ---------------------------------------------------------------------------------
def keystone_template() -> Path:
    """A bootstrapped Keystone (database, fernet and credential keys: user, project and role admin,
    roles member and reader, region RegionOne), built once per test-cloud venv and per version of
    the code that makes it: keystone-manage takes ~10-20 s, a copy a few milliseconds."""
    made_by = inspect.getsource(cloud.keystone_conf) + inspect.getsource(keystone_template) + repr((ADMIN, REGION))
    key = hashlib.sha256(cloud.STAMP.read_bytes() + made_by.encode()).hexdigest()[:16]
    template = CACHE / ("keystone-" + key)
    if (template / "ready").exists():
        return template
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building the same template
        if (template / "ready").exists():
            return template
        for old in CACHE.glob("keystone-*"):
            shutil.rmtree(old, ignore_errors=True)
        build = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
        try:
            (build / "keystone.conf").write_text(cloud.keystone_conf(build))
            manage = [cloud.venv_bin("keystone-manage"), "--config-file", str(build / "keystone.conf")]
            owner = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
            with (build / "init.log").open("ab") as log:
                def run(*args, env=None):
                    return subprocess.Popen([*manage, *args], cwd=build, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})
                # The key repositories do not need the database: made beside db_sync.
                codes = [p.wait() for p in (run("db_sync"), run("fernet_setup", *owner),
                                            run("credential_setup", *owner))]
                if not any(codes):
                    codes.append(run("bootstrap", "--bootstrap-username", ADMIN["username"],
                                     "--bootstrap-project-name", ADMIN["project_name"], "--bootstrap-role-name",
                                     "admin", "--bootstrap-region-id", REGION,
                                     env={"OS_BOOTSTRAP_PASSWORD": ADMIN["password"]}).wait())
            assert not any(codes), "keystone-manage failed (%s):\n%s" % (
                codes, (build / "init.log").read_text(errors="replace")[-3000:])
            (build / "ready").write_text(key + "\n")
            build.rename(template)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return template


def register_catalog(url: str, ports: dict[str, int]) -> None:
    """Identity at url; compute, network and image at the emulator's ports (public/internal/admin)."""
    token, _ = login(url, ADMIN)
    catalog = {"identity": ("keystone", url), "compute": ("nova", "http://%s:%d/v2.1" % (HOST, ports["nova"])),
               "network": ("neutron", "http://%s:%d" % (HOST, ports["neutron"])),
               "image": ("glance", "http://%s:%d" % (HOST, ports["glance"]))}
    for stype, (name, endpoint) in catalog.items():
        _, svc = http_json("POST", url + "/services", {"service": {"type": stype, "name": name}}, token)
        for interface in ("public", "internal", "admin"):
            http_json("POST", url + "/endpoints", {"endpoint": {
                "service_id": svc["service"]["id"], "interface": interface, "url": endpoint,
                "region_id": REGION}}, token)


def external_admin(url: str) -> dict:
    if os.environ.get("TESTCLOUD_ADMIN_PASSWORD"):
        return {"username": os.environ.get("TESTCLOUD_ADMIN_USER", "admin"),
                "password": os.environ["TESTCLOUD_ADMIN_PASSWORD"],
                "project_name": os.environ.get("TESTCLOUD_ADMIN_PROJECT", "admin")}
    for path in (ROOT / ".cache/testcloud/clouds.yaml", ROOT / ".cache/testcloud-dev/keystone/clouds.yaml"):
        if path.exists():
            for entry in (yaml.safe_load(path.read_text()) or {}).get("clouds", {}).values():
                auth = entry.get("auth", {})
                if auth.get("auth_url", "").rstrip("/") == url and auth.get("username") == "admin":
                    return {k: auth[k] for k in ("username", "password", "project_name")}
    pytest.fail("TESTCLOUD_KEYSTONE=%s: no admin credentials (set TESTCLOUD_ADMIN_PASSWORD)" % url)
    return {}


def emulator_ports(url: str, creds: dict) -> dict[str, int]:
    """The emulator's ports as the catalog names them."""
    _, token = login(url, creds)
    ports = {}
    for entry in token.get("catalog", []):
        name = {"compute": "nova", "network": "neutron", "image": "glance"}.get(entry["type"])
        for endpoint in entry["endpoints"]:
            if name and endpoint["interface"] == "public":
                ports[name] = urllib.parse.urlsplit(endpoint["url"]).port
    assert set(ports) == {"nova", "neutron", "glance"}, "the catalog of %s lacks compute/network/image" % url
    return ports


def connect(auth_url, username, password, project_name):
    return openstack.connect(auth_url=auth_url, username=username, password=password, project_name=project_name,
                             user_domain_name="Default", project_domain_name="Default", region_name="RegionOne",
                             identity_api_version="3")


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dockerc():
    """The Docker engine of $DOCKER_HOST (`make test` exports it) with the host images."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail("no Docker engine at DOCKER_HOST (run through `make test`, which starts one): %s" % exc)
    missing = [image for image in IMAGES if not client.images.list(name=image)]
    if missing:
        pytest.fail("images %s missing: run `make images` (`make test` builds them)" % ", ".join(missing))
    return client


@pytest.fixture(scope="session")
def testcloud_python() -> str:
    """The test cloud venv's python (Keystone, openstacksdk, pycdlib): `cloud.py setup` builds the venv
    once (~1-2 min) and reuses it while its stamp matches."""
    with cloud.state_lock():
        cloud.setup()
    return cloud.venv_bin("python")


@pytest.fixture(scope="session")
def keystone(testcloud_python, tmp_path_factory):
    """{"url", "admin": credentials, "ports": the emulator's {nova, neutron, glance}}."""
    external = os.environ.get("TESTCLOUD_KEYSTONE", "").rstrip("/")
    if external:
        creds = external_admin(external)
        yield {"url": external, "admin": creds, "ports": emulator_ports(external, creds)}
        return
    started = time.monotonic()
    template = keystone_template()
    prepared = time.monotonic() - started
    data = tmp_path_factory.mktemp("keystone")
    shutil.copytree(template, data, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.log", "*.conf", "ready"))
    (data / "keystone.conf").write_text(cloud.keystone_conf(data))
    port, nova, neutron, glance = free_ports(4)
    url = "http://%s:%d/v3" % (HOST, port)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PYTHONPATH=str(cloud.SERVICES_SRC), OS_KEYSTONE_CONFIG_DIR=str(data),
               OS_KEYSTONE_CONFIG_FILES="keystone.conf", PYTHONUNBUFFERED="1")
    # One sync worker, as in the test cloud: Keystone writes to sqlite on every login.
    group = Group([cloud.venv_bin("gunicorn"), "--workers", "1", "--worker-class", "sync", "--timeout", "120",
                   "--name", "testcloud-tests-keystone", "--bind", "%s:%d" % (HOST, port),
                   "keystone_app:application"], data / "keystone.log", cwd=data, env=env)
    try:
        ready = wait_until(lambda: answers(url), group, "Keystone on %s" % url)
        ports = {"nova": nova, "neutron": neutron, "glance": glance}
        register_catalog(url, ports)
        print("\ntestcloud tests: Keystone at %s (template %.1f s, start %.1f s)" % (url, prepared, ready))
        yield {"url": url, "admin": ADMIN, "ports": ports}
    finally:
        group.stop()


def instance_objects(client, instance: str) -> dict[str, list]:
    """The Docker objects of a test cloud instance (label carina.testcloud.instance)."""
    flt = {"label": "%s=%s" % (LABEL_INSTANCE, instance)}
    return {"containers": client.containers.list(all=True, filters=flt), "volumes": client.volumes.list(filters=flt),
            "networks": client.networks.list(filters=flt)}


def emulator_answers(ports: dict[str, int]) -> bool:
    """True when all three services of an emulator answer there (not some other server)."""
    for name, port in ports.items():
        try:
            with urllib.request.urlopen("http://%s:%d/" % (HOST, port), timeout=2) as resp:  # noqa: S310
                if not resp.headers.get("Server", "").startswith("testcloud-" + name):
                    return False
        except OSError:
            return False
    return True


class Emulator:
    """The emulator under test: one of ours on a state dir of the session, whose Docker objects are
    labelled with an instance of their own (or, ours=False, one that already answered on the catalog's
    ports, as it is)."""

    def __init__(self, keystone: dict, state: Path):
        self.keystone, self.state, self.group = keystone, state, None
        self.instance = "tests-" + secrets.token_hex(4)
        self.ours = not emulator_answers(keystone["ports"])
        if self.ours:
            self.start()

    def start(self) -> None:
        ports = self.keystone["ports"]
        self.group = Group([sys.executable, "-m", "testcloud.emulator", "--state-dir", str(self.state),
                            "--keystone", self.keystone["url"], "--nova-port", str(ports["nova"]),
                            "--neutron-port", str(ports["neutron"]), "--glance-port", str(ports["glance"]),
                            "--instance", self.instance],
                           self.state / "emulator.log", cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            wait_until(lambda: emulator_answers(ports), self.group, "the emulator", timeout=45)
            self.prepare()
        except BaseException:
            self.stop()
            raise

    def prepare(self) -> None:
        """Ready it as `cloud.py up` readies the test cloud: the site role with testcloud/site.yml (its images
        and flavors; no quotas, this Keystone has no demo project)."""
        admin = self.keystone["admin"]
        clouds = self.state / "clouds.yaml"
        clouds.write_text(yaml.safe_dump({"clouds": {"tests-admin": {
            "auth": {"auth_url": self.keystone["url"], "username": admin["username"], "password": admin["password"],
                     "project_name": admin["project_name"], "user_domain_name": "Default",
                     "project_domain_name": "Default"},
            "region_name": REGION, "identity_api_version": 3}}}))
        clouds.chmod(0o600)
        cloud.prepare_cloud(clouds, "tests-admin", self.state / "site.log", {"carina_cloud_quotas": []})

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
            self.group = None


@pytest.fixture(scope="session")
def emulator(keystone, dockerc, tmp_path_factory):
    """The emulator; at the end, the Docker objects of its instance (the agent's tests use it too) go."""
    emu = Emulator(keystone, tmp_path_factory.mktemp("emulator-state"))
    yield emu
    emu.stop()
    ours = instance_objects(dockerc, emu.instance)
    for obj in ours["containers"]:
        with contextlib.suppress(docker.errors.NotFound):
            obj.remove(force=True, v=True)
    for obj in ours["volumes"] + ours["networks"]:
        # A bridge of a seeded network (same id, same name in every emulator) that a test cloud on the
        # same engine uses meanwhile stays: it is theirs too, and theirs to remove.
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            obj.remove()
    left = instance_objects(dockerc, emu.instance)
    left["networks"] = [n for n in left["networks"] if not dockerc.networks.get(n.id).attrs.get("Containers")]
    assert not any(left.values()), "left behind: %s" % {k: [o.name for o in v] for k, v in left.items()}


@pytest.fixture(scope="module")
def admin(keystone, emulator):
    return connect(keystone["url"], **keystone["admin"])


@pytest.fixture(scope="module")
def project(admin, keystone):
    """A fresh project with a member user; everything in it is deleted at the end."""
    suffix = secrets.token_hex(3)
    password = secrets.token_urlsafe(12)
    proj = admin.identity.create_project(name="emu-test-" + suffix, domain_id="default")
    user = admin.identity.create_user(name="emu-test-" + suffix, password=password, domain_id="default",
                                      default_project_id=proj.id)
    member = admin.identity.find_role("member")
    admin.identity.assign_project_role_to_user(proj, user, member)
    conn = connect(keystone["url"], user.name, password, proj.name)
    conn.test_project = proj
    yield conn
    for server in conn.compute.servers():
        conn.compute.delete_server(server)
    for fip in conn.network.ips(project_id=proj.id):
        conn.network.delete_ip(fip)
    for kp in conn.compute.keypairs():
        conn.compute.delete_keypair(kp)
    for group in conn.compute.server_groups():
        conn.compute.delete_server_group(group)
    for sg in conn.network.security_groups(project_id=proj.id):
        if sg.name != "default":
            with contextlib.suppress(osexc.SDKException):
                conn.network.delete_security_group(sg)
    admin.delete_compute_quotas(proj.id)
    admin.delete_network_quotas(proj.id)
    admin.identity.delete_user(user)
    admin.identity.delete_project(proj)


@pytest.fixture(scope="module")
def keypair(project, tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    project.compute.create_keypair(name="emu-key", public_key=path.with_suffix(".pub").read_text())
    return path
