"""The service's Magnum API in process (no playbook runs): shapes the real clients need, rules, isolation, CSRs."""

from __future__ import annotations

import datetime
import io
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from carina import api
from carina.errors import CarinaError
from carina.service import certs
from carina.service.app import App
from carina.service.auth import Context, NoAuth
from carina.service.magnum import MagnumAPI
from carina.service.server import Config
from carina.service.web import HTTPError, Request
from tests.unit.test_carina import write_record

LATEST = "container-infra latest"


class Caller:
    """Calls the API as a WSGI server would, as the identity `who` (by project)."""

    def __init__(self, api_: MagnumAPI):
        self.api = api_

    def __call__(self, method, path, body=None, *, version=LATEST, project=None, admin=False):
        data = b"" if body is None else json.dumps(body).encode()
        path, _, query = path.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http",
                   "HTTP_HOST": "127.0.0.1:9511", "HTTP_X_TEST_PROJECT": project or "",
                   "HTTP_X_TEST_ADMIN": "1" if admin else ""}
        if version:
            environ["HTTP_OPENSTACK_API_VERSION"] = version
        response = self.api.handle(Request(environ))
        out = json.loads(response.data) if response.data else None
        return response.status, out, dict(response.headers)


def as_project(request: Request) -> Context:
    """Who asks, from test headers: a project's member, or an admin."""
    project = request.header("X-Test-Project")
    if not project:
        return NoAuth()(request)
    return Context(project_id=project, user_id=f"user-{project}", is_admin=bool(request.header("X-Test-Admin")))


@pytest.fixture
def call(tmp_path, monkeypatch):
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    monkeypatch.setattr(api.Client, "_spawn", lambda self, run: None)
    return Caller(MagnumAPI(api.Client(tmp_path), as_project))


def template(call, name="sw", coe="swarm-mode", **fields):
    body = {"name": name, "coe": coe, "image_id": "carina-host", "keypair_id": None, "labels": {}} | fields
    status, out, _headers = call("POST", "/v1/clustertemplates", body, project=fields.pop("project", None))
    assert status == 201, out
    return out


def test_versions_answer_without_a_token_and_v1_speaks_microversions(call):
    status, root, headers = call("GET", "/", version=None)
    assert status == 200 and root["versions"][0]["id"] == "v1" and root["versions"][0]["max_version"] == "1.14"
    assert root["versions"][0]["links"][0] == {"href": "http://127.0.0.1:9511/v1/", "rel": "self"}
    status, v1, headers = call("GET", "/v1/")
    assert status == 200 and v1["id"] == "v1" and "clusters" in v1
    assert headers["OpenStack-API-Version"] == "container-infrastructure-management 1.14"
    assert headers["OpenStack-API-Minimum-Version"].endswith(" 1.1")
    assert call("GET", "/v1/clusters", version="container-infra 1.5")[2]["OpenStack-API-Version"].endswith("1.5")
    assert call("GET", "/v1/clusters", version=None)[2]["OpenStack-API-Version"].endswith("1.1")
    for bad in ("container-infra 2.0", "container-infra 1.15", "compute 1.2", "container-infra"):
        status, out, _ = call("GET", "/v1/clusters", version=bad)
        assert status == 406 and out["errors"][0]["code"] == "magnum.microversion-unsupported", bad
    status, out, headers = call("DELETE", "/v1/clusters")
    assert status == 405 and headers["Allow"] == "GET, POST"
    assert call("GET", "/v1/nothing")[0] == 404


