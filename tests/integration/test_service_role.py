"""The site role roles/carina_service on a host container, as an operator runs it: its own user, a hardened systemd
unit, the config file holding the Keystone password readable by the service only, HAProxy with TLS in front and a
health check that takes the service out while it is down; a second run changes nothing; a service open to the
network without Keystone is refused before anything changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT, bare_env

CLUSTERS = ("svc-role",)  # the label of the host container (conftest checks nothing of it is left)
IMAGE = "carina-host:bookworm-lb"  # systemd, and HAProxy installed
SECRET = "kS-" + uuid.uuid4().hex  # the Keystone password the config holds


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def on_host(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    return docker("exec", host, "bash", "-c", command, check=check)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A host container with systemd and no network at all; the controller's Python (3.12+) copied into /opt, as
    a host with a recent Python installed has one."""
    name = f"carina-svc-role-{uuid.uuid4().hex[:6]}"
    docker("run", "-d", "--name", name, "--hostname", "svc", "--label", "carina.cluster=svc-role",
           "--network", "none", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
           "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
           "--security-opt", "systempaths=unconfined", "--cgroupns", "host",
           "--tmpfs", "/run:rw,exec,mode=755", "--tmpfs", "/run/lock:rw,mode=1777",
           "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-e", "container=docker", "--stop-signal", "SIGRTMIN+3", IMAGE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            state = on_host(name, "systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        docker("cp", sys.base_prefix, f"{name}:/opt/python{version}")
        on_host(name, f"echo /opt/python{version}/lib > /etc/ld.so.conf.d/python{version}.conf && ldconfig")
        yield {"name": name, "python": f"/opt/python{version}/bin/python{version}"}
    finally:
        docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The wheelhouse and the collection tarball, as an operator makes them on the controller."""
    base = tmp_path_factory.mktemp("svc-role")
    wheelhouse = subprocess.run([str(ROOT / "scripts" / "wheelhouse.sh")], capture_output=True, text=True,
                                timeout=900, check=True).stdout.strip()
    subprocess.run([str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "build", "--output-path",
                    str(base), str(ROOT / "collections" / "ansible_collections" / "rax" / "carina")],
                   capture_output=True, text=True, timeout=300, check=True)
    tarball = next(base.glob("rax-carina-*.tar.gz"))
    playbook = base / "site.yml"
    playbook.write_text("- name: The Carina service\n  hosts: all\n  gather_facts: false\n  roles:\n"
                        "    - role: carina_service\n")
    return {"wheelhouse": wheelhouse, "collection": str(tarball), "playbook": playbook, "base": base}


def apply(host: dict, inputs: dict, **variables) -> subprocess.CompletedProcess:
    extra = {"carina_service_python": host["python"], "carina_service_wheelhouse": inputs["wheelhouse"],
             "carina_service_collection": inputs["collection"]} | variables
    (inputs["base"] / "vars.json").write_text(json.dumps(extra))
    # The connection is the host's (in the inventory): the role's look at the controller stays local.
    (inputs["base"] / "hosts").write_text(f"{host['name']} ansible_connection=community.docker.docker "
                                          f"ansible_python_interpreter=/usr/bin/python3\n")
    env = bare_env(ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH="",
                   DOCKER_HOST=os.environ["DOCKER_HOST"])
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inputs["base"] / "hosts"),
                           "-e", f"@{inputs['base'] / 'vars.json'}", str(inputs["playbook"])],
                          cwd=inputs["base"], env=env, capture_output=True, text=True, timeout=1200, check=False)


def recap(proc: subprocess.CompletedProcess) -> dict[str, int]:
    line = next(line for line in proc.stdout.splitlines() if " : ok=" in line)
    return {key: int(value) for key, value in (field.split("=") for field in line.split(":", 1)[1].split())}


def curl(host: str, path: str = "/v1") -> subprocess.CompletedProcess:
    return on_host(host, f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert /etc/carina/tls/cert.pem "
                         f"https://localhost{path}", check=False)


def test_without_keystone_the_service_may_not_listen_beyond_loopback(host, inputs):
    refused = apply(host, inputs, carina_service_tls_bind="0.0.0.0")  # noqa: S104 - what is refused
    assert refused.returncode != 0
    assert "carina_service_tls_bind must be a loopback address (it is 0.0.0.0)" in refused.stdout
    assert on_host(host["name"], "test -e /etc/carina || test -e /opt/carina", check=False).returncode != 0, \
        "nothing was made"


def test_the_role_installs_a_hardened_service_behind_tls_and_a_second_run_changes_nothing(host, inputs):
    keystone = {"auth_url": "http://127.0.0.1:5000/v3", "username": "carina", "password": SECRET,
                "project_name": "service"}
    first = apply(host, inputs, carina_service_keystone=keystone)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    second = apply(host, inputs, carina_service_keystone=keystone)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second)["changed"] == 0, second.stdout
    assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr

    name = host["name"]
    show = on_host(name, "systemctl show carina -p ActiveState -p User -p NoNewPrivileges -p ProtectSystem").stdout
    assert set(show.split()) >= {"ActiveState=active", "User=carina", "NoNewPrivileges=yes", "ProtectSystem=strict"}
    assert on_host(name, "systemctl is-enabled carina haproxy").stdout.split() == ["enabled", "enabled"]
    owner = on_host(name, "ps -o user= -p $(systemctl show carina -p MainPID --value)").stdout.strip()
    assert owner == "carina"
    assert on_host(name, "getent passwd carina | cut -d: -f7").stdout.strip() == "/usr/sbin/nologin"
    modes = on_host(name, "stat -c '%n %a %U %G' /etc/carina/carina.toml /etc/carina/tls/cert.pem.key "
                          "/var/lib/carina").stdout.splitlines()
    assert modes == ["/etc/carina/carina.toml 640 root carina", "/etc/carina/tls/cert.pem.key 600 root root",
                     "/var/lib/carina 700 carina carina"]
    assert SECRET in on_host(name, "cat /etc/carina/carina.toml").stdout  # the service's own, for Keystone
    # The service listens on loopback only; clients reach it through HAProxy's TLS (certificate checked).
    listening = on_host(name, "ss -ltnH").stdout
    assert "127.0.0.1:9511 " in listening and "0.0.0.0:443 " in listening, listening
    versions = on_host(name, "curl -sS --cacert /etc/carina/tls/cert.pem https://localhost/").stdout
    assert json.loads(versions)["versions"][0]["id"] == "v1"
    links = json.loads(on_host(name, "curl -sS --cacert /etc/carina/tls/cert.pem https://localhost/v1").stdout)
    assert links["links"][0]["href"].startswith("https://localhost/"), links  # behind the proxy: https
    assert curl(name, "/panel/").stdout == "200"
    assert on_host(name, "curl -sS -o /dev/null http://localhost:443/", check=False).returncode != 0, \
        "no plain HTTP on the TLS port"

    # The health check: with the service stopped, HAProxy takes it out (503); started again, it comes back.
    on_host(name, "systemctl stop carina")
    deadline = time.time() + 20
    while time.time() < deadline and curl(name).stdout != "503":
        time.sleep(0.5)
    assert curl(name).stdout == "503"
    on_host(name, "systemctl start carina")
    deadline = time.time() + 30
    while time.time() < deadline and curl(name).stdout != "200":
        time.sleep(0.5)
    assert curl(name).stdout == "200"
