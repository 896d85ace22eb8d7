#!/usr/bin/env python3
"""Smoke test of the test cloud's real services through openstacksdk (as a user would call them).

Run after `python3 testcloud/cloud.py up`, with a Python that has openstacksdk 4.22
(the test-cloud venv or the project's .venv):

    .cache/testcloud/venv/bin/python testcloud/smoke.py

Checks: a wrong password gives 401; as `demo` (cloud `devstack`) a load balancer gets a
real VIP from Neutron and the LB -> listener -> pool -> member -> health monitor chain
goes ACTIVE, then a cascade delete removes it and its VIP port; as `admin`
(`devstack-admin`) an Ironic fake-hardware node goes enroll -> manageable -> available ->
active (instance_info + config drive) -> available, and VIF attach/list/detach is probed.

Neutron: when something answers on 127.0.0.1:9696 (the emulator) the test makes its own
network and subnet there. Otherwise it serves a minimal stand-in Neutron itself (subnets,
networks, ports only), after first checking that a load balancer created while no
Neutron answers waits in PENDING_CREATE.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import openstack
from keystoneauth1 import exceptions as ks_exc

STATE = Path(__file__).resolve().parent.parent / ".cache" / "testcloud"
NEUTRON = ("127.0.0.1", 9696)
STUB_CIDR = "198.18.200.0/24"
TIMINGS: dict[str, float] = {}


def say(msg: str) -> None:
    print(msg, flush=True)


class Step:
    """Times a named step; prints it when done."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Step:
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        TIMINGS[self.name] = time.monotonic() - self.t0
        say(f"  [{TIMINGS[self.name]:5.2f} s] {self.name}{' FAILED' if exc[0] else ''}")


