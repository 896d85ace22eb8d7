"""Octavia status sweeper for the test cloud (runs in the test-cloud venv).

Octavia's no-op provider accepts every request and never reports back, so everything it
is given stays PENDING_*. This loop plays the provider's part: every ``--interval``
seconds it reads the objects in a PENDING_* state from Octavia's database and reports
them through Octavia's own driver-agent code (``DriverUpdater``), exactly as a provider
agent does:

- PENDING_CREATE / PENDING_UPDATE -> ACTIVE (operating status ONLINE, OFFLINE when
  disabled, NO_MONITOR for members of a pool without a health monitor);
- PENDING_DELETE -> DELETED (children of a deleted load balancer, pool or listener go
  with it, so a cascade delete leaves nothing behind and quotas are given back).

The VIP. With no-op drivers Octavia makes the VIP up: the provider answers the fixed
address ``198.0.2.5`` (or the ``vip_address`` asked for) and a random port id. Before a new
load balancer becomes ACTIVE the sweeper gives it a real one: it creates a Neutron port
(``octavia-lb-<id>``, device_owner ``Octavia``, project = the LB's) on the requested subnet
(or network; with the requested address if one was asked for) through the catalog's
``network`` endpoint as Octavia's ``[service_auth]`` user, and writes the port's address,
id, subnet and network into Octavia's ``vip`` row (``octavia_owned``). That port is deleted
with the load balancer. A port the user gave as ``vip_port_id`` (looked up in Neutron by
the API, see octavia_local.ports_from_neutron) is used as it is and kept on delete.
While Neutron does not answer, a new load balancer stays PENDING_CREATE (logged) and is
picked up as soon as it does; if Neutron refuses (unknown subnet, address taken) the load
balancer goes to ERROR. On delete, an unreachable Neutron is logged and the delete goes on.

Octavia's database is sqlite: the sweeper's writes and the API's writing requests take
the same lock file (``--db-lock``), see octavia_local.SerializedWrites.

Usage: python octavia_sweeper.py --config-file octavia.conf --noop-db FILE --db-lock FILE
                                 [--interval 0.5] [--heartbeat FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from octavia.api.drivers.driver_agent.driver_updater import DriverUpdater
from octavia.common import config
from octavia.db import api as db_apis
from octavia.db import models
from octavia_local import Neutron, NeutronRefused, NeutronUnavailable, db_write_lock, keep_noop_state_in

LOG = logging.getLogger("testcloud.sweeper")

PENDING_ACTIVE = ("PENDING_CREATE", "PENDING_UPDATE")
PENDING_DELETE = "PENDING_DELETE"
# What Octavia's no-op provider / network driver answer when nobody asked for an address.
NOOP_ADDRESSES = frozenset({"198.0.2.5", "198.51.100.1"})


@dataclass
class Status:
    """One DriverUpdater status report, built up object by object."""

    report: dict[str, list[dict]] = field(default_factory=dict)

    def add(self, kind: str, obj_id: str, provisioning: str | None, operating: str | None = None) -> None:
        entry = {"id": obj_id}
        if provisioning:
            entry["provisioning_status"] = provisioning
        if operating:
            entry["operating_status"] = operating
        self.report.setdefault(kind, []).append(entry)

    def __bool__(self) -> bool:
        return bool(self.report)


def _address_on(port: dict, subnet_id: str | None) -> tuple[str | None, str | None]:
    """The port's (address, subnet) on ``subnet_id``, else its first IPv4 one, else its first."""
    fixed = port.get("fixed_ips") or []
    for ip in fixed:
        if subnet_id and ip.get("subnet_id") == subnet_id:
            return ip.get("ip_address"), ip.get("subnet_id")
    for ip in fixed:
        if ":" not in (ip.get("ip_address") or ":"):
            return ip.get("ip_address"), ip.get("subnet_id")
    if fixed:
        return fixed[0].get("ip_address"), fixed[0].get("subnet_id")
    return None, None


