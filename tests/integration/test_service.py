"""`carina serve` with Magnum's own clients: the openstack CLI (python-magnumclient) and openstacksdk make, use,
resize and delete a real Swarm cluster on this machine, as a Magnum user would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import openstack
import pytest

from tests.helpers import left_behind, owned_objects

ROOT = Path(__file__).resolve().parents[2]
# The clusters this module makes (conftest checks that nothing of theirs is left).
CLUSTERS = ("svc1", "svc2")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """carina serve on a free port of 127.0.0.1, one local tenant; stopped by its pid at the end."""
    home = tmp_path_factory.mktemp("service")
    log = open(home / "serve.log", "w+")  # noqa: SIM115 - the process writes it until the end
    proc = subprocess.Popen(["carina", "serve", "--home", str(home / "home"), "--port", "0",
                             "--pidfile", str(home / "serve.pid")], stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
    assert match, f"carina serve said {line!r}; log: {(home / 'serve.log').read_text()}"
    assert (home / "serve.pid").read_text().strip() == str(proc.pid)
    yield {"url": f"http://127.0.0.1:{match[1]}/v1", "home": home / "home", "dir": home}
    for name in left_behind(home / 'home', CLUSTERS):
        # what a failed test left
        subprocess.run(["ansible-playbook", "playbooks/delete.yml", "-e", f"carina_name={name}",
                        "-e", f"carina_home={home / 'home'}"], cwd=ROOT, capture_output=True, check=False)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not (home / "serve.pid").exists(), "the pidfile outlived the service"
    log.close()


def openstack_cli(service, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env |= {"OS_AUTH_TYPE": "none", "OS_ENDPOINT": service["url"], "SHELL": "/bin/bash"}
    proc = subprocess.run(["openstack", *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, f"openstack {' '.join(args)}: {proc.stderr}"
    return proc


def show(service, name: str) -> dict:
    return json.loads(openstack_cli(service, "coe", "cluster", "show", name, "-f", "json").stdout)


def api_status(service, name: str) -> str | None:
    """A cluster's status read straight from the API (None once it is gone): waiting does not start the openstack
    CLI every few seconds (each costs seconds of CPU); what a user sees is then shown with it."""
    try:
        with urllib.request.urlopen(f"{service['url']}/clusters/{name}", timeout=30) as answer:  # noqa: S310 - ours
            return json.loads(answer.read())["status"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def settle(service, name: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = api_status(service, name)
        if status is not None and not status.endswith("_IN_PROGRESS"):
            return show(service, name)
        time.sleep(2)
    raise AssertionError(f"{name} still in progress after {timeout}s")


def wait_gone(service, name: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Until the API no longer has the cluster; then `openstack coe cluster show` as the user runs it."""
    deadline = time.time() + timeout
    while api_status(service, name) is not None:
        assert time.time() < deadline, f"{name} still there after {timeout}s"
        time.sleep(2)
    return openstack_cli(service, "coe", "cluster", "show", name, check=False)


def docker_with(env_text: str, *args: str) -> subprocess.CompletedProcess:
    """docker with the environment `openstack coe cluster config` printed (export NAME=VALUE lines)."""
    exports = dict(re.findall(r"^export (\w+)=(.*)$", env_text, re.MULTILINE))
    assert set(exports) == {"DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"}, env_text
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")} | exports
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def sdk(service) -> openstack.connection.Connection:
    return openstack.connect(auth_type="none", endpoint=service["url"], load_envvars=False, load_yaml_config=False,
                             container_infrastructure_management_endpoint_override=service["url"])