def test_templates_have_every_field_and_links_and_resolve_by_name_or_uuid(call):
    made = template(call, labels={"kube_tag": "v1.20.2"}, flavor_id="m1.small")
    assert made["links"][0]["href"] == f"http://127.0.0.1:9511/v1/clustertemplates/{made['uuid']}"
    assert made["coe"] == "swarm-mode" and made["tls_disabled"] is False and made["floating_ip_enabled"] is True
    assert made["keypair_id"] is None and made["master_flavor_id"] is None and made["server_type"] == "vm"
    for ident in ("sw", made["uuid"], made["uuid"].upper()):
        status, shown, _ = call("GET", f"/v1/clustertemplates/{ident}")
        assert status == 200 and shown["uuid"] == made["uuid"], ident
    status, listed, _ = call("GET", "/v1/clustertemplates/")
    assert [t["uuid"] for t in listed["clustertemplates"]] == [made["uuid"]] and "next" not in listed
    status, patched, _ = call("PATCH", "/v1/clustertemplates/sw", [
        {"op": "replace", "path": "/flavor_id", "value": "m1.large"}, {"op": "add", "path": "/labels/a", "value": "1"},
        {"op": "remove", "path": "/labels/kube_tag"}])
    assert status == 200 and patched["flavor_id"] == "m1.large" and patched["labels"] == {"a": "1"}
    assert call("PATCH", "/v1/clustertemplates/sw", [{"op": "replace", "path": "/uuid", "value": "x"}])[0] == 400
    template(call, name="sw")
    status, out, _ = call("GET", "/v1/clustertemplates/sw")
    assert status == 409 and "use the uuid" in out["errors"][0]["title"]
    assert call("DELETE", f"/v1/clustertemplates/{made['uuid']}")[0] == 204
    assert call("GET", f"/v1/clustertemplates/{made['uuid']}")[0] == 404


@pytest.mark.parametrize(("fields", "message"), [
    ({"coe": "mesos"}, "coe 'mesos' is not supported; choose one of kubernetes, swarm, swarm-mode"),
    ({"coe": None}, "coe: required"),
    ({"image_id": None}, "image_id: required"),
    ({"tls_disabled": True}, "always use TLS"),
    ({"server_type": "lpar"}, "server_type 'lpar': vm or bm"),
    ({"docker_volume_size": "ten"}, "docker_volume_size: int expected"),
    ({"labels": ["a"]}, "labels: dict expected"),
    ({"name": "9lives"}, "name '9lives'"),
])
def test_bad_templates_are_refused_with_the_reason_magnumclient_prints(call, fields, message):
    body = {"name": "t", "coe": "kubernetes", "image_id": "img"} | fields
    status, out, _ = call("POST", "/v1/clustertemplates", body)
    assert status == 400 and message in out["errors"][0]["title"] and out["message"] == out["errors"][0]["title"]
    assert call("GET", "/v1/clustertemplates")[1]["clustertemplates"] == []


def test_a_cluster_create_is_accepted_with_its_uuid_and_shows_magnums_fields(call):
    tpl = template(call, coe="kubernetes", labels={"kube_tag": "v1.20.2", "other": "x"}, flavor_id="m1.small",
                   master_lb_enabled=True)
    status, out, _ = call("POST", "/v1/clusters", {
        "name": "k1", "cluster_template_id": "sw", "create_timeout": 60, "discovery_url": None, "keypair": None,
        "master_count": 3, "node_count": 2, "labels": {"kubernetes_version": "1.20.2"}, "merge_labels": True})
    assert status == 202 and list(out) == ["uuid"]
    uuid = out["uuid"]
    cluster = call.api.client.get("k1")
    assert cluster.uuid == uuid.replace("-", "") and (cluster.masters, cluster.nodes) == (3, 2)
    assert cluster.coe == "kubernetes" and cluster.coe_options == {"kubernetes_version": "1.20.2"}
    run = call.api.client.run(cluster.current_run)
    assert json.loads(run.params)["extravars"]["carina_cluster_id"] == cluster.uuid
    status, shown, _ = call("GET", f"/v1/clusters/{uuid}")
    assert status == 200 and shown["status"] == "CREATE_IN_PROGRESS" and shown["cluster_template_id"] == tpl["uuid"]
    assert shown["api_address"] is None and shown["flavor_id"] == "m1.small" and shown["master_lb_enabled"] is True
    assert shown["labels"] == {"kube_tag": "v1.20.2", "other": "x", "kubernetes_version": "1.20.2"}
    assert shown["labels_added"] == {"kubernetes_version": "1.20.2"} and shown["coe_version"] == "v1.20.2"
    assert shown["cluster_id"] is None and "stack_id" not in shown and "faults" not in shown
    assert call("GET", "/v1/clusters/k1")[1]["uuid"] == uuid
    assert "stack_id" in call("GET", "/v1/clusters/k1", version=None)[1]
    status, listed, _ = call("GET", "/v1/clusters")
    assert set(listed["clusters"][0]) >= {"uuid", "name", "status", "health_status", "node_count", "links"}
    assert "api_address" not in listed["clusters"][0]
    assert "api_address" in call("GET", "/v1/clusters/detail")[1]["clusters"][0]
    status, out, _ = call("POST", "/v1/clusters", {"name": "k1", "cluster_template_id": "sw"})
    assert status == 409 and "already exists" in out["errors"][0]["title"]


