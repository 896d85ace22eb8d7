"""A throwaway Keystone for developing and testing the emulator without the real test cloud.

    python -m testcloud.emulator.devkeystone up   --venv DIR --dir DIR [--port 15000]
    python -m testcloud.emulator.devkeystone down --dir DIR

`up` configures Keystone 30 (sqlite, fernet) from the venv given (``pip install keystone==30.0.0
gunicorn``), bootstraps user ``admin`` (password ``admin``, project ``admin``), starts gunicorn
on 127.0.0.1:PORT in the background, registers the emulator's compute/network/image endpoints
in the catalog and writes ``DIR/clouds.yaml`` (cloud ``dev-admin``). It prints the auth URL.
`down` stops that gunicorn by the pid it recorded. The real test cloud (testcloud/cloud.py)
does all of this on port 5000; this module exists only so the emulator can be worked on alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PASSWORD = "admin"  # noqa: S105 - a throwaway development Keystone on 127.0.0.1
ENDPOINTS = {
    "compute": ("nova", "http://127.0.0.1:8774/v2.1"),
    "network": ("neutron", "http://127.0.0.1:9696"),
    "image": ("glance", "http://127.0.0.1:9292"),
}
WSGI = """import sys
sys.argv = sys.argv[:1]  # oslo.config would parse gunicorn's arguments otherwise
from keystone.wsgi.api import application  # noqa: E402,F401
"""


def _request(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - 127.0.0.1 only
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        raw = resp.read()
        return resp.headers, (json.loads(raw) if raw else None)


def _token(auth_url):
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    headers, _ = _request("POST", auth_url + "/auth/tokens", body)
    return headers["X-Subject-Token"]


def _register_endpoints(auth_url):
    token = _token(auth_url)
    _, services = _request("GET", auth_url + "/services", token=token)
    have = {s["type"]: s["id"] for s in services["services"]}
    _, endpoints = _request("GET", auth_url + "/endpoints", token=token)
    have_ep = {(e["service_id"], e["interface"]) for e in endpoints["endpoints"]}
    for stype, (name, url) in ENDPOINTS.items():
        if stype not in have:
            _, svc = _request("POST", auth_url + "/services", {"service": {"type": stype, "name": name}}, token)
            have[stype] = svc["service"]["id"]
        for interface in ("public", "internal", "admin"):
            if (have[stype], interface) not in have_ep:
                _request("POST", auth_url + "/endpoints", {"endpoint": {
                    "service_id": have[stype], "interface": interface, "url": url,
                    "region_id": "RegionOne"}}, token)


def _wait(url, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            _request("GET", url)
            return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def up(venv: Path, workdir: Path, port: int) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    auth_url = "http://127.0.0.1:%d/v3" % port
    conf = workdir / "keystone.conf"
    bindir = venv / "bin"
    env = dict(os.environ, OS_KEYSTONE_CONFIG_DIR=str(workdir), OS_KEYSTONE_CONFIG_FILES=str(conf))
    if not (workdir / "keystone.db").exists():
        for sub in ("fernet-keys", "credential-keys"):
            (workdir / sub).mkdir(exist_ok=True)
        conf.write_text(
            "[DEFAULT]\nlog_file = %(d)s/keystone.log\n"
            "[database]\nconnection = sqlite:///%(d)s/keystone.db\n"
            "[token]\nprovider = fernet\nexpiration = 7200\n"
            "[fernet_tokens]\nkey_repository = %(d)s/fernet-keys\n"
            "[fernet_receipts]\nkey_repository = %(d)s/fernet-keys\n"
            "[credential]\nkey_repository = %(d)s/credential-keys\n" % {"d": workdir})
        manage = [str(bindir / "keystone-manage"), "--config-file", str(conf)]
        owner = ["--keystone-user", "root", "--keystone-group", "root"]
        subprocess.run([*manage, "db_sync"], check=True, env=env)
        subprocess.run([*manage, "fernet_setup", *owner], check=True, env=env)
        subprocess.run([*manage, "credential_setup", *owner], check=True, env=env)
        subprocess.run([*manage, "bootstrap", "--bootstrap-password", PASSWORD,
                        "--bootstrap-admin-url", auth_url + "/", "--bootstrap-internal-url", auth_url + "/",
                        "--bootstrap-public-url", auth_url + "/", "--bootstrap-region-id", "RegionOne"],
                       check=True, env=env)
    (workdir / "kswsgi.py").write_text(WSGI)
    pidfile = workdir / "gunicorn.pid"
    if not _running(pidfile):
        log = (workdir / "gunicorn.log").open("ab")
        subprocess.Popen(
            [str(bindir / "gunicorn"), "--bind", "127.0.0.1:%d" % port, "--workers", "2",
             "--pid", str(pidfile), "--chdir", str(workdir), "kswsgi:application"],
            env=env, stdout=log, stderr=log, start_new_session=True)
    _wait(auth_url)
    _register_endpoints(auth_url)
    (workdir / "clouds.yaml").write_text(
        "clouds:\n  dev-admin:\n    auth:\n      auth_url: %s\n      username: admin\n"
        "      password: %s\n      project_name: admin\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n    region_name: RegionOne\n"
        "    identity_api_version: 3\n" % (auth_url, PASSWORD))
    return auth_url


def _running(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def down(workdir: Path) -> None:
    pid = _running(workdir / "gunicorn.pid")
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _running(workdir / "gunicorn.pid"):
                break
            time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):
        (workdir / "gunicorn.pid").unlink()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--venv", type=Path)
    parser.add_argument("--port", type=int, default=15000)
    args = parser.parse_args(argv)
    if args.action == "up":
        if not args.venv:
            parser.error("up needs --venv (a venv with keystone==30.0.0 and gunicorn)")
        print(up(args.venv.resolve(), args.dir.resolve(), args.port))
    else:
        down(args.dir.resolve())


if __name__ == "__main__":
    sys.exit(main())
