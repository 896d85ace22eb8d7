"""`carina serve`: the service in the foreground, from a config file, until SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import ClassVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from carina import paths
from carina.errors import CarinaError

LOG = logging.getLogger("carina.service")
DEFAULT_PORT = 9511  # Magnum's


@dataclass
class Config:
    """What `carina serve` reads from its config file (TOML), sections [service], [keystone], [cloud]."""

    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    home: Path = field(default_factory=paths.home)
    pidfile: Path | None = None
    proxy_headers: bool = False  # behind a TLS proxy: URLs take X-Forwarded-Proto and X-Forwarded-Host
    keystone: dict = field(default_factory=dict)  # auth_url, and the service's own user to validate tokens
    cloud: dict = field(default_factory=dict)  # provider openstack: clouds.yaml name and defaults

    SECTIONS: ClassVar[dict[str, tuple[str, ...]]] = {"service": ("bind", "port", "home", "pidfile", "proxy_headers"),
                "keystone": ("auth_url", "username", "password", "project_name", "user_domain_name",
                             "project_domain_name", "region_name", "interface", "admin_roles", "trust_roles"),
                "cloud": ("name", "image", "flavor", "master_flavor", "external_network", "fixed_network",
                          "fixed_subnet")}

    @classmethod
    def load(cls, path: Path | None, **overrides) -> Config:
        data: dict = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text())
            except OSError as exc:
                raise CarinaError(f"config {path}: {exc.strerror}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise CarinaError(f"config {path} is not TOML: {exc}") from exc
        problems = [f"unknown section [{name}]" for name in data if name not in cls.SECTIONS]
        for section, keys in cls.SECTIONS.items():
            given = data.get(section) or {}
            if not isinstance(given, dict):
                problems.append(f"[{section}] is not a table")
                continue
            problems += [f"unknown key {key!r} in [{section}] (known: {', '.join(keys)})"
                         for key in given if key not in keys]
        if problems:
            raise CarinaError(f"config {path}: " + "; ".join(problems))
        service = data.get("service") or {}
        config = cls(keystone=dict(data.get("keystone") or {}), cloud=dict(data.get("cloud") or {}))
        for key in ("bind", "port", "home", "pidfile", "proxy_headers"):
            value = overrides.get(key)
            if value is None:
                value = service.get(key)
            if value is not None:
                setattr(config, key, value)
        config.home = Path(config.home).expanduser()
        config.pidfile = Path(config.pidfile).expanduser() if config.pidfile else None
        config.check()
        return config

    def check(self) -> None:
        if not isinstance(self.proxy_headers, bool):
            raise CarinaError(f"proxy_headers {self.proxy_headers!r}: true or false")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise CarinaError(f"port {self.port!r}: a number from 0 to 65535")
        try:
            address = ipaddress.ip_address(self.bind)
        except ValueError as exc:
            raise CarinaError(f"bind {self.bind!r}: an IP address to listen on") from exc
        if self.keystone:
            missing = [key for key in ("auth_url", "username", "password") if not self.keystone.get(key)]
            if missing:
                raise CarinaError(f"[keystone] needs {', '.join(missing)}")
        elif not address.is_loopback:
            raise CarinaError(f"bind {self.bind}: without [keystone] the service has no users to tell apart, so "
                              f"it listens on a loopback address only (127.0.0.1)")


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class QuietHandler(WSGIRequestHandler):
    """One log line per request (method, path, status): never headers, so never a token."""

    def log_message(self, format, *args):
        LOG.info("%s %s", self.address_string(), format % args)

    def address_string(self) -> str:
        return str(self.client_address[0])


def address_family(bind: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(bind).version == 6 else socket.AF_INET


def serve(config: Config, app, ready=None) -> None:
    """Serve app until SIGTERM/SIGINT; `ready(server)` is called once the socket listens."""
    Server.address_family = address_family(config.bind)
    try:
        server = make_server(config.bind, config.port, app, server_class=Server, handler_class=QuietHandler)
    except OSError as exc:
        raise CarinaError(f"cannot listen on {config.bind}:{config.port}: {exc.strerror}") from exc
    stop = threading.Event()

    def on_signal(_signum, _frame):
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    if config.pidfile:
        write_pidfile(config.pidfile)
    try:
        if ready:
            ready(server)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if config.pidfile:
            with contextlib.suppress(OSError):
                if config.pidfile.read_text().strip() == str(os.getpid()):
                    config.pidfile.unlink()


def write_pidfile(path: Path) -> None:
    """The pid, in a file that names no other live process: refuse when one already runs from it."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip())
        if pid != os.getpid() and b"carina" in Path(f"/proc/{pid}/cmdline").read_bytes():
            raise CarinaError(f"pidfile {path}: carina serve already runs as pid {pid}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def main_log() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