def test_magnum_names_are_per_project_and_map_to_carina_names(call):
    assert call("POST", "/v1/clustertemplates", {"name": "pubt", "coe": "swarm", "image_id": "i", "public": True},
                project="adm", admin=True)[0] == 201
    assert call("POST", "/v1/clusters", {"name": "web", "cluster_template_id": "pubt"}, project="p1")[0] == 202
    status, out, _ = call("POST", "/v1/clusters", {"name": "web", "cluster_template_id": "pubt"}, project="p1")
    assert status == 409 and "already exists in this project" in out["errors"][0]["title"]
    assert call("POST", "/v1/clusters", {"name": "web", "cluster_template_id": "pubt"}, project="p2")[0] == 202
    assert call("POST", "/v1/clusters", {"name": "My_Swarm.1", "cluster_template_id": "pubt"}, project="p2")[0] == 202
    internal = sorted(c.name for c in call.api.client.list())
    assert internal[0] == "my-swarm-1" and internal[1] == "web" and re.fullmatch(r"web-[0-9a-f]{8}", internal[2])
    for project in ("p1", "p2"):
        shown = call("GET", "/v1/clusters/web", project=project)[1]
        assert shown["name"] == "web" and shown["project_id"] == project
    assert sorted(c["name"] for c in call("GET", "/v1/clusters", project="p2")[1]["clusters"]) == ["My_Swarm.1", "web"]
    status, out, _ = call("GET", "/v1/clusters/web", project="adm", admin=True)
    assert status == 409 and "use the uuid (projects p1, p2)" in out["errors"][0]["title"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"cluster_template_id": "nope"}, 404, "ClusterTemplate nope could not be found"),
    ({}, 400, "cluster_template_id: required"),
    ({"cluster_template_id": "sw", "master_count": 2}, 400, "masters=2"),
    ({"cluster_template_id": "sw", "node_count": "many"}, 400, "node_count: a whole number"),
    ({"cluster_template_id": "sw", "name": "9lives"}, 400, "name '9lives': a letter, then"),
    ({"cluster_template_id": "sw", "name": "web\n"}, 400, "name 'web\\n'"),
    ({"cluster_template_id": "sw", "create_timeout": 0}, 400, "create_timeout"),
    ({"cluster_template_id": "sw", "flavour": "x"}, 400, "unknown cluster field(s): flavour"),
])
def test_bad_cluster_creates_are_refused_before_anything_is_recorded(call, body, status, message):
    template(call)
    answer, out, _ = call("POST", "/v1/clusters", {"name": "c1"} | body)
    assert answer == status and message in out["errors"][0]["title"], out
    assert call.api.client.list() == []


def test_resize_and_node_count_patches_start_a_scale_and_other_changes_are_refused(call):
    template(call)
    uuid = call("POST", "/v1/clusters", {"name": "c1", "cluster_template_id": "sw"})[1]["uuid"]
    status, out, _ = call("POST", f"/v1/clusters/{uuid}/actions/resize", {"node_count": 2})
    assert status == 400 and 'status is "CREATE_IN_PROGRESS"' in out["errors"][0]["title"]
    call.api.client.store.update_cluster("c1", status="CREATE_COMPLETE")
    write_record(call.api.client.home, "c1")
    status, out, _ = call("POST", f"/v1/clusters/{uuid}/actions/resize", {"node_count": 2},
                          version="container-infra 1.6")
    assert status == 406
    status, out, _ = call("POST", "/v1/clusters/c1/actions/resize", {"node_count": 2, "nodegroup": "gpu"})
    assert status == 400 and "default-worker" in out["errors"][0]["title"]
    # openstacksdk's update_cluster sends `add` for a field it did not fetch: taken as replace.
    status, out, _ = call("PATCH", "/v1/clusters/c1/", [{"op": "add", "path": "/node_count", "value": 3}])
    assert status == 202 and out == {"uuid": uuid}, out
    run = call.api.client.run(call.api.client.get("c1").current_run)
    assert run.action == "scale" and json.loads(run.params)["extravars"]["carina_nodes"] == 3
    call.api.client.store.update_cluster("c1", status="UPDATE_COMPLETE")
    status, out, _ = call("PATCH", "/v1/clusters/c1", [{"op": "replace", "path": "/name", "value": "c2"}])
    assert status == 400 and "'/name' cannot be changed" in out["errors"][0]["title"]
    status, out, _ = call("DELETE", "/v1/clustertemplates/sw")
    assert status == 400 and "referenced by one or multiple clusters (c1)" in out["errors"][0]["title"]
    assert call("DELETE", "/v1/clusters/c1")[0] == 204
    assert call.api.client.get("c1").status == "DELETE_IN_PROGRESS"


