"""What carina knows of a COE: its contract (data, from the collection) and a plug-in (Python).

Everything but the health probe comes from the contract (roles/coe_<name>/meta/contract.yml):
the API URL and its port, the bundle's files, the file per shell. A COE whose driver has no
plug-in here still works through this base class; its health is UNKNOWN.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from carina import planning
from carina.errors import CarinaError

SECRET_MARKERS = ("key",)  # bundle files whose name holds one of these are private (0600)
# How --option NAME=VALUE text becomes a bool option's value; other text is left for the planning rules to refuse.
BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
TIMEOUT = 5  # seconds a health probe waits for the endpoint


class HTTPStatusError(ValueError):
    """The endpoint answered, with another status than 200."""

    def __init__(self, path: str, status: int, body: bytes):
        super().__init__(f"{path}: HTTP {status} {body[:200]!r}")
        self.path, self.status, self.body = path, status, body


def https_get(context: ssl.SSLContext, host: str, port: int, path: str) -> bytes:
    """The body of a GET over TLS (the bundle's context), 200 only; raises OSError, HTTPException, HTTPStatusError."""
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise HTTPStatusError(path, response.status, body)
        return body
    finally:
        conn.close()


def mutual_tls(cafile: Path, certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A client context trusting the cluster's CA and presenting the bundle's client certificate."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


@dataclass
class Health:
    status: str  # HEALTHY, UNHEALTHY, UNKNOWN
    reason: str


class Coe:
    """A COE as carina drives it. Subclasses set `name` and override health(); see carina.coes."""

    name: ClassVar[str] = ""

    def __init__(self, contract: dict):
        self.contract = contract
        if not self.name:
            self.name = contract["name"]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} contract v{self.version}>"

    # -- from the contract ------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.contract.get("version", 0))

    @property
    def title(self) -> str:
        return str(self.contract.get("title", self.name))

    def word(self, role: str, plural: bool = False) -> str:
        """The COE's word for a generic role (master or worker)."""
        return self.contract["roles"][role]["plural" if plural else "word"]

    def api_url(self, endpoint: str) -> str:
        """The URL the COE's own tools use, from the contract's template; '' without an endpoint."""
        return self.contract["api_url"].format(endpoint=endpoint) if endpoint else ""

    @property
    def api_port(self) -> int:
        """The port of the API URL, parsed from the contract's template."""
        url = urlsplit(self.contract["api_url"].format(endpoint="endpoint.invalid"))
        if url.port is None:
            raise CarinaError(f"coe {self.name}: the contract's api_url {self.contract['api_url']!r} names no port")
        return url.port

    def bundle_files(self) -> list[str]:
        """The files of the credentials bundle (credentials.files)."""
        return list(self.contract["credentials"]["files"])

    def secret_files(self) -> list[str]:
        """The bundle files that hold a private key: names holding "key", and those credentials.secrets lists."""
        listed = set(self.contract["credentials"].get("secrets") or [])
        return [f for f in self.bundle_files()
                if f in listed or any(marker in f.lower() for marker in SECRET_MARKERS)]

    def shells(self) -> dict[str, str]:
        """{shell: bundle file that sets its environment}, for the shells whose file the bundle holds."""
        basename = self.contract["credentials"]["basename"]
        files = set(self.bundle_files())
        suffixes = planning.contracts_module().SHELL_SUFFIXES  # the file per shell, as credentials_bundle writes it
        return {shell: basename + suffix for shell, suffix in suffixes.items() if basename + suffix in files}

    def env_names(self) -> list[str]:
        """The environment variables the bundle sets (credentials.env)."""
        return list(self.contract["credentials"].get("env") or {})

    def options(self) -> dict[str, dict]:
        """{option name: its rule (type, default, fixed, description...)}: the COE's own options (options)."""
        return dict(self.contract.get("options") or {})

    def option_values(self, given: dict) -> dict:
        """Options given as text (--option NAME=VALUE) typed by the contract: int and bool ones converted,
        the others kept. Text that does not convert, and unknown names, are kept as they are, for the
        planning rules to refuse with their own message."""
        rules = self.options()
        return {name: _typed(value, (rules.get(name) or {}).get("type", "str")) for name, value in given.items()}

    # -- using a bundle ---------------------------------------------------------------------
    def env(self, bundle_dir: Path, shell: str) -> str:
        """What to eval in `shell` to point the COE's client at the cluster."""
        shells = self.shells()
        if shell not in shells:
            raise CarinaError(f"shell {shell!r}: choose one of {', '.join(sorted(shells))}")
        with open(Path(bundle_dir) / shells[shell], newline="") as handle:  # cmd keeps its CRLF
            text = handle.read()
        return text.replace("\r\n", "\n") if shell != "cmd" else text

    def health(self, cluster, bundle_dir: Path) -> Health:
        """The cluster as its COE sees it; `cluster` is a carina.store.Cluster that is *_COMPLETE."""
        return Health("UNKNOWN", f"carina has no health probe for coe {self.name}")


def _typed(value, kind: str):
    if not isinstance(value, str):
        return value
    text = value.strip()
    if kind == "bool":
        return BOOL_WORDS.get(text.lower(), value)
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            return value
    return value
