"""The Kubernetes plug-in's health probe: with the HTTP call replaced, then over real mutual TLS."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import types

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from carina import coes
from carina.coes import kubernetes
from carina.coes.base import HTTPStatusError

MASTER = "node-role.kubernetes.io/master"


def cluster(**fields):
    return types.SimpleNamespace(**({"name": "k1", "endpoint": "198.18.7.2", "masters": 3, "nodes": 4} | fields))


def node(name, master=False, ready="True", label=MASTER):
    labels = {"kubernetes.io/hostname": name, **({label: ""} if master else {})}
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {"metadata": {"name": name, "labels": labels}, "status": {"conditions": conditions}}


def listing(masters, workers, **changes):
    """A NodeList of `masters` and `workers` nodes; changes: {node name: node(...) keyword arguments}."""
    names = [(f"k1-master-{i}", True) for i in range(1, masters + 1)] + \
            [(f"k1-node-{i}", False) for i in range(1, workers + 1)]
    items = [node(name, master, **changes.get(name, {})) for name, master in names]
    return json.dumps({"kind": "NodeList", "apiVersion": "v1", "items": items}).encode()


URL = "https://198.18.7.2:6443"
STATUS_403 = json.dumps({"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                         "message": 'nodes is forbidden: User "k1-lb-health" cannot list resource "nodes"'}).encode()


def ready(nodes):
    """The answers of an API that is ready, listing `nodes`."""
    return {"/readyz": b"ok", "/api/v1/nodes": nodes}


@pytest.mark.parametrize(
    ("answers", "fields", "expected"),
    [
        (ready(listing(3, 4)), {}, ("HEALTHY", "3 masters, 4 nodes ready")),
        (ready(listing(1, 1)), {"masters": 1, "nodes": 1}, ("HEALTHY", "1 master, 1 node ready")),
        (ready(listing(1, 0, **{"k1-master-1": {"label": "node-role.kubernetes.io/control-plane"}})),
         {"masters": 1, "nodes": 0}, ("HEALTHY", "1 master, 0 nodes ready")),
        (ready(listing(3, 4, **{"k1-node-2": {"ready": "False"}, "k1-master-3": {"ready": None}})), {},
         ("UNHEALTHY", "nodes not ready: k1-master-3, k1-node-2")),
        (ready(listing(1, 2)), {"masters": 3, "nodes": 1},
         ("UNHEALTHY", "1 master and 2 nodes in the cluster, 3 and 1 expected")),
        ({"/readyz": HTTPStatusError("/readyz", 500, b"[+]ping ok\n[-]etcd failed: reason withheld\n[+]log ok\n"
                                                     b"readyz check failed\n")}, {},
         ("UNHEALTHY", f"the API {URL} is not ready (/readyz: HTTP 500: etcd failed: reason withheld)")),
        (ready(HTTPStatusError("/api/v1/nodes", 403, STATUS_403)), {},
         ("UNHEALTHY", f'the API {URL} refuses to list the nodes (/api/v1/nodes: HTTP 403: nodes is forbidden: '
                       f'User "k1-lb-health" cannot list resource "nodes")')),
        ({"/readyz": ConnectionRefusedError(111, "Connection refused")}, {},
         ("UNHEALTHY", f"the endpoint {URL} does not answer: [Errno 111] Connection refused")),
        ({"/readyz": TimeoutError("timed out")}, {}, ("UNHEALTHY", f"the endpoint {URL} does not answer: timed out")),
        (ready(b"<html>a proxy's page</html>"), {},
         ("UNKNOWN", f"the API {URL} lists nodes in a form carina cannot read (/api/v1/nodes: "
                     "JSONDecodeError('Expecting value: line 1 column 1 (char 0)'))")),
        (ready(b'{"kind": "Status"}'), {},
         ("UNKNOWN", f"the API {URL} lists nodes in a form carina cannot read (/api/v1/nodes: KeyError('items'))")),
    ],
)
def test_the_kubernetes_health_probe(monkeypatch, tmp_path, answers, fields, expected):
    calls = []

    def fake_api(*args):
        calls.append(args)
        answer = answers[args[-1]]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(kubernetes, "kube_api", fake_api)
    health = coes.get("kubernetes").health(cluster(**fields), tmp_path)
    assert (health.status, health.reason) == expected
    assert calls == [(tmp_path, "198.18.7.2", 6443, path) for path in answers]  # /readyz first, then the nodes


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "it has neither ca.pem, cert.pem, key.pem nor kubeconfig"),
        ({"kubeconfig": "{not: [yaml"}, "kubeconfig: while parsing a flow"),
        ({"kubeconfig": "kind: Config\ncurrent-context: k1\ncontexts: []\n"}, "kubeconfig: no context 'k1'"),
        ({"kubeconfig": "current-context: k1\ncontexts: [{name: k1}]\n"}, "kubeconfig: missing 'context'"),
        ({"kubeconfig": "- a list\n"}, "kubeconfig: 'list' object has no attribute 'get'"),
        ({"kubeconfig": "current-context: k1\ncontexts: [{name: k1, context: {cluster: k1, user: u}}]\n"
                        "clusters: [{name: k1, cluster: {certificate-authority-data: '%%%'}}]\n"
                        "users: [{name: u, user: {}}]\n"},
         "kubeconfig: certificate-authority-data is not base64"),
        ({"ca.pem": "x", "cert.pem": "x", "key.pem": "x"}, "ca.pem, cert.pem, key.pem: [X509: NO_CERTIFICATE_OR_CRL"),
        ({"ca.pem": "x", "cert.pem": "x"}, "it has neither"),
    ],
)
def test_a_bundle_carina_cannot_use_makes_the_health_unknown(tmp_path, files, reason):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    health = coes.get("kubernetes").health(cluster(), tmp_path)
    assert health.status == "UNKNOWN"
    assert health.reason.startswith(f"the credentials bundle in {tmp_path} cannot be used: ")
    assert reason in health.reason


# -- over real mutual TLS: a local HTTPS server that requires the client certificate ------------------------
def issue(common_name, *, issuer=None, ca=False, san=None, usage=ExtendedKeyUsageOID.CLIENT_AUTH, organization=None):
    """(certificate, key): a CA (issuer None, self-signed) or a leaf signed by `issuer` (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(names)
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def pem(cert=None, key=None) -> bytes:
    if cert is not None:
        return cert.public_bytes(serialization.Encoding.PEM)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki():
    ca = issue("k1-ca", ca=True)
    return {"ca": ca,
            "server": issue("kube-apiserver", issuer=ca, san="127.0.0.1", usage=ExtendedKeyUsageOID.SERVER_AUTH),
            "admin": issue("admin", issuer=ca, organization="system:masters"),
            "stranger": issue("admin", issuer=issue("another-ca", ca=True), organization="system:masters")}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        peer = dict(item[0] for item in self.connection.getpeercert()["subject"])
        self.server.seen.append((self.path, peer["commonName"]))
        status, body = self.server.answers.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server(pki, tmp_path):
    """An HTTPS server on 127.0.0.1 that requires a client certificate of the cluster's CA."""
    (tmp_path / "server").mkdir()
    for name, material in (("ca.pem", pem(pki["ca"][0])), ("server.pem", pem(pki["server"][0])),
                           ("server-key.pem", pem(key=pki["server"][1]))):
        (tmp_path / "server" / name).write_bytes(material)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server" / "server.pem", tmp_path / "server" / "server-key.pem")
    context.load_verify_locations(tmp_path / "server" / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen, server.answers = [], {"/readyz": (200, b"ok"), "/api/v1/nodes": (200, listing(1, 2))}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def probe(port, bundle, endpoint="127.0.0.1"):
    """The real plug-in, bound to the Kubernetes contract with the API on `port`."""
    contract = coes.get("kubernetes").contract
    coe = kubernetes.Kubernetes(contract | {"api_url": contract["api_url"].replace(":6443", f":{port}")})
    return coe.health(cluster(endpoint=endpoint, masters=1, nodes=2), bundle)


def pem_bundle(path, pki, client="admin"):
    path.mkdir()
    (path / "ca.pem").write_bytes(pem(pki["ca"][0]))
    (path / "cert.pem").write_bytes(pem(pki[client][0]))
    (path / "key.pem").write_bytes(pem(key=pki[client][1]))
    return path


def kubeconfig_bundle(path, pki, embedded=True):
    """A bundle holding a kubeconfig only: data embedded (as the driver writes it), or files it names."""
    path.mkdir()
    materials = {"certificate-authority": pem(pki["ca"][0]), "client-certificate": pem(pki["admin"][0]),
                 "client-key": pem(key=pki["admin"][1])}
    if embedded:
        entries = {f"{key}-data": base64.b64encode(value).decode() for key, value in materials.items()}
    else:
        (path / "pki").mkdir()
        for key, value in materials.items():
            (path / "pki" / f"{key}.pem").write_bytes(value)
        entries = {key: f"pki/{key}.pem" for key in materials}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "k1",
              "clusters": [{"name": "k1", "cluster": {"server": "https://127.0.0.1:6443", **{
                  k: v for k, v in entries.items() if k.startswith("certificate-authority")}}}],
              "users": [{"name": "k1-admin", "user": {k: v for k, v in entries.items() if k.startswith("client")}}],
              "contexts": [{"name": "other", "context": {"cluster": "none", "user": "none"}},
                           {"name": "k1", "context": {"cluster": "k1", "user": "k1-admin"}}]}
    (path / "kubeconfig").write_text(yaml.safe_dump(config))
    return path


def test_the_probe_talks_mutual_tls_with_the_bundles_pem_files(api_server, pki, tmp_path):
    health = probe(api_server.server_port, pem_bundle(tmp_path / "bundle", pki))
    assert (health.status, health.reason) == ("HEALTHY", "1 master, 2 nodes ready")
    assert api_server.seen == [("/readyz", "admin"), ("/api/v1/nodes", "admin")]


@pytest.mark.parametrize("embedded", [True, False])
def test_the_probe_talks_mutual_tls_with_the_bundles_kubeconfig(api_server, pki, tmp_path, embedded):
    health = probe(api_server.server_port, kubeconfig_bundle(tmp_path / "bundle", pki, embedded))
    assert (health.status, health.reason) == ("HEALTHY", "1 master, 2 nodes ready")
    assert api_server.seen == [("/readyz", "admin"), ("/api/v1/nodes", "admin")]


def test_the_probe_reports_what_the_real_api_answers(api_server, pki, tmp_path):
    bundle = pem_bundle(tmp_path / "bundle", pki)
    api_server.answers["/api/v1/nodes"] = (200, listing(1, 2, **{"k1-node-1": {"ready": "Unknown"}}))
    assert probe(api_server.server_port, bundle).reason == "nodes not ready: k1-node-1"
    api_server.answers["/readyz"] = (500, b"[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n")
    health = probe(api_server.server_port, bundle)
    assert (health.status, health.reason) == (
        "UNHEALTHY", f"the API https://127.0.0.1:{api_server.server_port} is not ready "
                     "(/readyz: HTTP 500: etcd failed: reason withheld)")


def test_a_client_the_api_does_not_trust_gets_no_answer(api_server, pki, tmp_path):
    health = probe(api_server.server_port, pem_bundle(tmp_path / "bundle", pki, client="stranger"))
    assert health.status == "UNHEALTHY"
    assert health.reason.startswith(f"the endpoint https://127.0.0.1:{api_server.server_port} does not answer: ")
    assert api_server.seen == []


def test_a_server_certificate_that_does_not_name_the_endpoint_is_refused(api_server, pki, tmp_path):
    health = probe(api_server.server_port, pem_bundle(tmp_path / "bundle", pki), endpoint="localhost")
    assert health.status == "UNHEALTHY"
    assert "certificate verify failed" in health.reason
    assert api_server.seen == []


def test_an_endpoint_that_does_not_listen_is_named(pki, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    health = probe(port, pem_bundle(tmp_path / "bundle", pki))
    assert health.status == "UNHEALTHY"
    assert health.reason.startswith(f"the endpoint https://127.0.0.1:{port} does not answer: ")