def test_lists_page_as_magnum_does(call):
    template(call)
    made = [call("POST", "/v1/clusters", {"name": f"c{i}", "cluster_template_id": "sw"})[1]["uuid"] for i in range(3)]
    status, first, _ = call("GET", "/v1/clusters/?limit=2")
    assert [c["uuid"] for c in first["clusters"]] == made[:2]
    assert first["next"] == f"/v1/clusters?sort_key=id&sort_dir=asc&limit=2&marker={made[1]}"
    status, second, _ = call("GET", first["next"])
    assert [c["uuid"] for c in second["clusters"]] == made[2:] and "next" not in second
    assert call("GET", f"/v1/clusters?marker={made[2]}")[1] == {"clusters": []}
    assert [c["name"] for c in call("GET", "/v1/clusters?sort_key=name&sort_dir=desc")[1]["clusters"]] == \
        ["c2", "c1", "c0"]
    for query, message in (("limit=0", "Limit must be positive"), ("sort_dir=up", "asc or desc"),
                           ("sort_key=colour", "sort_key 'colour'")):
        status, out, _ = call("GET", f"/v1/clusters?{query}")
        assert status == 400 and message in out["errors"][0]["title"], query


def test_a_project_sees_and_changes_only_its_own_and_an_admin_sees_all(call):
    mine = template(call, name="mine", project="p1")
    status, out, _ = call("POST", "/v1/clustertemplates", {"name": "pub", "coe": "swarm", "image_id": "i",
                                                           "public": True}, project="p1")
    assert status == 403 and "only an admin may publish" in out["errors"][0]["title"]
    status, _public, _ = call("POST", "/v1/clustertemplates", {"name": "pub", "coe": "swarm", "image_id": "i",
                                                               "public": True}, project="adm", admin=True)
    assert status == 201
    uuid = call("POST", "/v1/clusters", {"name": "c1", "cluster_template_id": "mine"}, project="p1")[1]["uuid"]
    assert call.api.client.get("c1").project == "p1"
    assert call("POST", "/v1/clusters", {"name": "c2", "cluster_template_id": "mine"}, project="p2")[0] == 404
    assert call("GET", f"/v1/clustertemplates/{mine['uuid']}", project="p2")[0] == 404
    assert [t["name"] for t in call("GET", "/v1/clustertemplates", project="p2")[1]["clustertemplates"]] == ["pub"]
    assert call("POST", "/v1/clusters", {"name": "c2", "cluster_template_id": "pub"}, project="p2")[0] == 202
    assert [c["name"] for c in call("GET", "/v1/clusters", project="p2")[1]["clusters"]] == ["c2"]
    for method, path in (("GET", f"/v1/clusters/{uuid}"), ("GET", "/v1/clusters/c1"), ("DELETE", "/v1/clusters/c1"),
                         ("GET", f"/v1/certificates/{uuid}")):
        assert call(method, path, project="p2")[0] == 404, path
    status, out, _ = call("POST", "/v1/certificates", {"cluster_uuid": uuid, "csr": "x"}, project="p2")
    assert status == 400 and "could not be found" in out["errors"][0]["title"]
    assert call("PATCH", "/v1/clustertemplates/pub", [{"op": "replace", "path": "/flavor_id", "value": "f"}],
                project="p2")[0] == 403
    assert sorted(c["name"] for c in call("GET", "/v1/clusters", project="adm", admin=True)[1]["clusters"]) == \
        ["c1", "c2"]


