"""What carina knows of a COE: its contract (data, from the collection) and a plug-in (Python).

Everything but the health probe comes from the contract (roles/coe_<name>/meta/contract.yml):
the API URL and its port, the bundle's files, the file per shell. A COE whose driver has no
plug-in here still works through this base class; its health is UNKNOWN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from carina import planning
from carina.errors import CarinaError

SECRET_MARKERS = ("key",)  # bundle files whose name holds one of these are private (0600)


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
        return [f for f in self.bundle_files() if any(marker in f.lower() for marker in SECRET_MARKERS)]

    def shells(self) -> dict[str, str]:
        """{shell: bundle file that sets its environment}, for the shells whose file the bundle holds."""
        basename = self.contract["credentials"]["basename"]
        files = set(self.bundle_files())
        suffixes = planning.contracts_module().SHELL_SUFFIXES  # the file per shell, as credentials_bundle writes it
        return {shell: basename + suffix for shell, suffix in suffixes.items() if basename + suffix in files}

    def env_names(self) -> list[str]:
        """The environment variables the bundle sets (credentials.env)."""
        return list(self.contract["credentials"].get("env") or {})

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
