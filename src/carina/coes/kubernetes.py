"""Kubernetes: the health probe. Everything else (API URL, bundle, shells) comes from its contract.

The probe uses the credentials bundle and the cluster's record only: the bundle's ca.pem, cert.pem
and key.pem (the admin client), else its kubeconfig (the current context: data embedded, or files
named relative to the kubeconfig).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import ssl
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from carina.coes import register
from carina.coes.base import Coe, Health, HTTPStatusError, https_get, mutual_tls

READY = "/readyz"
NODES = "/api/v1/nodes"
KUBECONFIG = "kubeconfig"
PEMS = ("ca.pem", "cert.pem", "key.pem")
# A node carrying one of these labels is a master (the driver sets the first; kubeadm's newer clusters the second).
MASTER_LABELS = ("node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane")


class BundleError(Exception):
    """The bundle holds no client credentials carina can use."""


def bundle_context(bundle: Path) -> ssl.SSLContext:
    """The bundle's mutual TLS: its PEM files when it has all three, else its kubeconfig's current context."""
    pems = [bundle / name for name in PEMS]
    source = ", ".join(PEMS) if all(path.is_file() for path in pems) else KUBECONFIG
    if source == KUBECONFIG and not (bundle / KUBECONFIG).is_file():
        raise BundleError(f"it has neither {', '.join(PEMS)} nor {KUBECONFIG}")
    try:
        return kubeconfig_context(bundle / KUBECONFIG) if source == KUBECONFIG else mutual_tls(*pems)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        raise BundleError(f"{source}: {problem}") from exc


def kubeconfig_context(path: Path) -> ssl.SSLContext:
    """The TLS of a kubeconfig's current context: its cluster's CA and its user's client certificate and key."""
    config = yaml.safe_load(path.read_text())
    context = _entry(config, "contexts", config.get("current-context"))
    cluster = _entry(config, "clusters", context.get("cluster"))
    user = _entry(config, "users", context.get("user"))
    base = path.parent
    tls = ssl.create_default_context(cadata=_pem(cluster, "certificate-authority", base).decode())
    with tempfile.TemporaryDirectory(prefix="carina-") as tmp:  # load_cert_chain reads files only
        files = []
        for key, name in (("client-certificate", "cert.pem"), ("client-key", "key.pem")):
            file = Path(tmp) / name
            with os.fdopen(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                out.write(_pem(user, key, base))
            files.append(str(file))
        tls.load_cert_chain(*files)
    return tls


def _entry(config: dict, kind: str, name: str | None) -> dict:
    """The entry of a kubeconfig list (contexts, clusters, users) named `name`."""
    for item in config.get(kind) or []:
        if item.get("name") == name:
            return item[kind[:-1]]
    raise ValueError(f"no {kind[:-1]} {name!r}")


def _pem(entry: dict, key: str, base: Path) -> bytes:
    """A kubeconfig's `<key>-data` (base64), else the file `<key>` names."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{key}-data is not base64: {exc}") from exc
    if entry.get(key):
        return (base / entry[key]).read_bytes()
    raise ValueError(f"no {key}")


def kube_api(bundle: Path, host: str, port: int, path: str) -> bytes:
    """GET a Kubernetes API path through the cluster endpoint with the bundle's mutual TLS; the body."""
    return https_get(bundle_context(bundle), host, port, path)


def answer(body: bytes) -> str:
    """What a refusing answer says: the failed checks of /readyz, a Status' message, else its start."""
    text = body.decode(errors="replace")
    failed = [line[3:].strip() for line in text.splitlines() if line.startswith("[-]")]
    if failed:
        return "; ".join(failed)
    try:
        return str(json.loads(text)["message"])
    except (ValueError, TypeError, KeyError):
        return text.strip()[:200]


def nodes_of(listing: dict) -> list[tuple[str, bool, bool]]:
    """(name, is master, Ready) of each node of a NodeList."""
    out = []
    for item in listing["items"]:
        meta = item.get("metadata") or {}
        labels = meta.get("labels") or {}
        conditions = (item.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        out.append((str(meta.get("name", "?")), any(label in labels for label in MASTER_LABELS), ready))
    return out


@register
class Kubernetes(Coe):
    name = "kubernetes"

    def count(self, number: int, role: str) -> str:
        """`3 masters`, `1 node`: a count in the contract's words."""
        return f"{number} {self.word(role, plural=number != 1)}"

    def health(self, cluster, bundle_dir: Path) -> Health:
        """HEALTHY when the API is ready and every node Ready, in the numbers the cluster has."""
        url = self.api_url(cluster.endpoint)
        body = self._nodes_listing(url, urlsplit(url).hostname or cluster.endpoint, Path(bundle_dir))
        if isinstance(body, Health):
            return body
        try:
            nodes = nodes_of(json.loads(body))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return Health("UNKNOWN", f"the API {url} lists nodes in a form carina cannot read ({NODES}: {exc!r})")
        down = sorted(name for name, _master, ready in nodes if not ready)
        if down:
            return Health("UNHEALTHY", f"nodes not ready: {', '.join(down)}")
        masters = sum(1 for _name, master, _ready in nodes if master)
        workers = len(nodes) - masters
        if (masters, workers) != (cluster.masters, cluster.nodes):
            return Health("UNHEALTHY", f"{self.count(masters, 'master')} and {self.count(workers, 'worker')} in the "
                                       f"cluster, {cluster.masters} and {cluster.nodes} expected")
        return Health("HEALTHY", f"{self.count(masters, 'master')}, {self.count(workers, 'worker')} ready")

    def _nodes_listing(self, url: str, host: str, bundle: Path) -> bytes | Health:
        """The API's NodeList once /readyz answers 200, else the Health that says why not."""
        try:
            kube_api(bundle, host, self.api_port, READY)
            return kube_api(bundle, host, self.api_port, NODES)
        except BundleError as exc:
            return Health("UNKNOWN", f"the credentials bundle in {bundle} cannot be used: {exc}")
        except HTTPStatusError as exc:
            what = "is not ready" if exc.path == READY else "refuses to list the nodes"
            return Health("UNHEALTHY", f"the API {url} {what} ({exc.path}: HTTP {exc.status}: {answer(exc.body)})")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return Health("UNHEALTHY", f"the endpoint {url} does not answer: {exc}")