def make_ca(state: Path) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "c1 CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    (state / "pki").mkdir(parents=True)
    (state / "pki" / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (state / "pki" / "ca-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca


def csr(key, cn="admin", org="system:masters") -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                                         org)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def test_the_ca_and_a_signed_client_certificate_as_coe_cluster_config_asks(call, tmp_path):
    template(call)
    uuid = call("POST", "/v1/clusters", {"name": "c1", "cluster_template_id": "sw"})[1]["uuid"]
    status, out, _ = call("GET", f"/v1/certificates/{uuid}")
    assert status == 400 and "no CA yet" in out["errors"][0]["title"]
    ca = make_ca(tmp_path / "clusters" / "c1")
    call.api.client.store.update_cluster("c1", status="CREATE_COMPLETE")
    status, shown, _ = call("GET", f"/v1/certificates/{uuid}")
    assert status == 200 and shown["pem"] == ca.public_bytes(serialization.Encoding.PEM).decode()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    status, out, _ = call("POST", "/v1/certificates", {"cluster_uuid": "c1", "csr": csr(key)})
    assert status == 201 and out["cluster_uuid"] == uuid
    cert = x509.load_pem_x509_certificate(out["pem"].encode())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "O=system:masters,CN=admin"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc


@pytest.mark.parametrize(("make", "message"), [
    (lambda: "not a csr", "not a PEM certificate signing request"),
    (lambda: csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 - refused
     "RSA key of 1024 bits"),
    (lambda: csr(ec.generate_private_key(ec.SECP256K1())), "EC key on secp256k1"),
    (lambda: "x" * 20000, "at most 16384"),
])
def test_weak_or_malformed_csrs_are_refused(tmp_path, make, message):
    make_ca(tmp_path)
    with pytest.raises(CarinaError, match=re.escape(message)):
        certs.sign(tmp_path, make())


def test_a_csr_whose_signature_does_not_match_is_refused(tmp_path):
    make_ca(tmp_path)
    good = csr(ec.generate_private_key(ec.SECP256R1()))
    body = good.splitlines()
    tampered = "\n".join([*body[:-3], body[-3][:-8] + ("AAAAAAAA" if not body[-3].endswith("AAAAAAAA") else "BBBBBBBB"),
                          *body[-2:]])
    with pytest.raises(CarinaError, match="csr: its signature does not match its public key"):
        certs.sign(tmp_path, tampered)


def test_config_listens_on_loopback_only_without_keystone(tmp_path):
    conf = tmp_path / "carina.toml"
    conf.write_text('[service]\nbind = "0.0.0.0"\nport = 9999\n')
    with pytest.raises(CarinaError, match="listens on a loopback address only"):
        Config.load(conf)
    conf.write_text('[service]\nbind = "0.0.0.0"\n[keystone]\nauth_url = "http://127.0.0.1:5000/v3"\n'
                    'username = "carina"\npassword = "p"\n')
    assert Config.load(conf).bind == "0.0.0.0"  # noqa: S104 - with Keystone, any address
    conf.write_text('[service]\nbind = "127.0.0.1"\ncolour = "red"\n[extra]\n')
    with pytest.raises(CarinaError, match=r"unknown section \[extra\]; unknown key 'colour' in \[service\]"):
        Config.load(conf)
    conf.write_text('[keystone]\nauth_url = "http://k"\n')
    with pytest.raises(CarinaError, match=r"\[keystone\] needs username, password"):
        Config.load(conf)
    assert Config.load(None, port=0, home=str(tmp_path)).home == tmp_path


def test_errors_are_answers_not_tracebacks(call):
    status, out, _ = call("POST", "/v1/clusters")
    assert status == 400 and "has no body" in out["errors"][0]["title"]
    with pytest.raises(HTTPError):
        Request({"CONTENT_LENGTH": "x", "wsgi.input": io.BytesIO(b"")}).json()
    status, out, _ = call("PATCH", "/v1/clustertemplates/none", {"op": "x"})
    assert status == 404


def test_the_openapi_document_names_every_route_and_method_the_api_serves(tmp_path, monkeypatch):
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    app = App(Config.load(None, home=str(tmp_path)))
    seen = []
    answer = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/openapi.json", "wsgi.input": io.BytesIO(b""),
                           "HTTP_HOST": "127.0.0.1:9511"}, lambda status, headers: seen.append(status)))
    doc = json.loads(answer)
    assert seen == ["200 OK"] and doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "http://127.0.0.1:9511"}]
    served = {(method.lower(), regex.pattern) for router in (app.api.router, app.panel.router)
              for regex, methods in router.routes for method in methods
              if not regex.pattern.startswith(("^/panel//?$", "^/panel/(?P<asset>"))}  # the page, not the API
    documented = set()
    for path, item in doc["paths"].items():
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$"
        documented |= {(method, pattern) for method in item if method != "parameters"}
    assert served == documented
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', answer.decode()))
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])


