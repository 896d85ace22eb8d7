"""What the test cloud changes around Octavia's no-op drivers (API process and sweeper).

- :func:`keep_noop_state_in`: Octavia's no-op network and compute drivers share a sqlite
  file at a fixed path under /tmp; keep it under ``.cache/testcloud/`` instead.
- :func:`ports_from_neutron`: the no-op network driver answers every port lookup with an
  empty port, so a load balancer created with ``vip_port_id`` is refused ("VIP port's
  subnet could not be determined"). With this, a port that exists in the cloud's Neutron
  (the emulator) is answered as Neutron describes it (network, fixed IPs); anything else
  still gets the no-op answer.
- :class:`Neutron`: the few Neutron calls both need, with Octavia's ``[service_auth]`` user.
- :class:`SerializedWrites` / :func:`db_write_lock`: Octavia's database is sqlite (WAL). A
  transaction that read and then writes fails at once with "database is locked" when
  another process committed in between; so the API's writing requests and the sweeper's
  writes take turns on one lock file. Reads need no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator

import sqlalchemy
from keystoneauth1 import exceptions as ks_exc
from octavia.common import keystone
from octavia.compute.drivers.noop_driver import driver as noop_compute
from octavia.network import data_models as n_models
from octavia.network.drivers.noop_driver import driver as noop_network
from oslo_config import cfg

_FIXED_URL = "sqlite:////tmp/octavia-network-noop.db"
LOG = logging.getLogger("testcloud.octavia")


def keep_noop_state_in(path: str) -> None:
    """Make Octavia's no-op drivers open ``path`` instead of /tmp/octavia-network-noop.db."""
    real_create_engine = sqlalchemy.create_engine

    def create_engine(url, *args, **kwargs):
        if str(url) == _FIXED_URL:
            url = "sqlite:///" + path
        return real_create_engine(url, *args, **kwargs)

    noop_network.create_engine = create_engine
    noop_compute.create_engine = create_engine


class NeutronUnavailable(Exception):
    """Neutron did not answer (or answered 5xx): try again later."""


class NeutronRefused(Exception):
    """Neutron answered 4xx: the request cannot succeed as it is."""


class Neutron:
    """Neutron through the catalog's ``network`` endpoint, as Octavia's ``[service_auth]`` user."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._session = None

    @property
    def session(self):
        if self._session is None:
            self._session = keystone.KeystoneSession().get_session()
        return self._session

    @staticmethod
    def _filter() -> dict:
        found = {"service_type": "network", "interface": "public"}
        region = cfg.CONF.service_auth.region_name if "region_name" in cfg.CONF.service_auth else None
        if region:
            found["region_name"] = region
        return found

    def _call(self, method: str, path: str, body: dict | None = None):
        try:
            resp = self.session.request(
                path,
                method,
                json=body,
                endpoint_filter=self._filter(),
                raise_exc=False,
                connect_retries=0,
                timeout=self.timeout,
            )
        except ks_exc.ClientException as e:  # connection refused, timeout, no endpoint, auth failure
            raise NeutronUnavailable(f"{method} {path}: {e}") from e
        if resp.status_code >= 500:
            raise NeutronUnavailable(f"{method} {path}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp

    def get(self, kind: str, obj_id: str) -> dict | None:
        resp = self._call("GET", f"/v2.0/{kind}s/{obj_id}")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise NeutronRefused(f"GET {kind} {obj_id}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp.json()[kind]

    def port_named(self, name: str) -> dict | None:
        resp = self._call("GET", f"/v2.0/ports?name={name}")
        if resp.status_code >= 400:
            raise NeutronRefused(f"GET ports?name={name}: HTTP {resp.status_code} {resp.text[:200]}")
        ports = [p for p in resp.json().get("ports", []) if p.get("name") == name]
        return ports[0] if ports else None

    def create_port(self, body: dict) -> dict:
        resp = self._call("POST", "/v2.0/ports", {"port": body})
        if resp.status_code >= 400:
            raise NeutronRefused(f"POST port: HTTP {resp.status_code} {resp.text[:300]}")
        return resp.json()["port"]

    def delete_port(self, port_id: str) -> None:
        resp = self._call("DELETE", f"/v2.0/ports/{port_id}")
        if resp.status_code >= 400 and resp.status_code != 404:
            raise NeutronRefused(f"DELETE port {port_id}: HTTP {resp.status_code} {resp.text[:200]}")


def ports_from_neutron() -> None:
    """Let the no-op network driver describe ports that exist in Neutron as Neutron does."""
    neutron = Neutron(timeout=3.0)
    noop_get_port = noop_network.NoopManager.get_port

    def get_port(self, port_id):
        try:
            found = neutron.get("port", port_id)
        except (NeutronUnavailable, NeutronRefused) as e:
            LOG.warning("port %s: Neutron not asked (%s); no-op answer", port_id, e)
            found = None
        if not found:
            return noop_get_port(self, port_id)
        return n_models.Port(
            id=found["id"],
            name=found.get("name"),
            device_id=found.get("device_id") or None,
            device_owner=found.get("device_owner"),
            mac_address=found.get("mac_address"),
            network_id=found.get("network_id"),
            status=found.get("status"),
            project_id=found.get("project_id") or found.get("tenant_id"),
            admin_state_up=found.get("admin_state_up"),
            fixed_ips=[
                n_models.FixedIP(subnet_id=ip.get("subnet_id"), ip_address=ip.get("ip_address"))
                for ip in found.get("fixed_ips") or []
            ],
            qos_policy_id=found.get("qos_policy_id"),
            security_group_ids=found.get("security_groups") or [],
        )

    noop_network.NoopManager.get_port = get_port


@contextlib.contextmanager
def db_write_lock(path: str) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` (a new open file each time, so threads exclude each other too)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class SerializedWrites:
    """WSGI middleware: requests that may write (not GET/HEAD/OPTIONS) run under :func:`db_write_lock`."""

    READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app, lock_path: str) -> None:
        self.app = app
        self.lock_path = lock_path

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD", "GET") in self.READ_ONLY:
            return self.app(environ, start_response)
        with db_write_lock(self.lock_path):
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)  # the whole request is done before the lock goes
            finally:
                if hasattr(result, "close"):
                    result.close()
        return [body]
