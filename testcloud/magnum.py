#!/usr/bin/env python3
"""A real OpenStack Magnum beside the test cloud, with rax.carina's Magnum driver (drivers/magnum).

    python3 testcloud/magnum.py setup   the venv (magnum 23, the driver, carina) and Debian's MariaDB and RabbitMQ
    python3 testcloud/magnum.py up      (the test cloud up first) MariaDB, epmd, RabbitMQ, magnum-api, -conductor
    python3 testcloud/magnum.py down    stops exactly what `up` started, removes what it registered
    python3 testcloud/magnum.py status  what runs, what answers
    python3 testcloud/magnum.py restart-conductor   SIGKILL magnum-conductor (a crash) and start it again

Everything listens on 127.0.0.1 on ports picked free at `up` (written to magnum.json). Magnum needs RabbitMQ
(oslo.messaging has no file transport) and MariaDB (its migrations fail on sqlite and PostgreSQL); both run from
their own data folders under .cache/testcloud/magnum/, fresh at every `up`. Keystone gets the `magnum` service
user and the `container-infra` endpoints at `up`; `down` removes them. Stdlib only, like cloud.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

try:
    from testcloud import cloud
except ImportError:  # run as a script: testcloud/ is on sys.path
    import cloud  # type: ignore[no-redef]

ROOT = cloud.ROOT
STATE = cloud.STATE / "magnum"
VENV = cloud.STATE / "magnum-venv"
STAMP = VENV / ".magnum-stamp"
FACTS = STATE / "magnum.json"
REQUIREMENTS = cloud.HERE / "magnum-requirements.txt"
CONSTRAINTS = cloud.HERE / "magnum-constraints.txt"
DRIVER = ROOT / "drivers" / "magnum"
PASSWORD = "magnum-testcloud"  # noqa: S105 - the magnum service and database user's, of a throw-away cloud
DEBIAN = {"mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server", "mariadb": "mariadb-client",
          "epmd": "erlang-base", "/usr/lib/rabbitmq/bin/rabbitmq-server": "rabbitmq-server"}
# What Magnum reads of the hosts' image: os_distro picks the driver; min_ram is what a Kubernetes master needs.
# Registered as Magnum's operators do, with the site role (playbooks/prepare_cloud.yml).
IMAGE = {"name": "carina-magnum-kube", "file": str(cloud.HERE / "images" / "carina-host-kube.docker"),
         "os_distro": "debian", "disk_format": "raw", "container_format": "docker", "min_ram": 1024}
START_TIMEOUT = 90.0


def log(msg: str) -> None:
    print(f"testcloud magnum: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- setup
def base_python() -> str:
    """magnum 23 and carina (ansible-core 2.21) share the venv: Python 3.12 or newer."""
    candidates = [os.environ.get("MAGNUM_PYTHON"), "python3.13", "python3.12",
                  *sorted((str(p) for p in Path("/root/.pyenv/versions").glob("3.1[23].*/bin/python3.1[23]")),
                          reverse=True)]
    for candidate in candidates:
        if candidate and (path := shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)):
            with contextlib.suppress(OSError, subprocess.CalledProcessError):
                subprocess.run([path, "-c", "import sys; assert sys.version_info >= (3, 12)"], check=True,
                               capture_output=True)
                return path
    raise SystemExit("testcloud magnum: needs python3.12 or newer (carina's ansible-core 2.21)")


def wanted_stamp(python: str) -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, CONSTRAINTS, ROOT / "pyproject.toml", DRIVER / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(cloud.python_version(python).encode())
    return digest.hexdigest()


def which(name: str) -> str | None:
    """A program of Debian's packages, also where a PATH without the sbin folders would miss it."""
    if name.startswith("/"):
        return name if Path(name).is_file() else None
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def debian_packages() -> None:
    """Debian's MariaDB and RabbitMQ, installed once, started by nobody but `up` (no init script runs)."""
    missing = sorted({pkg for binary, pkg in DEBIAN.items() if not which(binary)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"testcloud magnum: install {' '.join(missing)} (needs root)")
    log(f"installing Debian's {', '.join(missing)}")
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:  # keeps the packages' init scripts from starting system-wide servers
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def setup() -> None:
    debian_packages()
    python = base_python()
    wanted = wanted_stamp(python)
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    started = time.monotonic()
    log(f"building {VENV} from {python}")
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    install, check = cloud.installer(VENV)
    subprocess.run([*install, "-c", str(CONSTRAINTS), "-r", str(REQUIREMENTS)], check=True)
    # carina and the driver from this checkout; their dependencies are pinned above.
    subprocess.run([*install, "--no-deps", "-e", str(ROOT), "-e", str(DRIVER)], check=True)
    subprocess.run(check, check=True)
    STAMP.write_text(wanted + "\n")
    log(f"venv ready in {time.monotonic() - started:.0f} s")


# ----------------------------------------------------------------------------- services
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((cloud.HOST, 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((cloud.HOST, port), timeout=1):
        return True
    return False


def services(ports: dict[str, int]) -> list[cloud.Service]:
    data = STATE / "mysql"
    rabbit = STATE / "rabbitmq"
    bindir = VENV / "bin"
    conf = str(STATE / "magnum.conf")
    # No scheduler busy-waiting: on a machine whose CPUs the clusters keep busy, an idle broker that spins
    # takes CPU time from them.
    erl = (f"-kernel inet_dist_use_interface {{127,0,0,1}} -kernel inet_dist_listen_min {ports['dist']}"
           " +sbwt none +sbwtdcpu none +sbwtdio none")
    rabbit_env = {
        "HOME": str(rabbit), "RABBITMQ_MNESIA_BASE": str(rabbit / "mnesia"), "RABBITMQ_LOG_BASE": str(rabbit / "log"),
        "RABBITMQ_NODENAME": "carina-magnum@localhost", "RABBITMQ_NODE_IP_ADDRESS": cloud.HOST,
        "RABBITMQ_NODE_PORT": str(ports["amqp"]), "RABBITMQ_DIST_PORT": str(ports["dist"]),
        "ERL_EPMD_PORT": str(ports["epmd"]), "ERL_EPMD_ADDRESS": cloud.HOST,
        "RABBITMQ_CONFIG_FILE": str(rabbit / "rabbitmq"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(rabbit / "plugins"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": erl, "RABBITMQ_PID_FILE": str(rabbit / "pid"),
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin:/sbin:/bin"}
    api = f"http://{cloud.HOST}:{ports['api']}/"
    return [
        cloud.Service("magnum-mariadb", [which("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={data}",
                                         f"--socket={data}.sock", f"--port={ports['mysql']}",
                                         f"--bind-address={cloud.HOST}", "--user=root", "--skip-name-resolve",
                                         f"--pid-file={data}.pid", "--log-error="],
                      lambda: port_open(ports["mysql"])),
        cloud.Service("magnum-epmd", [which("epmd") or "epmd", "-port", str(ports["epmd"]), "-address", cloud.HOST],
                      lambda: port_open(ports["epmd"])),
        cloud.Service("magnum-rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], lambda: port_open(ports["amqp"]),
                      env=rabbit_env),
        cloud.Service("magnum-api", [str(bindir / "magnum-api"), "--config-file", conf], lambda: cloud.http_ok(api)),
        cloud.Service("magnum-conductor", [str(bindir / "magnum-conductor"), "--config-file", conf],
                      conductor_up),
    ]


def conductor_up() -> bool:
    """The conductor has registered itself (magnum's mservice list, through the database)."""
    facts = read_facts()
    if not facts:
        return False
    sql = "SELECT COUNT(*) FROM magnum_service WHERE `binary`='magnum-conductor';"
    proc = subprocess.run([which("mariadb") or "mariadb", "--no-defaults", f"--socket={STATE / 'mysql'}.sock",
                           "-uroot", "-N", "-e", sql, "magnum"], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.strip() not in ("", "0")


def read_facts() -> dict:
    try:
        return json.loads(FACTS.read_text())
    except (OSError, ValueError):
        return {}


def magnum_conf(ports: dict[str, int]) -> str:
    service = cloud._service_user("admin") | {"username": "magnum", "password": PASSWORD, "project_name": "service"}
    authtoken = {"www_authenticate_uri": cloud.AUTH_URL, **service, "memcached_servers": ""}
    return cloud._ini({
        "DEFAULT": {"transport_url": f"rabbit://guest:guest@{cloud.HOST}:{ports['amqp']}/", "host": "testcloud",
                    "debug": True, "use_stderr": True, "state_path": str(STATE / "state")},
        "api": {"host": cloud.HOST, "port": ports["api"], "workers": 1,
                "api_paste_config": str(VENV / "etc" / "magnum" / "api-paste.ini")},
        "conductor": {"workers": 1},
        "database": {"connection": f"mysql+pymysql://magnum:{PASSWORD}@{cloud.HOST}:{ports['mysql']}/magnum"},
        "keystone_authtoken": authtoken,
        "keystone_auth": service,
        "certificates": {"cert_manager_type": "x509keypair"},
        "oslo_concurrency": {"lock_path": str(STATE / "locks")},
        "oslo_messaging_notifications": {"driver": "noop"},
        "kubernetes": {"health_polling_interval": 10},
        "carina": {"home": str(STATE / "carina"), "ssh_cidr": "198.18.0.0/15", "region_name": cloud.REGION},
    })


def prepare_data(ports: dict[str, int]) -> None:
    """Fresh folders and a fresh MariaDB data folder (the database and its user come once it runs)."""
    shutil.rmtree(STATE, ignore_errors=True)
    (STATE / "rabbitmq" / "mnesia").mkdir(parents=True)
    (STATE / "rabbitmq" / "log").mkdir()
    (STATE / "rabbitmq" / "plugins").write_text("[].\n")
    (STATE / "rabbitmq" / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = {cloud.HOST}:{ports['amqp']}\nloopback_users.guest = true\n")
    (STATE / "locks").mkdir()
    (STATE / "carina").mkdir(mode=0o700)
    (STATE / "magnum.conf").write_text(magnum_conf(ports))
    install = [which("mariadb-install-db") or "mariadb-install-db", "--no-defaults", f"--datadir={STATE / 'mysql'}",
               "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"]
    cloud.run_step("mariadb-install-db", install)


def sql(statement: str) -> None:
    cloud.run_step("mariadb", [which("mariadb") or "mariadb", "--no-defaults", f"--socket={STATE / 'mysql'}.sock",
                               "-uroot", "-e", statement])


def register(ports: dict[str, int]) -> dict:
    """The magnum service user (admin in project service), container-infra in the catalog, the image."""
    ks = cloud.Keystone()
    ks.login("admin")
    project = ks.find("projects", "service")
    user = ks.find("users", "magnum") or ks.call("POST", "/users", {"user": {
        "name": "magnum", "password": PASSWORD, "domain_id": project["domain_id"],
        "default_project_id": project["id"], "enabled": True}})[2]["user"]
    for role in ("admin", "service"):
        role_id = ks.find("roles", role)["id"]
        ks.call("PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{role_id}")
    url = f"http://{cloud.HOST}:{ports['api']}/v1"
    service = ks.call("POST", "/services", {"service": {"type": "container-infra", "name": "magnum",
                                                         "enabled": True}})[2]["service"]
    for interface in ("public", "internal", "admin"):
        ks.call("POST", "/endpoints", {"endpoint": {"service_id": service["id"], "interface": interface, "url": url,
                                                    "region_id": cloud.REGION, "enabled": True}})
    return {"user_id": user["id"], "service_id": service["id"], "url": url, "image_id": register_image(ks)}


def register_image(ks: cloud.Keystone) -> str:
    """Magnum picks the driver by the image's os_distro: the site role registers the image with it."""
    cloud.prepare_cloud(cloud.CLOUDS_YAML, cloud.ADMIN_CLOUD_NAME, cloud.LOGS / "magnum-site.log",
                        {"carina_cloud_images": [IMAGE], "carina_cloud_flavors": [], "carina_cloud_quotas": []})
    glance = json.loads(cloud.CLOUD_JSON.read_text())["endpoints"]["image"]["url"]
    request = cloud.urllib.request.Request(f"{glance}/v2/images?name={IMAGE['name']}",
                                           headers={"X-Auth-Token": ks.token})
    with cloud.urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())["images"][0]["id"]


def unregister(facts: dict) -> None:
    ks = cloud.Keystone()
    try:
        ks.login("admin")
    except SystemExit:
        return  # Keystone is gone with the test cloud: nothing registered there is left
    for path in (f"/services/{facts.get('service_id')}", f"/users/{facts.get('user_id')}"):
        with contextlib.suppress(SystemExit):
            ks.call("DELETE", path)
    if facts.get("image_id"):
        glance = json.loads(cloud.CLOUD_JSON.read_text())["endpoints"]["image"]["url"]
        request = cloud.urllib.request.Request(f"{glance}/v2/images/{facts['image_id']}", method="DELETE",
                                               headers={"X-Auth-Token": ks.token})
        with contextlib.suppress(OSError):
            cloud.urllib.request.urlopen(request, timeout=30).close()


def up() -> int:
    setup()
    if not cloud.CLOUD_JSON.exists() or not cloud.http_ok(cloud.AUTH_URL):
        log("the test cloud is not up: python3 testcloud/cloud.py up")
        return 1
    facts = read_facts()
    if facts and all(svc.pid() and svc.ready() for svc in services(facts["ports"])):
        log("already up")
        return 0
    down()
    started = time.monotonic()
    ports = {name: free_port() for name in ("mysql", "epmd", "amqp", "dist", "api")}
    prepare_data(ports)
    svcs = services(ports)
    by_name = {svc.name: svc for svc in svcs}
    FACTS.write_text(json.dumps({"ports": ports}))
    times: dict[str, float] = {}
    try:
        for name in ("magnum-mariadb", "magnum-epmd"):
            by_name[name].start()
        cloud.wait_ready([by_name["magnum-mariadb"], by_name["magnum-epmd"]], started, times)
        by_name["magnum-rabbitmq"].start()
        sql(f"CREATE DATABASE magnum; CREATE USER 'magnum'@'{cloud.HOST}' IDENTIFIED BY '{PASSWORD}'; "
            f"GRANT ALL ON magnum.* TO 'magnum'@'{cloud.HOST}';")
        cloud.run_step("magnum-db-manage", [str(VENV / "bin" / "magnum-db-manage"), "--config-file",
                                            str(STATE / "magnum.conf"), "upgrade"])
        facts = {"ports": ports, **register(ports)}
        FACTS.write_text(json.dumps(facts, indent=1))
        cloud.wait_ready([by_name["magnum-rabbitmq"]], started, times)
        for name in ("magnum-api", "magnum-conductor"):
            by_name[name].start()
        cloud.wait_ready(svcs, started, times)
    except (RuntimeError, SystemExit) as exc:
        log(f"up failed: {exc}")
        down()
        return 1
    ready = ", ".join(f"{name} {secs:.1f} s" for name, secs in times.items())
    log(f"up in {time.monotonic() - started:.1f} s ({ready}); container-infra at {facts['url']}")
    return 0


def kill_conductor(svcs: list[cloud.Service]) -> None:
    conductor = next(svc for svc in svcs if svc.name == "magnum-conductor")
    if (group := conductor.group()) is not None:  # its forked worker ignores SIGTERM: SIGKILL, by its group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while cloud._group_members(group) and time.monotonic() < deadline:
            time.sleep(0.1)


def restart_conductor() -> int:
    """magnum-conductor killed (SIGKILL, as a crash) and started again; the runs it started go on."""
    facts = read_facts()
    if not facts:
        log("magnum is not up")
        return 1
    svcs = services(facts["ports"])
    kill_conductor(svcs)
    conductor = next(svc for svc in svcs if svc.name == "magnum-conductor")
    started = time.monotonic()
    conductor.start()
    cloud.wait_ready([conductor], started, {})
    log(f"magnum-conductor restarted in {time.monotonic() - started:.1f} s")
    return 0


def down() -> int:
    facts = read_facts()
    ports = facts.get("ports") or {name: 0 for name in ("mysql", "epmd", "amqp", "dist", "api")}
    svcs = services(ports)
    kill_conductor(svcs)
    stopped = cloud.stop_all(svcs)
    if facts.get("service_id") or facts.get("image_id"):
        unregister(facts)
    FACTS.unlink(missing_ok=True)
    log("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def status() -> int:
    facts = read_facts()
    if not facts:
        print("magnum: down")
        return 3
    count = 0
    for svc in services(facts["ports"]):
        pid, answers = svc.pid(), svc.ready()
        count += bool(pid and answers)
        print(f"{svc.name:18} {'up' if pid and answers else 'down'} pid={pid or '-'} log={svc.logfile}")
    return 0 if count == 5 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "up", "down", "status", "restart-conductor"])
    args = parser.parse_args(argv)
    if args.command == "setup":
        setup()
        return 0
    return {"up": up, "down": down, "status": status, "restart-conductor": restart_conductor}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
