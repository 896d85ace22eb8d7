"""`carina serve` behind the test cloud's real Keystone: its endpoint in the catalog as container-infra, tokens of
two projects and of an admin, each project seeing and changing only its own."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, left_behind

CLOUDS_YAML = ROOT / ".cache" / "testcloud" / "clouds.yaml"

expect = pytest.importorskip("playwright.sync_api").expect

openstack = pytest.importorskip("openstack")

# The carina names of this module's clusters: the Magnum name `web` of two projects (the second gets a suffix).
CLUSTERS = ("web", "os-svc")


@pytest.fixture(scope="module")
def cloud(test_cloud):
    return test_cloud


def connect(facts: dict, user: str):
    account = facts["users"][user]
    return openstack.connect(auth_url=facts["auth_url"], username=user, password=account["password"],
                             project_name=account["project"], user_domain_name="Default",
                             project_domain_name="Default", region_name=facts["region"], load_envvars=False,
                             load_yaml_config=False)


@contextlib.contextmanager
def serve(cloud: dict, base: Path, cloud_toml: str = ""):
    """carina serve with [keystone] (the carina service user), registered in the catalog as container-infra while it
    runs; what a failed test left of CLUSTERS deleted, the service stopped by its pid at the end."""
    account = cloud["users"]["carina"]
    (base / "carina.toml").write_text(
        f'[service]\nbind = "127.0.0.1"\nport = 0\nhome = "{base / "home"}"\n'
        f'[keystone]\nauth_url = "{cloud["auth_url"]}"\nusername = "carina"\npassword = "{account["password"]}"\n'
        f'project_name = "{account["project"]}"\n{cloud_toml}')
    (base / "carina.toml").chmod(0o600)
    log = open(base / "serve.log", "w+")  # noqa: SIM115 - the process writes it until the end
    proc = subprocess.Popen(["carina", "serve", "--config", str(base / "carina.toml")], stdout=subprocess.PIPE,
                            stderr=log, text=True, start_new_session=True)
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/v1) \(Magnum API\), Keystone tokens", line)
    assert match, f"carina serve said {line!r}; log: {(base / 'serve.log').read_text()}"
    url = match[1]
    admin = connect(cloud, "admin")
    # As an operator registers it: the site role's carina_cloud_endpoint (playbooks/prepare_cloud.yml).
    (base / "site.yml").write_text(json.dumps({"carina_cloud_endpoint": {
        "url": url, "name": "carina", "region": cloud["region"], "interfaces": ["public", "internal"]}}))
    site = subprocess.run(["ansible-playbook", "playbooks/prepare_cloud.yml", "-e", "carina_cloud_cloud=devstack-admin",
                           "-e", f"@{base / 'site.yml'}"], cwd=ROOT, capture_output=True, text=True, check=False,
                          env=dict(os.environ, OS_CLIENT_CONFIG_FILE=str(CLOUDS_YAML)))
    try:
        assert site.returncode == 0, site.stdout[-3000:]
        registered = admin.identity.find_service("carina", ignore_missing=False)
        assert registered.type == "container-infra"
        yield {"url": url, "log": base / "serve.log", "home": base / "home"}
    finally:
        for service in admin.identity.services(name="carina"):
            admin.identity.delete_service(service, ignore_missing=True)  # its endpoints go with it
        for name in left_behind(base / 'home', CLUSTERS):
            # what a failed test left
            subprocess.run(["ansible-playbook", "playbooks/delete.yml", "-e", f"carina_name={name}",
                            "-e", f"carina_home={base / 'home'}"], cwd=ROOT, capture_output=True, check=False,
                           env=dict(os.environ, OS_CLIENT_CONFIG_FILE=str(CLOUDS_YAML)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.close()


@pytest.fixture(scope="module")
def service(cloud, tmp_path_factory):
    """Clusters on this machine (no [cloud])."""
    with serve(cloud, tmp_path_factory.mktemp("service-ks")) as running:
        yield running


@pytest.fixture
def cloud_service(cloud, tmp_path_factory, service):
    """Clusters on the test cloud ([cloud]); the other service's registration gives way to this one's."""
    admin = connect(cloud, "admin")
    for found in admin.identity.services(type="container-infra"):
        admin.identity.delete_service(found)
    with serve(cloud, tmp_path_factory.mktemp("service-os"), '[cloud]\nflavor = "m1.small"\n'
               'external_network = "public"\nfixed_network = "private"\nfixed_subnet = "private-subnet"\n') as running:
        yield running


def settled(cloud: dict, user: str, name: str, timeout: float) -> dict:
    """Waits, reading with openstacksdk as `user` (not by starting the openstack CLI every few seconds, each
    costing seconds of CPU), until the cluster is no longer in progress; then `coe cluster show` as the user runs it."""
    conn = connect(cloud, user)
    try:
        deadline = time.time() + timeout
        while True:
            found = conn.container_infrastructure_management.find_cluster(name, ignore_missing=True)
            if found is not None and not found.status.endswith("_IN_PROGRESS"):
                break
            assert time.time() < deadline, f"{name} still in progress after {timeout:.0f} s"
            time.sleep(3)
    finally:
        conn.close()
    return json.loads(coe(cloud, user, "cluster", "show", name, "-f", "json").stdout)


def gone(cloud: dict, user: str, name: str, timeout: float) -> subprocess.CompletedProcess:
    """Waits as `settled` does until the cluster is gone; then `coe cluster show` as the user runs it."""
    conn = connect(cloud, user)
    try:
        deadline = time.time() + timeout
        while conn.container_infrastructure_management.find_cluster(name, ignore_missing=True) is not None:
            assert time.time() < deadline, f"{name} still there after {timeout:.0f} s"
            time.sleep(3)
    finally:
        conn.close()
    return coe(cloud, user, "cluster", "show", name, check=False)


def coe(cloud: dict, user: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The openstack CLI as `user`, finding the service through the catalog."""
    account = cloud["users"][user]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | {
        "OS_AUTH_URL": cloud["auth_url"], "OS_USERNAME": user, "OS_PASSWORD": account["password"],
        "OS_PROJECT_NAME": account["project"], "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": cloud["region"], "OS_IDENTITY_API_VERSION": "3",
        "SHELL": "/bin/bash"}
    proc = subprocess.run(["openstack", "coe", *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    if check:
        assert proc.returncode == 0, f"{user}: openstack coe {' '.join(args)}: {proc.stderr}"
    return proc


def names(cloud: dict, user: str) -> list[str]:
    listed = coe(cloud, user, "cluster", "template", "list", "-f", "json").stdout
    return sorted(t["name"] for t in json.loads(listed))


def make(cloud: dict, user: str, name: str, *extra: str) -> subprocess.CompletedProcess:
    return coe(cloud, user, "cluster", "template", "create", name, "--coe", "kubernetes", "--image", "carina-host",
               "--external-network", "public", *extra, check=False)


def test_each_project_sees_and_changes_only_its_own_and_the_admin_sees_all(cloud, service):
    assert make(cloud, "demo", "demo-tpl").returncode == 0
    assert make(cloud, "alt", "alt-tpl").returncode == 0
    assert names(cloud, "demo") == ["demo-tpl"]
    assert names(cloud, "alt") == ["alt-tpl"]
    assert names(cloud, "admin") == ["alt-tpl", "demo-tpl"]
    shown = json.loads(coe(cloud, "demo", "cluster", "template", "show", "demo-tpl", "-f", "json").stdout)
    assert shown["project_id"] == cloud["users"]["demo"]["project_id"]
    hidden = coe(cloud, "alt", "cluster", "template", "show", "demo-tpl", check=False)
    assert "ClusterTemplate demo-tpl could not be found (HTTP 404)" in hidden.stderr
    hidden = coe(cloud, "alt", "cluster", "template", "show", shown["uuid"], check=False)
    assert "could not be found (HTTP 404)" in hidden.stderr
    refused = coe(cloud, "alt", "cluster", "create", "x", "--cluster-template", shown["uuid"], check=False)
    assert "could not be found (HTTP 404)" in refused.stderr
    # Only an admin publishes; a public template is everyone's to use, its owner's (or an admin's) to change.
    assert "only an admin may publish" in make(cloud, "demo", "pub", "--public").stderr
    assert make(cloud, "admin", "pub", "--public").returncode == 0
    assert names(cloud, "alt") == ["alt-tpl", "pub"]
    changed = coe(cloud, "alt", "cluster", "template", "update", "pub", "--flavor", "m1.large", check=False)
    assert "belongs to another project (HTTP 403)" in changed.stderr
    coe(cloud, "alt", "cluster", "template", "delete", "demo-tpl")  # the CLI prints the failure, exits 0
    assert names(cloud, "demo") == ["demo-tpl", "pub"]
    for user, name in (("demo", "demo-tpl"), ("alt", "alt-tpl"), ("admin", "pub")):
        coe(cloud, user, "cluster", "template", "delete", name)
    assert names(cloud, "admin") == []


def docker_with(env_text: str, *args: str) -> subprocess.CompletedProcess:
    exports = dict(re.findall(r"^export (\w+)=(.*)$", env_text, re.MULTILINE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")} | exports
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def panel_login(page, cloud: dict, user: str, password: str | None = None) -> None:
    account = cloud["users"][user]
    form = page.locator("form#login")
    expect(form).to_be_visible()
    form.get_by_label("User name").fill(user)
    form.get_by_label("Password").fill(password or account["password"])
    form.get_by_label("Project").fill(account["project"])
    form.get_by_role("button", name="Log in").click()


def the_panel_shows_each_project_its_own(browser, artifacts, cloud: dict, root: str) -> None:
    """Logged in with Keystone credentials, a user sees their project's cards only."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(root + "/panel/")
    panel_login(page, cloud, "alt", password="not-" + cloud["users"]["alt"]["password"])
    expect(page.locator("#login-problems")).to_contain_text("do not match an account")
    panel_login(page, cloud, "demo")
    card = page.locator('article.cluster[data-cluster="web"]')
    expect(card).to_have_attribute("data-status", "CREATE_COMPLETE")
    expect(page.locator("#account-name")).to_have_text(f"demo @ {cloud['users']['demo']['project']}")
    page.screenshot(path=artifacts / "demo.png")
    page.get_by_role("button", name="Log out").click()
    panel_login(page, cloud, "alt")
    expect(page.locator("#add-cluster")).to_be_visible()
    expect(page.locator("article.cluster")).to_have_count(0)
    page.screenshot(path=artifacts / "alt.png")
    page.close()


def test_a_project_makes_uses_and_deletes_its_cluster_and_another_cannot_touch_it(cloud, service, tmp_path, browser,
                                                                                   artifacts):
    coe(cloud, "demo", "cluster", "template", "create", "ks-swarm", "--coe", "swarm-mode", "--image", "carina-host",
        "--external-network", "public")
    out = coe(cloud, "demo", "cluster", "create", "web", "--cluster-template", "ks-swarm", "--master-count", "1",
              "--node-count", "0").stdout
    uuid = re.search(r"Request to create cluster (\S+) accepted", out)[1]
    # Another project sees nothing of it, by name or by uuid, and may not sign a certificate for it.
    for ident in ("web", uuid):
        hidden = coe(cloud, "alt", "cluster", "show", ident, check=False)
        assert "could not be found (HTTP 404)" in hidden.stderr, hidden.stderr
    assert json.loads(coe(cloud, "alt", "cluster", "list", "-f", "json").stdout) == []
    # openstacksdk, finding the service through the catalog with each project's token, sees the same.
    for user, expected in (("demo", [uuid]), ("alt", []), ("admin", [uuid])):
        sdk = connect(cloud, user).container_infrastructure_management
        assert [c.id for c in sdk.clusters()] == expected, user
    assert connect(cloud, "demo").container_infrastructure_management.get_cluster(uuid).name == "web"
    with pytest.raises(openstack.exceptions.NotFoundException):
        connect(cloud, "alt").container_infrastructure_management.get_cluster(uuid)
    cluster = settled(cloud, "demo", "web", 600)
    assert cluster["status"] == "CREATE_COMPLETE", cluster
    assert cluster["project_id"] == cloud["users"]["demo"]["project_id"]
    denied = coe(cloud, "alt", "cluster", "config", "web", "--dir", str(tmp_path), "--output-certs",
                 check=False)
    assert denied.returncode != 0 and "could not be found (HTTP 404)" in denied.stderr, denied.stderr
    assert not list(tmp_path.iterdir()), "no credentials were written for another project's cluster"
    env_text = coe(cloud, "demo", "cluster", "config", "web", "--dir", str(tmp_path), "--output-certs").stdout
    info = docker_with(env_text, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    assert info.stdout.split() == ["active", "true"], info.stderr
    assert "could not be found (HTTP 404)" in coe(cloud, "alt", "cluster", "delete", "web", check=False).stderr
    the_panel_shows_each_project_its_own(browser, artifacts, cloud, service["url"].removesuffix("/v1"))
    assert json.loads(coe(cloud, "admin", "cluster", "list", "-f", "json").stdout)[0]["uuid"] == uuid
    coe(cloud, "demo", "cluster", "delete", "web")
    shown = gone(cloud, "demo", "web", 300)
    assert "Cluster web could not be found (HTTP 404)" in shown.stderr
    coe(cloud, "demo", "cluster", "template", "delete", "ks-swarm")


def test_calls_without_a_valid_project_token_are_refused(cloud, service):
    for token, status in (("", 401), ("not-a-token", 401)):
        headers = {"X-Auth-Token": token} if token else {}
        request = urllib.request.Request(service["url"] + "/clusters", headers=headers)  # noqa: S310 - ours
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310 - the test's own service on 127.0.0.1
        assert caught.value.code == status
        body = json.loads(caught.value.read())
        assert body["errors"][0]["status"] == status
    with urllib.request.urlopen(service["url"], timeout=30) as answer:  # noqa: S310 - versions need no token
        assert json.loads(answer.read())["id"] == "v1"
    log = service["log"].read_text()
    assert "not-a-token" not in log and cloud["users"]["carina"]["password"] not in log


def test_on_openstack_a_cluster_is_made_in_the_users_project_under_their_trust(cloud, cloud_service, tmp_path):
    """Last in this module: its service replaced the first one in the catalog."""
    coe(cloud, "demo", "cluster", "template", "create", "os-tpl", "--coe", "swarm-mode", "--image", "carina-host",
        "--external-network", "public", "--flavor", "m1.small", "--fixed-network", "private", "--fixed-subnet",
        "private-subnet")
    out = coe(cloud, "demo", "cluster", "create", "os-svc", "--cluster-template", "os-tpl", "--master-count", "1",
              "--node-count", "1").stdout
    uuid = re.search(r"Request to create cluster (\S+) accepted", out)[1]
    admin = connect(cloud, "admin")
    demo_user = admin.identity.find_user("demo", domain_id="default")
    carina_user = admin.identity.find_user("carina", domain_id="default")
    trusts = [t for t in admin.identity.trusts() if t.trustor_user_id == demo_user.id]
    assert [(t.trustee_user_id, t.project_id, t.is_impersonation) for t in trusts] == \
        [(carina_user.id, cloud["users"]["demo"]["project_id"], False)]
    cluster = settled(cloud, "demo", "os-svc", 900)
    assert cluster["status"] == "CREATE_COMPLETE", cluster
    servers = [s for s in admin.compute.servers(all_projects=True) if (s.metadata or {}).get("carina_cluster") ==
               "os-svc"]
    assert sorted(s.name for s in servers) == ["os-svc-manager-1", "os-svc-worker-1"]
    assert {s.project_id for s in servers} == {cloud["users"]["demo"]["project_id"]}, "in the user's project"
    credentials = cloud_service["home"] / "credentials" / f"{uuid.replace('-', '')}.yaml"
    assert credentials.stat().st_mode & 0o777 == 0o600
    env_text = coe(cloud, "demo", "cluster", "config", "os-svc", "--dir", str(tmp_path), "--output-certs").stdout
    deadline = time.time() + 30  # the test cloud's HAProxy follows Octavia's members a moment later
    while time.time() < deadline:
        info = docker_with(env_text, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}")
        if info.returncode == 0:
            break
        time.sleep(1)
    assert info.stdout.split() == ["active", "2"], info.stderr

    coe(cloud, "demo", "cluster", "delete", "os-svc")
    shown = gone(cloud, "demo", "os-svc", 600)
    assert "could not be found (HTTP 404)" in shown.stderr
    assert not [s for s in admin.compute.servers(all_projects=True) if (s.metadata or {}).get("carina_cluster") ==
                "os-svc"]
    deadline = time.time() + 60  # the service deletes the trust once the delete run has ended
    while time.time() < deadline and [t for t in admin.identity.trusts() if t.trustor_user_id == demo_user.id]:
        time.sleep(1)
    assert [t.id for t in admin.identity.trusts() if t.trustor_user_id == demo_user.id] == []
    assert not credentials.exists()
    coe(cloud, "demo", "cluster", "template", "delete", "os-tpl")