# ----------------------------------------------------------------------------- stand-in Neutron
class StubNeutron:
    """A minimal in-memory Neutron: one network and one subnet, ports with addresses from it."""

    def __init__(self) -> None:
        self.network_id = str(uuid.uuid4())
        self.subnet_id = str(uuid.uuid4())
        self.cidr = ipaddress.ip_network(STUB_CIDR)
        self.ports: dict[str, dict] = {}
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def subnet(self) -> dict:
        return {
            "id": self.subnet_id,
            "network_id": self.network_id,
            "cidr": STUB_CIDR,
            "ip_version": 4,
            "gateway_ip": str(self.cidr[1]),
            "name": "smoke-subnet",
        }

    def network(self) -> dict:
        return {"id": self.network_id, "name": "smoke-net", "subnets": [self.subnet_id], "status": "ACTIVE"}

    def new_port(self, body: dict) -> tuple[int, dict]:
        if body.get("network_id") != self.network_id:
            return 404, {"NeutronError": {"type": "NetworkNotFound", "message": "network not found"}}
        used = {p["fixed_ips"][0]["ip_address"] for p in self.ports.values()}
        wanted = (body.get("fixed_ips") or [{}])[0].get("ip_address")
        if wanted and wanted in used:
            return 409, {"NeutronError": {"type": "IpAddressAlreadyAllocated", "message": f"{wanted} in use"}}
        address = wanted or next(str(ip) for ip in list(self.cidr.hosts())[9:] if str(ip) not in used)
        port = {
            "id": str(uuid.uuid4()),
            "name": body.get("name", ""),
            "network_id": self.network_id,
            "device_owner": body.get("device_owner", ""),
            "device_id": body.get("device_id", ""),
            "project_id": body.get("project_id", ""),
            "status": "DOWN",
            "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [{"subnet_id": self.subnet_id, "ip_address": address}],
        }
        self.ports[port["id"]] = port
        return 201, {"port": port}

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict | None]:
        with self.lock:
            self.calls.append(f"{method} {path}")
            if m := re.fullmatch(r"/v2\.0/(subnet|network)s/([\w-]+)", path):
                found = {"subnet": (self.subnet_id, self.subnet), "network": (self.network_id, self.network)}[m[1]]
                return (200, {m[1]: found[1]()}) if m[2] == found[0] else (404, {})
            if path == "/v2.0/ports":
                if method == "POST":
                    return self.new_port(body.get("port", {}))
                ports = [p for p in self.ports.values() if "name" not in query or p["name"] == query["name"][0]]
                return 200, {"ports": ports}
            if (m := re.fullmatch(r"/v2\.0/ports/([\w-]+)", path)) and m[1] in self.ports:
                if method == "DELETE":
                    del self.ports[m[1]]
                    return 204, None
                return 200, {"port": self.ports[m[1]]}
            return 404, {"NeutronError": {"type": "NotFound", "message": f"{path} not found"}}

    def start(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                code, payload = stub.handle(self.command, url.path, parse_qs(url.query), body)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(NEUTRON, Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def neutron_answers() -> bool:
    try:
        with socket.create_connection(NEUTRON, timeout=1):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- checks
def check_wrong_password(facts: dict) -> None:
    with Step("wrong password -> 401"):
        conn = openstack.connect(
            auth_url=facts["auth_url"],
            username="demo",
            password="not-the-password",  # noqa: S106
            project_name="demo",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name=facts["region"],
            identity_api_version="3",
        )
        # conn.authorize() wraps keystoneauth's error in SDKException; a first API call raises it as is.
        for what, call in (
            ("authorize()", conn.authorize),
            ("load_balancers()", lambda: list(conn.load_balancer.load_balancers())),
        ):
            try:
                call()
            except (ks_exc.Unauthorized, openstack.exceptions.SDKException) as e:
                say(f"    {what}: {type(e).__module__}.{type(e).__name__}: {e}")
                assert "HTTP 401" in str(e), e
            else:
                raise AssertionError("a wrong password was accepted")


class StubSide:
    """Neutron = the stand-in above (started later, after the PENDING_CREATE check)."""

    label = "stand-in Neutron"

    def __init__(self) -> None:
        self.stub = StubNeutron()
        self.subnet_id = self.stub.subnet_id
        self.cidr = STUB_CIDR

    def port(self, port_id: str) -> dict | None:
        return self.stub.ports.get(port_id)

    def user_port(self) -> dict:
        return self.stub.new_port({"network_id": self.stub.network_id, "name": "smoke-user-vip"})[1]["port"]

    def cleanup(self) -> None:
        self.stub.stop()


class EmulatorSide:
    """Neutron = the emulator: a network, a subnet and ports of our own there, as demo."""

    label = "emulator"

    def __init__(self) -> None:
        self.conn = openstack.connect(cloud="devstack")
        self.net = self.conn.network.create_network(name=f"smoke-net-{uuid.uuid4().hex[:6]}")
        self.cidr = "198.18.201.0/24"
        subnet = self.conn.network.create_subnet(
            network_id=self.net.id, name="smoke-subnet", ip_version=4, cidr=self.cidr
        )
        self.subnet_id = subnet.id
        self.made: list[str] = []

    def port(self, port_id: str) -> dict | None:
        found = self.conn.network.find_port(port_id, ignore_missing=True)
        return found.to_dict() if found else None

    def user_port(self) -> dict:
        port = self.conn.network.create_port(
            network_id=self.net.id, name="smoke-user-vip", fixed_ips=[{"subnet_id": self.subnet_id}]
        )
        self.made.append(port.id)
        return port.to_dict()

    def cleanup(self) -> None:
        for port_id in self.made:
            self.conn.network.delete_port(port_id, ignore_missing=True)
        self.conn.network.delete_subnet(self.subnet_id, ignore_missing=True)
        self.conn.network.delete_network(self.net.id, ignore_missing=True)


def check_octavia(side: StubSide | EmulatorSide) -> None:
    conn = openstack.connect(cloud="devstack")
    lbs = conn.load_balancer

    def settle(lb_id: str) -> object:
        return lbs.wait_for_load_balancer(lb_id, status="ACTIVE", failures=["ERROR"], interval=0.3, wait=60)

    with Step("LB create (vip_subnet_id)"):
        lb = lbs.create_load_balancer(name="smoke-lb", vip_subnet_id=side.subnet_id)
        say(
            f"    created {lb.id}: {lb.provisioning_status}, vip_address as created = {lb.vip_address}, "
            f"vip_port_id = {lb.vip_port_id}"
        )
    if isinstance(side, StubSide):
        with Step("no Neutron: LB stays PENDING_CREATE"):
            time.sleep(2.5)
            still = lbs.get_load_balancer(lb.id)
            say(f"    after 2.5 s without Neutron: {still.provisioning_status}")
            assert still.provisioning_status == "PENDING_CREATE"
        side.stub.start()
        say("    stand-in Neutron started on 127.0.0.1:9696")
    with Step("LB ACTIVE with a Neutron VIP"):
        lb = settle(lb.id)
        say(
            f"    {lb.provisioning_status}/{lb.operating_status}: vip_address={lb.vip_address} "
            f"vip_port_id={lb.vip_port_id} vip_network_id={lb.vip_network_id}"
        )
        assert ipaddress.ip_address(lb.vip_address) in ipaddress.ip_network(side.cidr), lb.vip_address
        port = side.port(lb.vip_port_id)
        assert port and port["name"] == f"octavia-lb-{lb.id}", port
        say(f"    Neutron port {port['id']} {port['name']} device_owner={port['device_owner']}")
    with Step("listener TCP 2376"):
        listener = lbs.create_listener(loadbalancer_id=lb.id, name="smoke-listener", protocol="TCP", protocol_port=2376)
        settle(lb.id)
    with Step("pool ROUND_ROBIN"):
        pool = lbs.create_pool(listener_id=listener.id, name="smoke-pool", protocol="TCP", lb_algorithm="ROUND_ROBIN")
        settle(lb.id)
    with Step("member"):
        member_ip = str(list(ipaddress.ip_network(side.cidr).hosts())[99])
        member = lbs.create_member(
            pool.id, name="smoke-member", address=member_ip, protocol_port=2376, subnet_id=side.subnet_id
        )
        settle(lb.id)
        say(f"    member {lbs.get_member(member.id, pool.id).operating_status} (no health monitor yet)")
    with Step("health monitor TCP"):
        hm = lbs.create_health_monitor(pool_id=pool.id, name="smoke-hm", type="TCP", delay=5, timeout=3, max_retries=3)
        settle(lb.id)
        got = lbs.get_health_monitor(hm.id)
        assert got.provisioning_status == "ACTIVE", got.provisioning_status
        member_now = lbs.get_member(member.id, pool.id)
        say(
            f"    health monitor {got.provisioning_status}/{got.operating_status}; "
            f"listener {lbs.get_listener(listener.id).provisioning_status}; "
            f"pool {lbs.get_pool(pool.id).provisioning_status}; member {member_now.operating_status}"
        )
    with Step("LB delete cascade"):
        lbs.delete_load_balancer(lb.id, cascade=True)
        lbs.wait_for_delete(lb, interval=0.3, wait=60)
        assert side.port(lb.vip_port_id) is None, "VIP port left behind"
        say("    VIP port deleted from Neutron")
    probe_vip_port_id(lbs, side, settle)


def probe_vip_port_id(lbs, side: StubSide | EmulatorSide, settle) -> None:
    """A VIP port the user made in Neutron (vip_port_id)."""
    port = side.user_port()
    address = port["fixed_ips"][0]["ip_address"]
    with Step("LB create with vip_port_id"):
        lb = lbs.create_load_balancer(name="smoke-lb-port", vip_port_id=port["id"])
        say(f"    created: vip_address={lb.vip_address} vip_port_id={lb.vip_port_id} (the port has {address})")
        lb = settle(lb.id)
        assert (lb.vip_address, lb.vip_port_id) == (address, port["id"]), (lb.vip_address, lb.vip_port_id)
        lbs.delete_load_balancer(lb.id, cascade=True)
        lbs.wait_for_delete(lb, interval=0.3, wait=60)
        kept = side.port(port["id"]) is not None
        say(f"    ACTIVE with the user's port, then deleted; the user's port is kept: {kept}")
        assert kept


def check_ironic() -> None:
    admin = openstack.connect(cloud="devstack-admin")
    bm = admin.baremetal
    with Step("ironic enroll fake-hardware node"):
        node = bm.create_node(
            name=f"smoke-node-{uuid.uuid4().hex[:6]}",
            driver="fake-hardware",
            resource_class="baremetal",
            properties={"cpus": 2, "memory_mb": 4096, "local_gb": 20, "cpu_arch": "x86_64"},
        )
        say(f"    {node.id}: {node.provision_state}, network_interface={node.network_interface}")
        assert node.provision_state == "enroll"
    with Step("manage -> manageable"):
        node = bm.set_node_provision_state(node, "manage", wait=True, timeout=60)
        assert node.provision_state == "manageable", node.provision_state
    with Step("provide -> available"):
        node = bm.set_node_provision_state(node, "provide", wait=True, timeout=60)
        assert node.provision_state == "available", node.provision_state
    probe_vif(bm, node)
    with Step("instance_info + deploy with config drive -> active"):
        bm.update_node(
            node,
            instance_info={
                "image_source": "http://198.18.0.1/images/debian.qcow2",
                "image_checksum": "0" * 32,
                "root_gb": 10,
            },
        )
        config_drive = {
            "meta_data": {
                "uuid": node.id,
                "name": "smoke",
                "public_keys": {"smoke": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKey smoke"},
            },
            "user_data": "#cloud-config\n",
        }
        node = bm.set_node_provision_state(node, "active", config_drive=config_drive, wait=True, timeout=90)
        assert node.provision_state == "active", node.provision_state
        node = bm.get_node(node.id)
        say(
            f"    {node.provision_state}, power_state={node.power_state}, instance_info keys="
            f"{sorted(node.instance_info)}"
        )
    with Step("undeploy (deleted) -> available"):
        node = bm.set_node_provision_state(node, "deleted", wait=True, timeout=90)
        assert node.provision_state == "available", node.provision_state
    with Step("node delete"):
        bm.delete_node(node)


def probe_vif(bm, node) -> None:
    vif = str(uuid.uuid4())
    with Step("probe: VIF attach (noop network interface)"):
        try:
            bm.attach_vif_to_node(node, vif)
            say(f"    attach_vif_to_node({vif[:8]}...): accepted")
        except Exception as e:
            say(f"    attach_vif_to_node: {type(e).__name__}: {e}")
            return
        say(f"    list_node_vifs -> {bm.list_node_vifs(node)}")
        try:
            bm.detach_vif_from_node(node, vif, ignore_missing=False)
            say("    detach_vif_from_node: accepted")
        except Exception as e:
            say(f"    detach_vif_from_node: {type(e).__name__}: {e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", choices=["octavia", "ironic"], action="append", default=[])
    args = parser.parse_args()
    facts = json.loads((STATE / "cloud.json").read_text())
    os.environ["OS_CLIENT_CONFIG_FILE"] = facts["clouds_yaml"]
    os.environ.pop("OS_CLOUD", None)
    started = time.monotonic()
    say(f"test cloud at {facts['auth_url']}")
    check_wrong_password(facts)
    side: StubSide | EmulatorSide | None = None
    try:
        if "octavia" not in args.skip:
            side = EmulatorSide() if neutron_answers() else StubSide()
            say(f"Neutron: {side.label}")
            check_octavia(side)
        if "ironic" not in args.skip:
            check_ironic()
    finally:
        if side:
            side.cleanup()
    say(f"smoke test passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