class Sweeper:
    def __init__(self, interval: float, heartbeat: Path | None, lock_path: str) -> None:

        self.interval = interval
        self.lock_path = lock_path
        self.heartbeat = heartbeat
        self.db_apis = db_apis
        self.updater = DriverUpdater()
        self.neutron = Neutron()
        self._last_said: dict[str, tuple[str, float]] = {}

    # -- logging without flooding: the same message for the same object at most every 30 s
    def say(self, key: str, level: int, msg: str, *args) -> None:
        text = msg % args
        last = self._last_said.get(key)
        now = time.monotonic()
        if last and last[0] == text and now - last[1] < 30:
            return
        self._last_said[key] = (text, now)
        LOG.log(level, text)

    # -- the VIP ----------------------------------------------------------------------
    def real_vip(self, lb) -> tuple[str, dict | None]:
        """Find or make a Neutron port for a PENDING_CREATE load balancer's VIP.

        Returns (ready | wait | error, the ``vip`` row's new values or None)."""
        vip = lb.vip
        if vip is None:
            return "ready", None
        try:
            port = self.neutron.get("port", vip.port_id) if vip.port_id else None
            if port is None:
                port = self._make_port(lb)
            address, subnet_id = _address_on(port, vip.subnet_id)
        except NeutronUnavailable as e:
            self.say(lb.id, logging.WARNING, "load balancer %s stays PENDING_CREATE: Neutron: %s", lb.id, e)
            return "wait", None
        except NeutronRefused as e:
            LOG.error("load balancer %s -> ERROR: no VIP port: %s", lb.id, e)
            return "error", None
        if not address:
            LOG.error("load balancer %s -> ERROR: VIP port %s has no fixed IP", lb.id, port.get("id"))
            return "error", None
        octavia_owned = port.get("name") == f"octavia-lb-{lb.id}"
        LOG.info("load balancer %s: VIP %s on port %s (subnet %s)", lb.id, address, port["id"], subnet_id)
        return "ready", {
            "ip_address": address,
            "port_id": port["id"],
            "subnet_id": subnet_id,
            "network_id": port.get("network_id") or vip.network_id,
            "octavia_owned": octavia_owned or bool(vip.octavia_owned),
        }

    def _make_port(self, lb) -> dict:
        vip = lb.vip
        name = f"octavia-lb-{lb.id}"
        existing = self.neutron.port_named(name)  # a port from an earlier try that was not recorded
        if existing:
            return existing
        subnet = self.neutron.get("subnet", vip.subnet_id) if vip.subnet_id else None
        if subnet is not None:
            network_id = subnet["network_id"]
            fixed_ip = {"subnet_id": subnet["id"]}
        elif vip.network_id and self.neutron.get("network", vip.network_id) is not None:
            network_id = vip.network_id  # only a network was asked for: Neutron picks the subnet
            fixed_ip = {}
        else:
            raise NeutronRefused(f"neither subnet {vip.subnet_id} nor network {vip.network_id} exists in Neutron")
        if vip.ip_address and vip.ip_address not in NOOP_ADDRESSES:
            fixed_ip["ip_address"] = vip.ip_address  # the user asked for this address
        body = {
            "network_id": network_id,
            "name": name,
            "device_owner": "Octavia",
            "device_id": f"lb-{lb.id}",
            "project_id": lb.project_id,
            "admin_state_up": True,
        }
        if fixed_ip:
            body["fixed_ips"] = [fixed_ip]
        port = self.neutron.create_port(body)
        LOG.info("load balancer %s: created VIP port %s", lb.id, port.get("id"))
        return port

    def drop_vip(self, lb) -> None:
        vip = lb.vip
        if vip is None or not vip.octavia_owned or not vip.port_id:
            return
        try:
            self.neutron.delete_port(vip.port_id)
            LOG.info("load balancer %s: deleted VIP port %s", lb.id, vip.port_id)
        except (NeutronUnavailable, NeutronRefused) as e:
            LOG.warning("load balancer %s: VIP port %s not deleted (%s); deleting the LB anyway", lb.id, vip.port_id, e)

    # -- statuses ---------------------------------------------------------------------
    @staticmethod
    def _operating(obj, default: str = "ONLINE") -> str:
        return default if getattr(obj, "enabled", True) else "OFFLINE"

    def _settle(self, status: Status, kind: str, obj, operating: str = "ONLINE") -> None:
        if obj.provisioning_status in PENDING_ACTIVE:
            status.add(kind, obj.id, "ACTIVE", self._operating(obj, operating))
        elif obj.provisioning_status == PENDING_DELETE:
            status.add(kind, obj.id, "DELETED")

    def _delete_pool(self, status: Status, pool) -> None:
        for member in pool.members:
            status.add("members", member.id, "DELETED")
        if pool.health_monitor is not None:
            status.add("healthmonitors", pool.health_monitor.id, "DELETED")
        status.add("pools", pool.id, "DELETED")

    def _delete_listener(self, status: Status, listener) -> None:
        for policy in listener.l7policies:
            for rule in policy.l7rules:
                status.add("l7rules", rule.id, "DELETED")
            status.add("l7policies", policy.id, "DELETED")
        status.add("listeners", listener.id, "DELETED")

    def _pool(self, status: Status, pool) -> None:
        if pool.provisioning_status == PENDING_DELETE:
            self._delete_pool(status, pool)
            return
        monitor = pool.health_monitor
        pending = (*PENDING_ACTIVE, PENDING_DELETE)
        expected = "ONLINE" if monitor is not None and monitor.provisioning_status != PENDING_DELETE else "NO_MONITOR"
        monitor_changes = monitor is not None and monitor.provisioning_status in pending
        for member in pool.members:
            if member.provisioning_status in pending:
                self._settle(status, "members", member, expected)
            elif monitor_changes and member.enabled and member.operating_status != expected:
                status.add("members", member.id, None, expected)  # a monitor came or went
        if monitor is not None:
            self._settle(status, "healthmonitors", monitor)
        self._settle(status, "pools", pool)

    def _listener(self, status: Status, listener) -> None:
        if listener.provisioning_status == PENDING_DELETE:
            self._delete_listener(status, listener)
            return
        for policy in listener.l7policies:
            for rule in policy.l7rules:
                self._settle(status, "l7rules", rule)
            self._settle(status, "l7policies", policy)
        self._settle(status, "listeners", listener)

    def lb_status(self, lb) -> Status:
        status = Status()
        if lb.provisioning_status == PENDING_DELETE:
            for pool in lb.pools:
                self._delete_pool(status, pool)
            for listener in lb.listeners:
                self._delete_listener(status, listener)
            status.add("loadbalancers", lb.id, "DELETED")
            return status
        for pool in lb.pools:
            self._pool(status, pool)
        for listener in lb.listeners:
            self._listener(status, listener)
        self._settle(status, "loadbalancers", lb)
        return status

    def sweep_once(self) -> int:
        """Read (no lock: sqlite WAL readers never wait), talk to Neutron, then write under the lock
        the API's writing requests also take, so that no write of ours lands inside one of theirs."""
        session = self.db_apis.get_session()
        work: list[tuple[str, dict | None, Status]] = []
        try:
            with session.begin():
                lbs = (
                    session.query(models.LoadBalancer)
                    .filter(models.LoadBalancer.provisioning_status.notin_(("DELETED", "ERROR")))
                    .all()
                )
                for lb in lbs:
                    vip_update = None
                    if lb.provisioning_status == "PENDING_CREATE":
                        verdict, vip_update = self.real_vip(lb)
                        if verdict == "wait":
                            continue
                        if verdict == "error":
                            err = Status()
                            err.add("loadbalancers", lb.id, "ERROR", "ERROR")
                            work.append((lb.id, None, err))
                            continue
                    if lb.provisioning_status == PENDING_DELETE:
                        self.drop_vip(lb)
                    status = self.lb_status(lb)
                    if status or vip_update:
                        work.append((lb.id, vip_update, status))
        finally:
            session.close()
        if not work:
            return 0
        done = 0
        with db_write_lock(self.lock_path):
            for lb_id, vip_update, status in work:
                if vip_update:
                    session = self.db_apis.get_session()
                    with session.begin():
                        self.updater.repos.vip.update(session, lb_id, **vip_update)
                    session.close()
                result = self.updater.update_loadbalancer_status(status.report)
                if result.get("status_code") != "OK":
                    LOG.error("load balancer %s: status update failed: %s", lb_id, result)
                else:
                    done += 1
                    LOG.info("load balancer %s: %s", lb_id, _summary(status))
        return done

    def run(self) -> None:
        LOG.info("sweeping Octavia every %.2f s", self.interval)
        while True:
            try:
                self.sweep_once()
            except Exception:
                LOG.exception("sweep failed; trying again")
            if self.heartbeat is not None:
                self.heartbeat.touch()
            time.sleep(self.interval)


def _summary(status: Status) -> str:
    parts = []
    for kind, entries in status.report.items():
        for entry in entries:
            state = entry.get("provisioning_status") or entry.get("operating_status")
            parts.append(f"{kind[:-1]} {entry['id'][:8]}->{state}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--noop-db", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--heartbeat", type=Path)
    parser.add_argument("--db-lock", required=True, help="lock file shared with the API's writing requests")
    args = parser.parse_args()

    keep_noop_state_in(args.noop_db)
    config.init(["--config-file", args.config_file])
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"
    )
    for noisy in ("keystoneauth", "urllib3", "stevedore", "octavia"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    LOG.info("pid %d", os.getpid())
    Sweeper(args.interval, args.heartbeat, args.db_lock).run()


if __name__ == "__main__":
    main()