def test_behind_a_tls_proxy_links_name_the_address_clients_used(tmp_path, monkeypatch):
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    (tmp_path / "c.toml").write_text(f'[service]\nhome = "{tmp_path}"\nproxy_headers = true\n')
    for proxied, expected in ((True, "https://localhost:8443/v1/"), (False, "http://127.0.0.1:9511/v1/")):
        app = App(Config.load(tmp_path / "c.toml") if proxied else Config.load(None, home=str(tmp_path)))
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1", "wsgi.input": io.BytesIO(b""),
                   "wsgi.url_scheme": "http", "HTTP_HOST": "127.0.0.1:9511", "HTTP_X_FORWARDED_PROTO": "https",
                   "HTTP_X_FORWARDED_HOST": "localhost:8443"}
        body = json.loads(b"".join(app(environ, lambda status, headers: None)))
        assert body["links"][0]["href"] == expected, body["links"]
    with pytest.raises(CarinaError, match="proxy_headers 'yes': true or false"):
        (tmp_path / "bad.toml").write_text('[service]\nproxy_headers = "yes"\n')
        Config.load(tmp_path / "bad.toml")


class FakeKeystone:
    """The delegation calls of KeystoneAuth, recorded; `as_project` tells who asks."""

    keystone = True

    def __init__(self):
        self.calls = []

    def __call__(self, request):
        return as_project(request)

    def delegate(self, context):
        self.calls.append(("delegate", context.project_id))
        return {"trust_id": "t" * 32, "roles": ["member"]}

    def revoke(self, token, trust_id):
        self.calls.append(("revoke", trust_id))

    def trust_cloud(self, trust_id):
        return {"auth": {"username": "carina", "password": "service-secret", "trust_id": trust_id}}


def on_a_cloud_with_keystone(tmp_path, monkeypatch):
    """The Magnum API on a cloud (its runs not started) whose Keystone delegates, and p1's template `sw`."""
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    monkeypatch.setattr(api.Client, "_spawn", lambda self, run: None)
    keystone = FakeKeystone()
    call = Caller(MagnumAPI(api.Client(tmp_path), keystone, {"name": "shared", "flavor": "m1.small"}))
    template(call, project="p1")
    return call, keystone


def test_on_openstack_a_cluster_is_made_under_its_callers_trust_and_a_refused_one_leaves_none(tmp_path, monkeypatch):
    call, keystone = on_a_cloud_with_keystone(tmp_path, monkeypatch)
    status, out, _ = call("POST", "/v1/clusters", {"name": "os1", "cluster_template_id": "sw"}, project="p1")
    assert status == 202, out
    cluster = call.api.client.get("os1")
    path = tmp_path / "credentials" / f"{cluster.uuid}.yaml"
    assert cluster.options["run_env"] == {"OS_CLIENT_CONFIG_FILE": str(path)}
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "credentials").stat().st_mode & 0o777 == 0o700
    clouds = json.loads(path.read_text())["clouds"]
    assert clouds == {f"carina-{cluster.uuid}": {"auth": {"username": "carina", "password": "service-secret",
                                                          "trust_id": "t" * 32}}}
    assert cluster.extra["trust_id"] == "t" * 32 and cluster.extra["trust_roles"] == ["member"]
    run = call.api.client.run(cluster.current_run)
    params = json.loads(run.params)
    assert params["envvars"]["OS_CLIENT_CONFIG_FILE"] == str(path)
    assert params["extravars"]["carina_cloud"] == f"carina-{cluster.uuid}", "not the service's shared cloud"
    assert params["extravars"]["carina_image"] == "carina-host" and params["extravars"]["carina_flavor"] == "m1.small"
    assert "service-secret" not in run.params
    assert "carina_api_cidrs" not in params["extravars"], "no master_lb_allowed_cidrs label: the API for anyone"
    assert keystone.calls == [("delegate", "p1")]
    # A create refused after the trust was made (the name is taken) takes the trust and the file back.
    status, _out, _ = call("POST", "/v1/clusters", {"name": "os1", "cluster_template_id": "sw"}, project="p2")
    assert status == 404  # p2 does not see p1's template: refused before any trust
    # A state folder another run made blocks the name.
    (tmp_path / "clusters" / "os2").mkdir(parents=True)
    (tmp_path / "clusters" / "os2" / "id").write_text("a" * 32)
    monkeypatch.setattr(MagnumAPI, "internal_name", lambda self, name, cluster_id: name)
    status, out, _ = call("POST", "/v1/clusters", {"name": "os2", "cluster_template_id": "sw"}, project="p1")
    assert status == 409, out
    assert keystone.calls[-2:] == [("delegate", "p1"), ("revoke", "t" * 32)]
    assert sorted(p.name for p in (tmp_path / "credentials").iterdir()) == [f"{cluster.uuid}.json",
                                                                             f"{cluster.uuid}.yaml"]
    assert json.loads((tmp_path / "credentials" / f"{cluster.uuid}.json").read_text())["trustor"] == "user-p1"
    # Once the cluster is gone, its trust goes at the next call of its trustor (or an admin), not of others.
    with call.api.client.store.transaction() as db:
        db.execute("DELETE FROM clusters WHERE name = ?", ("os1",))
    call.api.sweep_trusts(Context(project_id="p2", user_id="user-p2"), force=True)
    assert keystone.calls[-1] == ("revoke", "t" * 32) and len(keystone.calls) == 3, "another user revokes nothing"
    call("GET", "/v1/clusters", project="p1")
    assert len(keystone.calls) == 3, "a user's calls look at most every SWEEP_SECONDS"
    call.api.swept.clear()  # as if they had passed
    call("GET", "/v1/clusters", project="p1")
    assert keystone.calls[-1] == ("revoke", "t" * 32) and len(keystone.calls) == 4
    assert list((tmp_path / "credentials").iterdir()) == []


