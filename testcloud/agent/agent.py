"""The data plane of the real Ironic and Octavia: every second, make the Docker engine match what
their APIs say (read through openstacksdk, like any other client).

- An Ironic node in provision_state ``active`` with a VIF is a host container at the VIF port's
  fixed IP, with the SSH keys of its config drive; it goes when the node leaves ``active``. A node
  in maintenance whose container is not running stays down, as failed hardware does (a test stops
  the container and sets maintenance to fail a node). VIFs
  come from ``list_node_vifs``; the ``noop`` network interface records none, so then a Neutron
  port whose device_id is the node's id or instance_uuid (or binding:host_id the node's id) counts.
- An Octavia load balancer in provisioning_status ACTIVE is an HAProxy container at its
  vip_address, configured from its listeners, pools, members and health monitors and reloaded
  (SIGUSR2 to the master) when they change. It goes when the load balancer is deleted.
- Floating IPs on those ports are extra interfaces on the public network's bridge, as for servers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import time
from pathlib import Path

from openstack import exceptions as osexc

from . import configdrive, haproxy
from .dataplane import DataPlaneError, DockerPlane, hostname_of

LOG = logging.getLogger("testcloud.agent")

HOST_IMAGE = "carina-host:bookworm-engine"
LB_IMAGE = "carina-host:bookworm-lb"
HAPROXY_CFG = "/etc/haproxy/testcloud.cfg"
HAPROXY_CMD = ["haproxy", "-W", "-db", "-f", HAPROXY_CFG]
MEMBER_PORT_PREFIX = "testcloud-lb-member-"
RETRY_AFTER = 10.0  # seconds before a container that failed is made again


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


class NeutronView:
    """Neutron as seen during one pass (each collection is listed at most once)."""

    def __init__(self, conn, plane: DockerPlane, docker_nets: dict):
        self.conn, self.plane, self.docker_nets = conn, plane, docker_nets
        self._subnets = self._fips = None
        self._networks: dict = {}

    @property
    def subnets(self) -> list:
        if self._subnets is None:
            self._subnets = list(self.conn.network.subnets())
        return self._subnets

    @property
    def fips(self) -> list:
        if self._fips is None:
            self._fips = list(self.conn.network.ips())
        return self._fips

    def network(self, net_id: str):
        if net_id not in self._networks:
            self._networks[net_id] = self.conn.network.get_network(net_id)
        return self._networks[net_id]

    def subnet_for(self, address: str, subnet_id: str | None = None):
        for sub in self.subnets:
            inside = ipaddress.ip_address(address) in ipaddress.ip_network(sub.cidr)
            if sub.id == subnet_id or (not subnet_id and inside):
                return sub
        return None

    def docker_network(self, net_id: str) -> str:
        if net_id not in self.docker_nets:
            net = self.network(net_id)
            subnets = [(s.cidr, s.gateway_ip) for s in self.subnets if s.network_id == net_id and s.ip_version == 4]
            self.docker_nets[net_id] = self.plane.ensure_network(
                net_id, net.name, subnets, bool(net.is_router_external))
        return self.docker_nets[net_id]

    def floating(self, port_ids) -> dict[str, str]:
        """{docker network: floating address} for floating IPs on these ports."""
        return {self.docker_network(f.floating_network_id): f.floating_ip_address
                for f in self.fips if f.port_id and f.port_id in port_ids}


class Agent:
    def __init__(self, conn, plane: DockerPlane, state_dir: Path | None = None, full_every: float = 30):
        self.conn, self.plane, self.state_dir, self.full_every = conn, plane, state_dir, full_every
        self.docker_nets: dict[str, str] = {}
        self.node_specs: dict[str, tuple] = {}  # node id -> (node.updated_at, spec)
        self.lb_marks: dict[str, tuple] = {}  # lb id -> (updated_at, status) last configured
        self.lb_applied: dict[str, str] = {}  # lb id -> config in the container
        self.lb_bases: dict[str, dict] = {}  # lb id -> {docker network: address} without floating IPs
        self.failed: dict[str, float] = {}  # container name -> when it last failed
        self.last_full = 0.0
        self.services: dict[str, bool] = {}  # catalog: is Ironic / Octavia there (asked every full pass)
        self.logged: dict[str, float] = {}
        self.status: dict = {}

    # -- the loop --------------------------------------------------------------------------
    def tick(self) -> None:
        if time.monotonic() - self.last_full > self.full_every:
            self.last_full = time.monotonic()
            self.node_specs.clear()
            self.lb_marks.clear()
            self.docker_nets.clear()
            self.services.clear()
        view = NeutronView(self.conn, self.plane, self.docker_nets)
        for service, step in (("baremetal", self.sync_nodes), ("load-balancer", self.sync_lbs)):
            try:
                if service not in self.services:
                    self.services[service] = self.conn.has_service(service)
                if self.services[service]:
                    step(view)
            except Exception as exc:  # a daemon: Keystone or a service may be down for a while
                self.warn("%s: %s: %s" % (service, type(exc).__name__, exc))
        self.write_status()

    def run(self, stop, interval: float = 1.0) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.tick()
            stop.wait(max(0.2, interval - (time.monotonic() - started)))

    def warn(self, message: str) -> None:
        """Log a problem once per minute, not once per pass."""
        now = time.monotonic()
        if now - self.logged.get(message, -1e9) > 60:
            self.logged[message] = now
            LOG.warning("%s", message)

    def may_retry(self, name: str) -> bool:
        return time.monotonic() - self.failed.get(name, -1e9) > RETRY_AFTER

    def containers(self, kind: str) -> dict[str, dict]:
        out = {}
        for cont in self.plane.containers(kind):
            out[cont["Labels"].get("carina.testcloud.owner", "")] = cont
        return out

    def write_status(self) -> None:
        if self.state_dir is None:
            return
        path = self.state_dir / "agent.json"
        text = json.dumps(self.status, indent=1, sort_keys=True)
        if not path.exists() or path.read_text() != text:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    # -- Ironic ----------------------------------------------------------------------------
    def node_spec(self, node, view: NeutronView) -> dict | None:
        try:
            vifs = list(self.conn.baremetal.list_node_vifs(node))
        except osexc.SDKException as exc:
            self.warn("VIFs of node %s: %s" % (node.id, exc))
            vifs = []
        ports = [p for p in (self.port(v) for v in vifs) if p is not None]
        if not ports:  # the noop network interface records no VIF: look at Neutron instead
            for device in {node.id, node.instance_id} - {None, ""}:
                ports.extend(self.conn.network.ports(device_id=device))
            if not ports:
                ports.extend(self.conn.network.ports(**{"binding:host_id": node.id}))
        ports = [p for p in ports if p.fixed_ips]
        if not ports:
            return None
        info = dict(node.instance_info or {})
        keys = configdrive.public_keys(info.get("configdrive"))
        if not keys:
            self.warn("node %s: no SSH key readable in its config drive (Ironic shows it only to roles allowed "
                      "by the show_instance_secrets policy); the host starts without one" % node.id)
        return {
            "image": self.docker_image(info.get("image_source")),
            "hostname": hostname_of(info.get("display_name") or node.name or node.id[:8]),
            "networks": [(p.network_id, p.fixed_ips[0]["ip_address"]) for p in ports],
            "ports": [p.id for p in ports], "key": "\n".join(keys)}

    def port(self, port_id: str):
        try:
            return self.conn.network.get_port(port_id)
        except osexc.NotFoundException:
            self.warn("VIF %s is not a Neutron port" % port_id)
            return None

    def docker_image(self, source) -> str:
        if not source:
            return HOST_IMAGE
        try:
            image = self.conn.image.find_image(str(source))
        except osexc.SDKException:
            image = None
        props = (image.properties or {}) if image is not None else {}
        return props.get("docker_image") or HOST_IMAGE

    def sync_nodes(self, view: NeutronView) -> None:
        have = self.containers("baremetal")
        wanted = {}
        down = set()  # in maintenance with the host not running: failed hardware, which Ironic powers nothing on
        for node in self.conn.baremetal.nodes(details=True, provision_state="active"):
            cont = have.get(node.id)
            if node.is_maintenance and (cont is None or cont["State"] != "running"):
                down.add(node.id)
                continue
            cached = self.node_specs.get(node.id)
            spec = cached[1] if cached and cached[0] == node.updated_at else self.node_spec(node, view)
            if spec is None:
                continue
            self.node_specs[node.id] = (node.updated_at, spec)
            wanted[node.id] = spec
        for node_id, spec in wanted.items():
            name = "testcloud-bm-" + node_id[:8]
            base = [(view.docker_network(net), ip) for net, ip in spec["networks"]]
            cont = have.get(node_id)
            current = cont is not None and cont["State"] == "running" and \
                cont["Labels"].get("carina.testcloud.spec") == digest(spec)
            if not current:
                if not self.may_retry(name):
                    continue
                try:
                    self.plane.run_host(name, hostname=spec["hostname"], image=spec["image"], networks=base,
                                        kind="baremetal", owner=node_id, public_key=spec["key"] or None,
                                        spec=digest(spec))
                except DataPlaneError as exc:
                    self.failed[name] = time.monotonic()
                    self.warn("node %s: %s" % (node_id, exc))
                    continue
            self.plane.sync_networks(name, dict(base, **view.floating(spec["ports"])))
            self.status.setdefault("nodes", {})[node_id] = {"container": name, "addresses": [ip for _, ip in base]}
        for node_id, cont in have.items():
            if node_id not in wanted and node_id not in down:
                self.plane.remove_host(cont["Names"][0].lstrip("/"))
                self.node_specs.pop(node_id, None)
                self.status.get("nodes", {}).pop(node_id, None)

    # -- Octavia ---------------------------------------------------------------------------
    def octavia(self, path: str) -> dict:
        resp = self.conn.load_balancer.get(path)
        osexc.raise_from_response(resp)
        return resp.json()

    def lb_parts(self, lb: dict):
        listeners = [self.octavia("/lbaas/listeners/%s" % x["id"])["listener"] for x in lb.get("listeners", [])]
        pools, members, monitors = {}, {}, {}
        for ref in lb.get("pools", []):
            pool = self.octavia("/lbaas/pools/%s" % ref["id"])["pool"]
            pools[pool["id"]] = pool
            members[pool["id"]] = self.octavia("/lbaas/pools/%s/members" % pool["id"])["members"]
            if pool.get("healthmonitor_id"):
                hm = self.octavia("/lbaas/healthmonitors/%s" % pool["healthmonitor_id"])["healthmonitor"]
                monitors[hm["id"]] = hm
        return listeners, pools, members, monitors

    def lb_networks(self, lb: dict, members: dict, view: NeutronView) -> list[tuple[str, str]]:
        """[(neutron network id, address)]: the VIP first, then a port of ours on each other
        network that members are on (as an amphora plugs member networks)."""
        vip_sub = view.subnet_for(lb["vip_address"], lb.get("vip_subnet_id")) or view.subnet_for(lb["vip_address"])
        if vip_sub is None:
            raise DataPlaneError("VIP %s of load balancer %s is on no Neutron subnet" % (lb["vip_address"], lb["id"]))
        out = [(vip_sub.network_id, lb["vip_address"])]
        seen = {vip_sub.network_id}
        for member in [m for pool_members in members.values() for m in pool_members]:
            sub = view.subnet_for(member["address"], member.get("subnet_id")) or view.subnet_for(member["address"])
            if sub is None:
                self.warn("member %s (%s) of load balancer %s is on no Neutron subnet: unreachable" % (
                    member["id"], member["address"], lb["id"]))
                continue
            if sub.network_id in seen:
                continue
            seen.add(sub.network_id)
            out.append((sub.network_id, self.member_port(lb["id"], sub)))
        return out

    def member_port(self, lb_id: str, subnet) -> str:
        name = "%s%s-%s" % (MEMBER_PORT_PREFIX, lb_id, subnet.id[:8])
        for port in self.conn.network.ports(device_id=lb_id, name=name):
            return port.fixed_ips[0]["ip_address"]
        port = self.conn.network.create_port(network_id=subnet.network_id, name=name, device_id=lb_id,
                                             device_owner="Octavia", fixed_ips=[{"subnet_id": subnet.id}])
        return port.fixed_ips[0]["ip_address"]

    def drop_member_ports(self, lb_id: str) -> None:
        for port in list(self.conn.network.ports(device_id=lb_id)):
            if (port.name or "").startswith(MEMBER_PORT_PREFIX):
                self.conn.network.delete_port(port, ignore_missing=True)

    def sync_lbs(self, view: NeutronView) -> None:
        have = self.containers("lb")
        keep = set()
        for lb in self.octavia("/lbaas/loadbalancers")["loadbalancers"]:
            status = lb["provisioning_status"]
            if status in haproxy.GONE:
                continue
            if lb["id"] in have:
                keep.add(lb["id"])  # an LB being updated keeps serving its last configuration
            if status != "ACTIVE":
                continue
            keep.add(lb["id"])
            try:
                self.sync_lb(lb, have.get(lb["id"]), view)
            except (DataPlaneError, osexc.SDKException) as exc:
                self.warn("load balancer %s: %s" % (lb["id"], exc))
        for lb_id, cont in have.items():
            if lb_id not in keep:
                self.plane.remove_host(cont["Names"][0].lstrip("/"))
                self.drop_member_ports(lb_id)
                self.lb_marks.pop(lb_id, None)
                self.lb_applied.pop(lb_id, None)
                self.lb_bases.pop(lb_id, None)
                self.status.get("loadbalancers", {}).pop(lb_id, None)

    def sync_lb(self, lb: dict, cont: dict | None, view: NeutronView) -> None:
        name = "testcloud-lb-" + lb["id"][:8]
        running = cont is not None and cont["State"] == "running"
        mark = (lb.get("updated_at"), lb["provisioning_status"])
        if self.lb_marks.get(lb["id"]) != mark or not running:
            listeners, pools, members, monitors = self.lb_parts(lb)
            config = haproxy.render(lb, listeners, pools, members, monitors)
            nets = self.lb_networks(lb, members, view)
            base = [(view.docker_network(net), ip) for net, ip in nets]
            spec = digest(nets)
            if not running or cont["Labels"].get("carina.testcloud.spec") != spec:
                if not self.may_retry(name):
                    return
                try:
                    self.plane.run_host(name, hostname="amphora-" + lb["id"][:8], image=LB_IMAGE, networks=base,
                                        kind="lb", owner=lb["id"], command=HAPROXY_CMD, engine_volume=False,
                                        spec=spec, files={HAPROXY_CFG: config}, stop_signal="SIGUSR1")
                except DataPlaneError:
                    self.failed[name] = time.monotonic()
                    raise
            elif self.lb_applied.get(lb["id"]) != config:
                self.reload(name, config)
            self.lb_applied[lb["id"]] = config
            self.lb_bases[lb["id"]] = dict(base)
            self.lb_marks[lb["id"]] = mark
            self.status.setdefault("loadbalancers", {})[lb["id"]] = {
                "container": name, "vip": lb["vip_address"], "listeners": [x["protocol_port"] for x in listeners]}
        if lb.get("vip_port_id"):
            self.plane.sync_networks(name, dict(self.lb_bases[lb["id"]], **view.floating({lb["vip_port_id"]})))

    def reload(self, name: str, config: str) -> None:
        self.plane.put_file(name, HAPROXY_CFG + ".new", config)
        code, out = self.plane.exec(name, ["haproxy", "-c", "-q", "-f", HAPROXY_CFG + ".new"])
        if code != 0:
            raise DataPlaneError("new HAProxy configuration of %s rejected: %s" % (name, out.strip()[-500:]))
        self.plane.exec(name, ["mv", HAPROXY_CFG + ".new", HAPROXY_CFG])
        self.plane.signal(name, "SIGUSR2")
        LOG.info("reloaded %s", name)
