"""The control panel's page and JSON API in process: assets and their security headers, the create form judged by
the planning rules (every problem at once), project ownership, and Get Access's zip, whose shell files find their
own folder wherever it is unpacked."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

from carina import api
from carina.service.magnum import MagnumAPI
from carina.service.panel import Panel
from carina.service.web import Request
from tests.unit.test_service import as_project


class PanelCaller:
    def __init__(self, panel: Panel):
        self.panel = panel

    def __call__(self, method, path, body=None, *, project=None, raw=False):
        data = b"" if body is None else json.dumps(body).encode()
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
                   "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http",
                   "HTTP_HOST": "127.0.0.1:9511", "HTTP_X_TEST_PROJECT": project or ""}
        response = self.panel.handle(Request(environ))
        out = response.data if raw or not response.content_type.startswith("application/json") else \
            json.loads(response.data)
        return response.status, out, dict(response.headers) | {"Content-Type": response.content_type}


@pytest.fixture
def panel(tmp_path, monkeypatch):
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    monkeypatch.setattr(api.Client, "_spawn", lambda self, run: None)
    client = api.Client(tmp_path)
    return PanelCaller(Panel(client, as_project, MagnumAPI(client, as_project)))


def test_the_page_and_its_assets_are_served_with_a_strict_policy(panel):
    status, page, headers = panel("GET", "/panel/", raw=True)
    assert status == 200 and b"<title>Carina Clusters</title>" in page and b'src="panel.js"' in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    for asset, kind in (("panel.js", "text/javascript"), ("panel.css", "text/css"), ("logo.svg", "image/svg+xml")):
        status, data, headers = panel("GET", f"/panel/{asset}", raw=True)
        assert status == 200 and data and headers["Content-Type"].startswith(kind), asset
    assert b"innerHTML" not in panel("GET", "/panel/panel.js", raw=True)[1], "text goes in as text, never as HTML"
    assert panel("GET", "/panel/../api.py")[0] == 404
    assert panel("GET", "/panel/index.htm")[0] == 404
    assert panel("GET", "/panel")[2]["Location"] == "/panel/"
    assert panel("GET", "/panel/api/session")[1] == {"login": False, "provider": "local"}
    assert panel("POST", "/panel/api/login", {"username": "u", "password": "p", "project": "x"})[0] == 404


def test_the_form_offers_each_coe_with_the_bounds_of_its_contract(panel):
    status, form, headers = panel("GET", "/panel/api/form", project="p1")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    by_name = {c["name"]: c for c in form["coes"]}
    assert by_name["swarm"]["masters"] == {"min": 1, "max": 7, "odd": True, "default": 1}
    assert by_name["swarm"]["words"] == {"master": ["manager", "managers"], "worker": ["worker", "workers"]}
    assert by_name["swarm"]["default"]
    assert "address_pool" in by_name["swarm"]["options"]
    assert form["provider"]["name"] == "local" and "lower-case" in form["name_rule"]


def test_a_bad_form_gets_every_problem_at_once_and_records_nothing(panel):
    status, out, _ = panel("POST", "/panel/api/clusters", {"name": "Web", "masters": 2, "nodes": 300}, project="p1")
    assert status == 400
    assert [p.split(":")[0] for p in out["problems"]] == ["name 'Web'", "masters=2", "nodes=300"], out
    assert "(use 1 or 3)" in out["problems"][1]
    status, out, _ = panel("POST", "/panel/api/clusters", {"name": "web", "options": {"address_pool_mask": 99}},
                           project="p1")
    assert status == 400 and any("address_pool_mask" in p for p in out["problems"]), out
    status, out, _ = panel("POST", "/panel/api/clusters", {"name": "web", "openstack": {"flavor": "x"}}, project="p1")
    assert status == 400 and "it has no [cloud]" in out["message"]
    assert panel.panel.client.list() == []


def test_cards_are_the_projects_own_and_names_are_per_project(panel):
    status, card, _ = panel("POST", "/panel/api/clusters", {"name": "web", "masters": 1, "nodes": 2}, project="p1")
    assert status == 202
    assert (card["name"], card["type"], card["segments"], card["autoscale"], card["status"]) == \
        ("web", "Docker Swarm cluster", 3, False, "CREATE_IN_PROGRESS")
    assert panel("POST", "/panel/api/clusters", {"name": "web"}, project="p1")[0] == 409
    assert panel("POST", "/panel/api/clusters", {"name": "web"}, project="p2")[0] == 202
    mine = panel("GET", "/panel/api/clusters", project="p1")[1]["clusters"]
    theirs = panel("GET", "/panel/api/clusters", project="p2")[1]["clusters"]
    assert [c["uuid"] for c in mine] == [card["uuid"]] and len(theirs) == 1 and theirs[0]["uuid"] != card["uuid"]
    assert theirs[0]["carina_name"].startswith("web-")
    for method, path in (("GET", f"/panel/api/clusters/{card['uuid']}/bundle"),
                         ("DELETE", f"/panel/api/clusters/{card['uuid']}")):
        assert panel(method, path, project="p2")[0] == 404, path
    status, out, _ = panel("GET", f"/panel/api/clusters/{card['uuid']}/bundle", project="p1")
    assert status == 409 and "CREATE_IN_PROGRESS" in out["message"]
    stopped = []
    panel.panel.magnum.stop_then_delete = lambda cluster, who: stopped.append(cluster.name)
    assert panel("DELETE", f"/panel/api/clusters/{card['uuid']}", project="p1")[0] == 204
    deadline = time.time() + 5
    while not stopped and time.time() < deadline:
        time.sleep(0.05)
    assert stopped == ["web"], "a cluster being made is stopped, then deleted"


def complete(client: api.Client, name: str) -> None:
    """The cluster as a finished create leaves it: CREATE_COMPLETE, its endpoint, its bundle files."""
    with client.store.transaction() as db:
        cluster = client.store.get_cluster(name, db)
        cluster.status, cluster.endpoint, cluster.current_run = "CREATE_COMPLETE", "198.18.7.2", ""
        client.store.put_cluster(db, cluster)
    state = client.home / "clusters" / name
    state.mkdir(parents=True, exist_ok=True)
    for item in ("ca.pem", "cert.pem"):
        (state / item).write_text("-----BEGIN CERTIFICATE-----\n")
    (state / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    for item in ("docker.env", "docker.fish", "docker.ps1", "docker.cmd"):
        (state / item).write_text(f"# {state}\n")


def test_get_access_is_a_zip_whose_shell_files_find_their_folder(panel, tmp_path):
    card = panel("POST", "/panel/api/clusters", {"name": "web", "nodes": 0}, project="p1")[1]
    complete(panel.panel.client, card["carina_name"])
    status, data, headers = panel("GET", f"/panel/api/clusters/{card['uuid']}/bundle", project="p1", raw=True)
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == 'attachment; filename="web.zip"'
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = sorted(archive.namelist())
    assert names == sorted(f"web/{f}" for f in ("ca.pem", "cert.pem", "key.pem", "docker.env", "docker.fish",
                                                "docker.ps1", "docker.cmd", "README.txt"))
    assert archive.getinfo("web/key.pem").external_attr >> 16 == 0o100600
    assert archive.getinfo("web/ca.pem").external_attr >> 16 == 0o100644
    howto = archive.read("web/README.txt").decode()
    assert "source web/docker.env" in howto and ". .\\web\\docker.ps1" in howto and "docker info" in howto
    assert str(panel.panel.client.home) not in archive.read("web/docker.env").decode(), "no server path leaks"
    unpacked = tmp_path / "somewhere else"
    archive.extractall(unpacked)
    folder = unpacked / "web"
    # From another folder by its full path, and from the folder above by a relative one (where a CDPATH
    # would make cd print the folder: the file must not take that for its path).
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    shells = [("bash", f'source "{folder}/docker.env"; {dump}', "/"),
              ("bash", f"source web/docker.env; {dump}", unpacked)]
    if shutil.which("zsh"):
        shells.append(("zsh", f'source "{folder}/docker.env"; {dump}', "/"))
    if shutil.which("fish"):
        shells.append(("fish", f'source "{folder}/docker.fish"; {dump}', "/"))
    for shell, script, cwd in shells:
        out = subprocess.run([shell, "-c", script], cwd=cwd, capture_output=True, text=True, check=True,
                             env={"PATH": os.environ["PATH"], "CDPATH": ".:/tmp"}).stdout
        env = json.loads(out)
        assert env["DOCKER_CERT_PATH"] == str(folder), shell
        assert env["DOCKER_HOST"] == "tcp://198.18.7.2:2376" and env["DOCKER_TLS_VERIFY"] == "1"
        assert env["CARINA_CLUSTER_NAME"] == "web"
    ps1 = archive.read("web/docker.ps1").decode()
    assert "$env:DOCKER_CERT_PATH = '' + $PSScriptRoot + ''" in ps1 and ps1.endswith("\r\n")
    assert 'set "DOCKER_CERT_PATH=%~dp0."' in archive.read("web/docker.cmd").decode()