def test_magnums_master_lb_allowed_cidrs_say_who_may_reach_the_api(tmp_path, monkeypatch):
    call, keystone = on_a_cloud_with_keystone(tmp_path, monkeypatch)
    labels = {"master_lb_allowed_cidrs": "198.19.200.0/24,198.19.201.7/32"}
    status, out, _ = call("POST", "/v1/clusters", {"name": "os3", "cluster_template_id": "sw", "labels": labels},
                          project="p1")
    assert status == 202, out
    params = json.loads(call.api.client.run(call.api.client.get("os3").current_run).params)
    assert params["extravars"]["carina_api_cidrs"] == ["198.19.200.0/24", "198.19.201.7/32"]
    status, out, _ = call("POST", "/v1/clusters", {"name": "os4", "cluster_template_id": "sw",
                                                   "labels": {"master_lb_allowed_cidrs": "the office"}}, project="p1")
    assert status == 400 and "api_cidrs 'the office': give an IPv4 network" in out["message"], out
    assert keystone.calls[-1] == ("revoke", "t" * 32), "the refused create's trust is taken back"


def test_what_a_web_page_elsewhere_sends_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    app = App(Config.load(None, home=str(tmp_path)))

    def status_of(method, path, body=b"", **headers):
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)),
                   "wsgi.input": io.BytesIO(body), "HTTP_HOST": "127.0.0.1:9511"}
        environ |= {("CONTENT_TYPE" if k == "content_type" else "HTTP_" + k.upper()): v for k, v in headers.items()}
        seen = []
        b"".join(app(environ, lambda status, _headers: seen.append(int(status.split()[0]))))
        return seen[0]

    form = b'{"name": "x"}'
    assert status_of("POST", "/panel/api/clusters", form, content_type="text/plain") == 415
    assert status_of("POST", "/v1/clustertemplates", form, content_type="application/x-www-form-urlencoded") == 415
    assert status_of("GET", "/panel/api/clusters", host="attacker.example") == 421  # a rebound DNS name
    assert status_of("GET", "/v1/clusters", sec_fetch_site="cross-site") == 403
    assert status_of("GET", "/panel/api/clusters", host="localhost:9511", sec_fetch_site="same-origin") == 200
    assert status_of("POST", "/panel/api/clusters", b'{"name": "Bad"}', content_type="application/json") == 400


def test_a_path_two_routes_match_goes_to_the_one_that_takes_the_method(call):
    status, out, _ = call("DELETE", "/v1/clusters/detail")
    assert status == 404 and "Cluster detail could not be found" in out["errors"][0]["title"]
    status, _out, headers = call("PUT", "/v1/clusters/detail")
    assert status == 405 and "GET" in headers["Allow"]