def test_a_magnum_user_makes_uses_resizes_and_deletes_a_swarm_cluster(service, tmp_path):
    made = openstack_cli(service, "coe", "cluster", "template", "create", "swarm", "--coe", "swarm-mode",
                         "--image", "carina-host", "--external-network", "public", "-f", "json")
    assert made.stdout.startswith("Request to create cluster template swarm accepted\n")
    template = json.loads(made.stdout.split("\n", 1)[1])
    assert template["coe"] == "swarm-mode" and template["tls_disabled"] is False
    out = openstack_cli(service, "coe", "cluster", "create", "svc1", "--cluster-template", "swarm",
                        "--master-count", "1", "--node-count", "1").stdout
    uuid = re.search(r"Request to create cluster (\S+) accepted", out)[1]
    listed = json.loads(openstack_cli(service, "coe", "cluster", "list", "-f", "json").stdout)
    assert [(c["uuid"], c["name"]) for c in listed] == [(uuid, "svc1")]

    cluster = settle(service, "svc1")
    assert cluster["status"] == "CREATE_COMPLETE", cluster
    assert cluster["health_status"] == "HEALTHY", cluster
    assert re.fullmatch(r"tcp://198\.1[89]\.\d+\.\d+:2376", cluster["api_address"]), cluster
    assert len(cluster["master_addresses"]) == 1 and len(cluster["node_addresses"]) == 1
    assert cluster["cluster_template_id"] == template["uuid"]
    assert owned_objects("svc1")["containers"], "the cluster's hosts are containers labelled with its name"

    # The credentials as Magnum hands them out: a key made here, its CSR signed by the cluster CA.
    folder = tmp_path / "svc1"
    folder.mkdir()
    env_text = openstack_cli(service, "coe", "cluster", "config", "svc1", "--dir", str(folder),
                             "--output-certs").stdout
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    info = docker_with(env_text, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}")
    assert info.returncode == 0 and info.stdout.split() == ["active", "2"], info.stderr
    ca = openstack_cli(service, "coe", "ca", "show", "svc1").stdout
    assert ca.strip() == (folder / "ca.pem").read_text().strip()

    # openstacksdk sees the same cluster and template.
    conn = sdk(service)
    found = conn.container_infrastructure_management.get_cluster(uuid)
    assert (found.name, found.status, found.node_count) == ("svc1", "CREATE_COMPLETE", 1)
    assert [t.name for t in conn.container_infrastructure_management.cluster_templates()] == ["swarm"]

    assert "accepted" in openstack_cli(service, "coe", "cluster", "resize", "svc1", "2").stdout
    cluster = settle(service, "svc1")
    assert (cluster["status"], cluster["node_count"]) == ("UPDATE_COMPLETE", 2), cluster
    nodes = docker_with(env_text, "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
    assert sorted(nodes.stdout.split("\n")[:-1]) == ["svc1-manager-1 Ready", "svc1-worker-1 Ready",
                                                     "svc1-worker-2 Ready"], nodes.stderr

    refused = openstack_cli(service, "coe", "cluster", "template", "delete", "swarm")
    assert "is referenced by one or multiple clusters (svc1)" in refused.stderr + refused.stdout
    openstack_cli(service, "coe", "cluster", "delete", "svc1")
    gone = wait_gone(service, "svc1")
    assert "Cluster svc1 could not be found (HTTP 404)" in gone.stderr
    assert owned_objects("svc1") == {"containers": [], "volumes": [], "networks": []}
    openstack_cli(service, "coe", "cluster", "template", "delete", "swarm")
    assert json.loads(openstack_cli(service, "coe", "cluster", "template", "list", "-f", "json").stdout) == []


def test_errors_reach_the_user_as_magnumclient_prints_them(service):
    bad = openstack_cli(service, "coe", "cluster", "template", "create", "t", "--coe", "mesos", "--image", "i",
                        "--external-network", "public", check=False)
    assert bad.returncode == 1
    assert "coe 'mesos' is not supported; choose one of kubernetes, swarm, swarm-mode (HTTP 400)" in bad.stderr
    missing = openstack_cli(service, "coe", "cluster", "create", "x", "--cluster-template", "nope", check=False)
    assert "ClusterTemplate nope could not be found (HTTP 404)" in missing.stderr


def test_a_cluster_being_made_can_be_deleted_and_leaves_nothing(service):
    """As with Magnum: no waiting for a create to end before deleting it (a way out of a stuck create)."""
    openstack_cli(service, "coe", "cluster", "template", "create", "quick", "--coe", "swarm-mode", "--image",
                  "carina-host", "--external-network", "public")
    openstack_cli(service, "coe", "cluster", "create", "svc2", "--cluster-template", "quick", "--node-count", "0")
    deadline = time.time() + 60
    while time.time() < deadline and not owned_objects("svc2")["containers"]:
        time.sleep(0.5)  # until its hosts are being made
    assert show(service, "svc2")["status"] == "CREATE_IN_PROGRESS"
    openstack_cli(service, "coe", "cluster", "delete", "svc2")
    gone = wait_gone(service, "svc2")
    assert "Cluster svc2 could not be found (HTTP 404)" in gone.stderr
    assert owned_objects("svc2") == {"containers": [], "volumes": [], "networks": []}
    openstack_cli(service, "coe", "cluster", "template", "delete", "quick")
