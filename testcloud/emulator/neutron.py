"""Neutron (network v2.0): networks, subnets, ports, security groups and rules, floating IPs,
routers (bookkeeping only), extensions and quotas, with IPAM over the subnets' allocation pools."""

from __future__ import annotations

import ipaddress
import random

from .core import ApiError, Request, Response, Service, new_id, now_iso, seed_id

DEFAULT_QUOTA = {"network": 100, "subnet": 100, "port": 100, "router": 10, "floatingip": 10,
                 "security_group": 10, "security_group_rule": 100}
QUOTA_OF = {"networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
            "floatingips": "floatingip", "security_groups": "security_group",
            "security_group_rules": "security_group_rule"}
EXTENSIONS = {
    "external-net": "Neutron external network",
    "router": "Neutron L3 Router",
    "extraroute": "Neutron Extra Route",
    "security-group": "security-group",
    "quotas": "Quota management support",
    "quota_details": "Quota details management support",
    "port-security": "Port Security",
    "allowed-address-pairs": "Allowed Address Pairs",
    "binding": "Port Binding",
    "standard-attr-description": "standard-attr-description",
    "standard-attr-timestamp": "Resource timestamps",
    "standard-attr-revisions": "Resource revision numbers",
    "project-id": "project_id field enabled",
}
# collection in the URL -> (store name, body key, error name)
RESOURCES = {
    "networks": ("networks", "network", "Network"),
    "subnets": ("subnets", "subnet", "Subnet"),
    "ports": ("ports", "port", "Port"),
    "security-groups": ("security_groups", "security_group", "SecurityGroup"),
    "security-group-rules": ("security_group_rules", "security_group_rule", "SecurityGroupRule"),
    "floatingips": ("floatingips", "floatingip", "FloatingIP"),
    "routers": ("routers", "router", "Router"),
}
PAGING = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse", "verbose"}
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "gre": 47, "esp": 50, "ah": 51,
             "vrrp": 112, "ipv6-icmp": 58}

PUBLIC_NET, PUBLIC_SUBNET = seed_id("network/public"), seed_id("subnet/public-subnet")
PRIVATE_NET, PRIVATE_SUBNET = seed_id("network/private"), seed_id("subnet/private-subnet")
ROUTER = seed_id("router/router1")


def _bad(message: str, kind: str = "HTTPBadRequest") -> ApiError:
    return ApiError(400, message, kind)


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1", "yes")


class Neutron(Service):
    name = "neutron"

    def __init__(self, store, validator):
        super().__init__(store, validator)
        self.on_floating_change = lambda port_ids: None  # set by the emulator: re-plumbs containers
        self.on_network_delete = lambda net_id: None
        self.taken_elsewhere = lambda net_id: set()  # addresses the data plane has in use already
        self.route("GET", "/", self.versions, auth=False)
        self.route("GET", "/v2.0", self.resources, auth=False)
        self.route("GET", "/v2.0/extensions", self.list_extensions)
        self.route("GET", "/v2.0/extensions/{alias}", self.get_extension)
        self.route("GET", "/v2.0/quotas", self.list_quotas)
        self.route("GET", "/v2.0/quotas/{project}", self.get_quota)
        self.route("GET", "/v2.0/quotas/{project}/default", self.get_quota_default)
        self.route("GET", "/v2.0/quotas/{project}/details", self.get_quota_details)
        self.route("PUT", "/v2.0/quotas/{project}", self.put_quota)
        self.route("DELETE", "/v2.0/quotas/{project}", self.delete_quota)
        self.route("PUT", "/v2.0/routers/{id}/add_router_interface", self.add_router_interface)
        self.route("PUT", "/v2.0/routers/{id}/remove_router_interface", self.remove_router_interface)
        for coll in RESOURCES:
            self.route("GET", "/v2.0/%s" % coll, self.list_resource)
            self.route("POST", "/v2.0/%s" % coll, self.create_resource)
            self.route("GET", "/v2.0/%s/{id}" % coll, self.get_resource)
            self.route("PUT", "/v2.0/%s/{id}" % coll, self.update_resource)
            self.route("DELETE", "/v2.0/%s/{id}" % coll, self.delete_resource)
        self.seed()

    # -- plumbing -----------------------------------------------------------------------
    def error_body(self, err):
        kind = err.kind or {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "PolicyNotAuthorized",
                            404: "HTTPNotFound", 405: "HTTPMethodNotAllowed", 409: "HTTPConflict"}.get(
            err.status, "HTTPInternalServerError")
        return {"NeutronError": {"type": kind, "message": err.message, "detail": ""}}

    def prepare(self, req):
        if req.ctx and req.ctx.project_id:
            with self.store.lock:
                self.default_security_group(req.ctx.project_id)

    def coll(self, name: str) -> dict:
        return self.store.coll("neutron", name)

    @staticmethod
    def stamp(obj: dict, project_id: str | None) -> dict:
        ts = now_iso()
        obj.setdefault("id", new_id())
        obj.update(project_id=project_id or "", tenant_id=project_id or "", created_at=ts, updated_at=ts,
                   revision_number=0)
        obj.setdefault("description", "")
        obj.setdefault("tags", [])
        return obj

    @staticmethod
    def touch(obj: dict) -> None:
        obj["updated_at"] = now_iso()
        obj["revision_number"] = obj.get("revision_number", 0) + 1

    def seed(self) -> None:
        with self.store.lock:
            nets = self.coll("networks")
            if PRIVATE_NET in nets:
                return
            for net_id, name, external in ((PRIVATE_NET, "private", False), (PUBLIC_NET, "public", True)):
                nets[net_id] = self.stamp(self.network_body(
                    {"id": net_id, "name": name, "shared": not external, "router:external": external}), None)
            subs = self.coll("subnets")
            for sub_id, net_id, name, cidr, pool in (
                    (PRIVATE_SUBNET, PRIVATE_NET, "private-subnet", "198.18.100.0/24", (10, 250)),
                    (PUBLIC_SUBNET, PUBLIC_NET, "public-subnet", "198.18.101.0/24", (10, 250))):
                net = ipaddress.ip_network(cidr)
                subs[sub_id] = self.stamp({
                    "id": sub_id, "name": name, "network_id": net_id, "ip_version": 4, "cidr": cidr,
                    "gateway_ip": str(net[1]), "enable_dhcp": True, "dns_nameservers": [], "host_routes": [],
                    "allocation_pools": [{"start": str(net[pool[0]]), "end": str(net[pool[1]])}],
                    "subnetpool_id": None, "ipv6_address_mode": None, "ipv6_ra_mode": None,
                    "service_types": []}, None)
                nets[net_id]["subnets"].append(sub_id)
            self.coll("routers")[ROUTER] = self.stamp({
                "id": ROUTER, "name": "router1", "admin_state_up": True, "status": "ACTIVE", "routes": [],
                "external_gateway_info": {"network_id": PUBLIC_NET, "enable_snat": True, "external_fixed_ips": [
                    {"subnet_id": PUBLIC_SUBNET, "ip_address": "198.18.101.2"}]}}, None)
            self.coll("ports")[new_id()] = self.port_body(
                {"network_id": PRIVATE_NET, "fixed_ips": [{"subnet_id": PRIVATE_SUBNET, "ip_address": "198.18.100.1"}],
                 "device_id": ROUTER, "device_owner": "network:router_interface"}, None)
            self.store.save()

    # -- visibility -----------------------------------------------------------------------
    def visible(self, req: Request, store_name: str, obj: dict) -> bool:
        ctx = req.ctx
        if ctx.is_admin or obj.get("project_id") == ctx.project_id:
            return True
        if store_name == "networks":
            return obj.get("shared") or obj.get("router:external")
        if store_name == "subnets":
            net = self.coll("networks").get(obj["network_id"], {})
            return bool(net.get("shared") or net.get("router:external"))
        return False

    def lookup(self, req: Request, store_name: str, obj_id: str, label: str) -> dict:
        obj = self.coll(store_name).get(obj_id)
        if obj is None or not self.visible(req, store_name, obj):
            raise ApiError(404, "%s %s could not be found." % (_spaced(label), obj_id), label + "NotFound")
        return obj

    def owner(self, req: Request, body: dict) -> str:
        wanted = body.get("project_id") or body.get("tenant_id")
        if wanted and wanted != req.ctx.project_id and not req.ctx.is_admin:
            raise ApiError(403, "Only admin can create a resource for another project", "PolicyNotAuthorized")
        return wanted or req.ctx.project_id or ""

    def check_quota(self, project_id: str, store_name: str, count: int = 1) -> None:
        key = QUOTA_OF[store_name]
        limit = self.quota(project_id)[key]
        used = sum(1 for o in self.coll(store_name).values() if o.get("project_id") == project_id)
        if limit >= 0 and used + count > limit:
            raise ApiError(409, "Quota exceeded for resources: ['%s']." % key, "OverQuota")

    def quota(self, project_id: str) -> dict:
        return dict(DEFAULT_QUOTA, **self.coll("quotas").get(project_id, {}))

    # -- generic CRUD -----------------------------------------------------------------------
    @staticmethod
    def _resource(req: Request) -> tuple[str, str, str]:
        return RESOURCES[req.path.split("/")[2]]

    def view(self, req: Request, obj: dict) -> dict:
        out = {k: v for k, v in obj.items() if not k.startswith("_")}
        if "security_group_rules" in out:  # security groups embed their rules
            out["security_group_rules"] = self.rules_of(obj["id"])
        fields = [f for v in req.query.get("fields", []) for f in v.split(",") if f]
        if fields:
            out = {k: v for k, v in out.items() if k in fields}
        return out

    def matches(self, obj: dict, query: dict[str, list[str]]) -> bool:  # noqa: PLR0912 - one rule per filter kind
        for name, values in query.items():
            key = "project_id" if name == "tenant_id" else name
            if key in PAGING or key.startswith("tags"):
                continue
            if key == "fixed_ips":
                for cond in values:
                    field, _, want = cond.partition("=")
                    if not any(str(ip.get(field)) == want for ip in obj.get("fixed_ips", [])):
                        return False
                continue
            if key in ("ip_address", "subnet_id") and "fixed_ips" in obj:
                if not any(ip.get(key) in values for ip in obj["fixed_ips"]):
                    return False
                continue
            if key not in obj:  # unknown filters are ignored
                continue
            have = obj.get(key)
            if isinstance(have, list):
                if not any(v in have for v in values):
                    return False
            elif isinstance(have, bool):
                if not any(_bool(v) == have for v in values):
                    return False
            elif not any(str(have if have is not None else "") == v for v in values):
                return False
        return True

    def list_resource(self, req):
        store_name, _key, _label = self._resource(req)
        with self.store.lock:
            items = [self.view(req, o) for o in self.coll(store_name).values()
                     if self.visible(req, store_name, o) and self.matches(o, req.query)]
        return Response(200, {store_name: items})

    def get_resource(self, req):
        store_name, key, label = self._resource(req)
        with self.store.lock:
            return Response(200, {key: self.view(req, self.lookup(req, store_name, req.params["id"], label))})

    def create_resource(self, req):
        store_name, key, _label = self._resource(req)
        body = (req.body or {}).get(key)
        if not isinstance(body, dict):
            raise _bad("Resource body required: {'%s': {...}}" % key)
        changed_ports = []
        with self.store.lock:
            project_id = self.owner(req, body)
            self.check_quota(project_id, store_name)
            obj = getattr(self, "new_" + key)(req, body, project_id)
            self.coll(store_name)[obj["id"]] = obj
            if key == "floatingip" and obj.get("port_id"):
                changed_ports.append(obj["port_id"])
            self.store.save()
            out = self.view(req, obj)
        if changed_ports:
            self.on_floating_change(changed_ports)
        return Response(201, {key: out})

    def update_resource(self, req):
        store_name, key, label = self._resource(req)
        body = (req.body or {}).get(key)
        if not isinstance(body, dict):
            raise _bad("Resource body required: {'%s': {...}}" % key)
        with self.store.lock:
            obj = self.lookup(req, store_name, req.params["id"], label)
            changed_ports = getattr(self, "update_" + key)(req, obj, body) or []
            self.touch(obj)
            self.store.save()
            out = self.view(req, obj)
        if changed_ports:
            self.on_floating_change(changed_ports)
        return Response(200, {key: out})

    def delete_resource(self, req):
        store_name, key, label = self._resource(req)
        with self.store.lock:
            obj = self.lookup(req, store_name, req.params["id"], label)
            changed_ports = getattr(self, "delete_" + key)(req, obj) or []
            self.coll(store_name).pop(obj["id"], None)
            self.store.save()
        if changed_ports:
            self.on_floating_change(changed_ports)
        if key == "network":
            self.on_network_delete(obj["id"])
        return Response(204)

    # -- networks ------------------------------------------------------------------------
    @staticmethod
    def network_body(body: dict) -> dict:
        return {"id": body.get("id") or new_id(), "name": body.get("name", ""), "subnets": [],
                "admin_state_up": _bool(body.get("admin_state_up", True)), "status": "ACTIVE",
                "shared": _bool(body.get("shared", False)),
                "router:external": _bool(body.get("router:external", False)), "mtu": int(body.get("mtu") or 1500),
                "port_security_enabled": _bool(body.get("port_security_enabled", True)),
                "availability_zones": ["nova"], "availability_zone_hints": [], "ipv4_address_scope": None,
                "ipv6_address_scope": None, "is_default": False, "l2_adjacency": True,
                "description": body.get("description", "")}

    def new_network(self, req, body, project_id):
        if (body.get("shared") or body.get("router:external")) and not req.ctx.is_admin:
            raise ApiError(403, "(rule:create_network and rule:create_network:shared) is disallowed by policy",
                           "PolicyNotAuthorized")
        return self.stamp(self.network_body(body), project_id)

    def update_network(self, req, obj, body):
        for field in ("name", "description", "admin_state_up", "mtu", "port_security_enabled"):
            if field in body:
                obj[field] = body[field]
        for field in ("shared", "router:external"):
            if field in body:
                if not req.ctx.is_admin:
                    raise ApiError(403, "Only admin can change %s" % field, "PolicyNotAuthorized")
                obj[field] = _bool(body[field])

    def delete_network(self, req, obj):
        in_use = [p for p in self.coll("ports").values() if p["network_id"] == obj["id"]
                  and p["device_owner"] not in ("network:dhcp", "network:router_interface")]
        if in_use:
            raise ApiError(409, "Unable to complete operation on network %s. There are one or more ports still in "
                           "use on the network." % obj["id"], "NetworkInUse")
        ports = self.coll("ports")
        for port in [p for p in ports.values() if p["network_id"] == obj["id"]]:
            ports.pop(port["id"])
        for sub_id in obj["subnets"]:
            self.coll("subnets").pop(sub_id, None)

    # -- subnets -------------------------------------------------------------------------
    def new_subnet(self, req, body, project_id):
        net = self.lookup(req, "networks", body.get("network_id") or "", "Network")
        if net["project_id"] != project_id and not req.ctx.is_admin:
            raise ApiError(403, "Only admin may add a subnet to a network of another project", "PolicyNotAuthorized")
        if int(body.get("ip_version", 4)) != 4:
            raise _bad("The test cloud supports IPv4 subnets only")
        try:
            cidr = ipaddress.ip_network(body.get("cidr") or "", strict=False)
        except ValueError as exc:
            raise _bad("Invalid input for cidr. Reason: '%s' is not a valid IP subnet." % body.get("cidr"),
                       "InvalidInput") from exc
        if not cidr.subnet_of(ipaddress.ip_network("198.18.0.0/15")):
            raise _bad("The test cloud only routes 198.18.0.0/15; %s is outside it" % cidr, "InvalidInput")
        for other in self.coll("subnets").values():
            if ipaddress.ip_network(other["cidr"]).overlaps(cidr):
                raise _bad("Invalid input for operation: Requested subnet with cidr: %s overlaps with subnet %s "
                           "(%s); the test cloud's Docker bridges cannot overlap." % (cidr, other["id"], other["cidr"]),
                           "InvalidInput")
        gateway = body.get("gateway_ip", str(cidr[1]))
        if gateway is not None and ipaddress.ip_address(gateway) not in cidr:
            raise _bad("Gateway IP %s is not in subnet %s" % (gateway, cidr), "InvalidInput")
        pools = body.get("allocation_pools") or [{"start": str(cidr[2] if gateway == str(cidr[1]) else cidr[1]),
                                                  "end": str(cidr[-2])}]
        for pool in pools:
            for end in ("start", "end"):
                if ipaddress.ip_address(pool[end]) not in cidr:
                    raise _bad("The allocation pool %s-%s spans beyond the subnet cidr %s." % (
                        pool["start"], pool["end"], cidr), "OutOfBoundsAllocationPool")
        sub = self.stamp({"name": body.get("name", ""), "network_id": net["id"], "ip_version": 4, "cidr": str(cidr),
                          "gateway_ip": gateway, "enable_dhcp": _bool(body.get("enable_dhcp", True)),
                          "dns_nameservers": body.get("dns_nameservers") or [],
                          "host_routes": body.get("host_routes") or [], "allocation_pools": pools,
                          "subnetpool_id": None, "ipv6_address_mode": None, "ipv6_ra_mode": None,
                          "service_types": [], "description": body.get("description", "")}, project_id)
        net["subnets"].append(sub["id"])
        return sub

    def update_subnet(self, req, obj, body):
        for field in ("name", "description", "dns_nameservers", "host_routes", "enable_dhcp", "gateway_ip"):
            if field in body:
                obj[field] = body[field]

    def delete_subnet(self, req, obj):
        for port in self.coll("ports").values():
            if any(ip["subnet_id"] == obj["id"] for ip in port["fixed_ips"]) and \
                    port["device_owner"] != "network:router_interface":
                raise ApiError(409, "Unable to complete operation on subnet %s: One or more ports have an IP "
                               "allocation from this subnet." % obj["id"], "SubnetInUse")
        net = self.coll("networks").get(obj["network_id"])
        if net and obj["id"] in net["subnets"]:
            net["subnets"].remove(obj["id"])

    # -- IPAM ----------------------------------------------------------------------------
    def used_ips(self, subnet: dict) -> set[str]:
        used = {subnet["gateway_ip"]} if subnet.get("gateway_ip") else set()
        for port in self.coll("ports").values():
            used.update(ip["ip_address"] for ip in port["fixed_ips"] if ip["subnet_id"] == subnet["id"])
        cidr = ipaddress.ip_network(subnet["cidr"])
        for fip in self.coll("floatingips").values():
            if ipaddress.ip_address(fip["floating_ip_address"]) in cidr:
                used.add(fip["floating_ip_address"])
        for router in self.coll("routers").values():
            for ip in (router.get("external_gateway_info") or {}).get("external_fixed_ips", []):
                used.add(ip["ip_address"])
        return used | self.taken_elsewhere(subnet["network_id"])

    def allocate(self, subnet: dict, wanted: str | None = None) -> str:
        used = self.used_ips(subnet)
        if wanted:
            addr = ipaddress.ip_address(wanted)
            if addr not in ipaddress.ip_network(subnet["cidr"]):
                raise _bad("IP address %s is not a valid IP for the specified subnet." % wanted, "InvalidIpForSubnet")
            if wanted in used:
                raise ApiError(409, "IP address %s already allocated in subnet %s" % (wanted, subnet["id"]),
                               "IpAddressAlreadyAllocated")
            return wanted
        for pool in subnet["allocation_pools"]:
            start, end = int(ipaddress.ip_address(pool["start"])), int(ipaddress.ip_address(pool["end"]))
            for value in range(start, end + 1):
                candidate = str(ipaddress.ip_address(value))
                if candidate not in used:
                    return candidate
        raise ApiError(409, "No more IP addresses available on network %s." % subnet["network_id"],
                       "IpAddressGenerationFailure")

    def fixed_ips_for(self, net: dict, requested) -> list[dict]:
        subnets = [self.coll("subnets")[s] for s in net["subnets"] if s in self.coll("subnets")]
        if not requested:
            if not subnets:
                return []
            return [{"subnet_id": subnets[0]["id"], "ip_address": self.allocate(subnets[0])}]
        out = []
        for item in requested:
            sub = None
            if item.get("subnet_id"):
                sub = self.coll("subnets").get(item["subnet_id"])
                if sub is None or sub["network_id"] != net["id"]:
                    raise _bad("Invalid input for operation: subnet %s is not on network %s." % (
                        item["subnet_id"], net["id"]), "InvalidInput")
            elif item.get("ip_address"):
                addr = ipaddress.ip_address(item["ip_address"])
                sub = next((s for s in subnets if addr in ipaddress.ip_network(s["cidr"])), None)
                if sub is None:
                    raise _bad("IP address %s is not a valid IP for the specified network." % addr,
                               "InvalidIpForNetwork")
            else:
                raise _bad("Invalid input for fixed_ips: %s" % item, "InvalidInput")
            out.append({"subnet_id": sub["id"], "ip_address": self.allocate(sub, item.get("ip_address"))})
        return out

    # -- ports ---------------------------------------------------------------------------
    def port_body(self, body: dict, project_id: str | None) -> dict:
        mac = "fa:16:3e:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))  # noqa: S311
        return self.stamp({
            "name": body.get("name", ""), "network_id": body["network_id"], "admin_state_up": True,
            "mac_address": body.get("mac_address") or mac, "fixed_ips": body.get("fixed_ips", []),
            "device_id": body.get("device_id", ""), "device_owner": body.get("device_owner", ""),
            "status": "ACTIVE" if body.get("device_id") else "DOWN",
            "security_groups": body.get("security_groups", []),
            "port_security_enabled": _bool(body.get("port_security_enabled", True)),
            "allowed_address_pairs": body.get("allowed_address_pairs") or [], "extra_dhcp_opts": [],
            "binding:vnic_type": body.get("binding:vnic_type", "normal"),
            "binding:host_id": body.get("binding:host_id", ""), "binding:profile": body.get("binding:profile") or {},
            "binding:vif_type": "ovs" if body.get("device_id") else "unbound", "binding:vif_details": {},
            "dns_name": body.get("dns_name", ""), "dns_assignment": [], "qos_policy_id": None,
            "description": body.get("description", "")}, project_id)

    def resolve_security_groups(self, req, project_id: str, refs) -> list[str]:
        out = []
        for ref in refs:
            sg = self.coll("security_groups").get(ref)
            if sg is None:
                named = [g for g in self.coll("security_groups").values()
                         if g["name"] == ref and g["project_id"] == project_id]
                sg = named[0] if len(named) == 1 else None
            if sg is None or not (req.ctx.is_admin or sg["project_id"] == project_id):
                raise ApiError(404, "Security group %s does not exist" % ref, "SecurityGroupNotFound")
            out.append(sg["id"])
        return out

    def new_port(self, req, body, project_id):
        net = self.lookup(req, "networks", body.get("network_id") or "", "Network")
        port = dict(body, network_id=net["id"])
        port["fixed_ips"] = self.fixed_ips_for(net, body.get("fixed_ips"))
        if "security_groups" in body:
            port["security_groups"] = self.resolve_security_groups(req, project_id, body["security_groups"] or [])
        elif project_id and not body.get("device_owner", "").startswith("network:"):
            port["security_groups"] = [self.default_security_group(project_id)["id"]]
        return self.port_body(port, project_id)

    def update_port(self, req, obj, body):
        for field in ("name", "description", "device_id", "device_owner", "admin_state_up", "mac_address",
                      "allowed_address_pairs", "binding:host_id", "binding:profile", "binding:vnic_type",
                      "port_security_enabled", "dns_name", "extra_dhcp_opts", "qos_policy_id"):
            if field in body:
                obj[field] = body[field] if body[field] is not None else ("" if field.startswith("device") else None)
        if "security_groups" in body:
            obj["security_groups"] = self.resolve_security_groups(req, obj["project_id"], body["security_groups"] or [])
        if "fixed_ips" in body:
            net = self.coll("networks")[obj["network_id"]]
            old, obj["fixed_ips"] = obj["fixed_ips"], []
            try:
                obj["fixed_ips"] = self.fixed_ips_for(net, body["fixed_ips"])
            except ApiError:
                obj["fixed_ips"] = old
                raise
        obj["status"] = "ACTIVE" if obj.get("device_id") else "DOWN"
        return [obj["id"]] if "fixed_ips" in body else []

    def delete_port(self, req, obj):
        changed = []
        for fip in self.coll("floatingips").values():
            if fip.get("port_id") == obj["id"]:
                fip.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
                changed.append(obj["id"])
        return changed

    def ports_of_device(self, device_id: str) -> list[dict]:
        return [p for p in self.coll("ports").values() if p["device_id"] == device_id]

    # -- security groups -----------------------------------------------------------------
    def default_security_group(self, project_id: str) -> dict:
        """Every project has a 'default' group, made at its first request (as Neutron does)."""
        for sg in self.coll("security_groups").values():
            if sg["project_id"] == project_id and sg["name"] == "default":
                return sg
        sg = self.stamp({"name": "default", "description": "Default security group", "stateful": True,
                         "security_group_rules": []}, project_id)
        self.coll("security_groups")[sg["id"]] = sg
        for direction, ethertype, remote_group in (("egress", "IPv4", None), ("egress", "IPv6", None),
                                                   ("ingress", "IPv4", sg["id"]), ("ingress", "IPv6", sg["id"])):
            self.add_rule(sg, {"direction": direction, "ethertype": ethertype, "remote_group_id": remote_group})
        self.store.save()
        return sg

    def add_rule(self, sg: dict, body: dict, store: bool = True) -> dict:
        rule = self.stamp({
            "security_group_id": sg["id"], "direction": body["direction"], "ethertype": body.get("ethertype", "IPv4"),
            "protocol": body.get("protocol"), "port_range_min": body.get("port_range_min"),
            "port_range_max": body.get("port_range_max"), "remote_ip_prefix": body.get("remote_ip_prefix"),
            "remote_group_id": body.get("remote_group_id"), "remote_address_group_id": None,
            "normalized_cidr": body.get("remote_ip_prefix"), "description": body.get("description", "")},
            sg["project_id"])
        if store:
            self.coll("security_group_rules")[rule["id"]] = rule
        return rule

    def rules_of(self, sg_id: str) -> list[dict]:
        return [r for r in self.coll("security_group_rules").values() if r["security_group_id"] == sg_id]

    def new_security_group(self, req, body, project_id):
        sg = self.stamp({"name": body.get("name", ""), "description": body.get("description", ""),
                         "stateful": _bool(body.get("stateful", True)), "security_group_rules": []}, project_id)
        self.coll("security_groups")[sg["id"]] = sg
        for ethertype in ("IPv4", "IPv6"):
            self.add_rule(sg, {"direction": "egress", "ethertype": ethertype})
        return sg

    def update_security_group(self, req, obj, body):
        for field in ("name", "description", "stateful"):
            if field in body:
                obj[field] = body[field]

    def delete_security_group(self, req, obj):
        if obj["name"] == "default" and not req.ctx.is_admin:
            raise ApiError(409, "Insufficient rights for removing default security group.",
                           "SecurityGroupCannotRemoveDefault")
        users = [p["id"] for p in self.coll("ports").values() if obj["id"] in p["security_groups"]]
        if users:
            raise ApiError(409, "Security Group %s in use." % obj["id"], "SecurityGroupInUse")
        # its rules go, and (ON DELETE CASCADE in Neutron) the rules of other groups that name it as remote group
        rules = self.coll("security_group_rules")
        for rule_id in [r["id"] for r in rules.values() if obj["id"] in (r["security_group_id"], r["remote_group_id"])]:
            rules.pop(rule_id, None)

    def new_security_group_rule(self, req, body, project_id):
        sg = self.lookup(req, "security_groups", body.get("security_group_id") or "", "SecurityGroup")
        if body.get("direction") not in ("ingress", "egress"):
            raise _bad("Invalid input for direction. Reason: %r is not in ['ingress', 'egress']." % (
                body.get("direction"),), "InvalidInput")
        if body.get("ethertype", "IPv4") not in ("IPv4", "IPv6"):
            raise _bad("Invalid input for ethertype.", "InvalidInput")
        proto = body.get("protocol")
        if proto is not None and str(proto).lower() not in PROTOCOLS and not str(proto).isdigit():
            raise _bad("Security group rule protocol %s not supported." % proto, "SecurityGroupRuleInvalidProtocol")
        lo, hi = body.get("port_range_min"), body.get("port_range_max")
        if lo is not None and hi is not None and int(lo) > int(hi):
            raise _bad("For TCP/UDP protocols, port_range_min must be <= port_range_max",
                       "SecurityGroupInvalidPortRange")
        if (lo is not None or hi is not None) and str(proto).lower() not in ("tcp", "udp", "sctp", "6", "17", "132",
                                                                             "icmp", "1"):
            raise _bad("Must also specify protocol if port range is given.", "SecurityGroupProtocolRequiredWithPorts")
        if body.get("remote_ip_prefix"):
            try:
                body["remote_ip_prefix"] = str(ipaddress.ip_network(body["remote_ip_prefix"], strict=False))
            except ValueError as exc:
                raise _bad("Invalid input for remote_ip_prefix.", "InvalidInput") from exc
        if body.get("remote_ip_prefix") and body.get("remote_group_id"):
            raise _bad("Only remote_ip_prefix or remote_group_id may be provided.",
                       "SecurityGroupRemoteGroupAndRemoteIpPrefix")
        if body.get("remote_group_id"):
            remote = self.coll("security_groups").get(body["remote_group_id"])
            if remote is None or not (req.ctx.is_admin or remote["project_id"] == sg["project_id"]):
                raise ApiError(404, "Security group %s does not exist" % body["remote_group_id"],
                               "SecurityGroupNotFound")
        keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix",
                "remote_group_id")

        def same(key, have, want):  # as Neutron's duplicate check: no prefix and 0.0.0.0/0 (::/0) are the same
            if key == "remote_ip_prefix":
                return (have if have not in ("0.0.0.0/0", "::/0") else None) == (
                    want if want not in ("0.0.0.0/0", "::/0") else None)
            return have == want

        wanted = {k: body.get(k, "IPv4" if k == "ethertype" else None) for k in keys}
        for rule in self.rules_of(sg["id"]):
            if all(same(k, rule.get(k), wanted[k]) for k in keys):
                raise ApiError(409, "Security group rule already exists. Rule id is %s." % rule["id"],
                               "SecurityGroupRuleExists")
        return self.add_rule(sg, body, store=False)  # create_resource stores it

    def update_security_group_rule(self, req, obj, body):
        if "description" in body:
            obj["description"] = body["description"]

    def delete_security_group_rule(self, req, obj):
        return []

    # -- floating IPs --------------------------------------------------------------------
    def associate(self, req, fip: dict, port_id, fixed_ip) -> None:
        if not port_id:
            fip.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
            return
        port = self.lookup(req, "ports", port_id, "Port")
        addrs = [ip["ip_address"] for ip in port["fixed_ips"]]
        if not addrs:
            raise _bad("Port %s does not have an IP address." % port_id)
        fixed_ip = fixed_ip or addrs[0]
        if fixed_ip not in addrs:
            raise _bad("Port %s does not have fixed ip %s" % (port_id, fixed_ip))
        for other in self.coll("floatingips").values():
            same = other.get("port_id") == port_id and other.get("fixed_ip_address") == fixed_ip
            if other["id"] != fip["id"] and same:
                raise ApiError(409, "Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that "
                               "fixed IP already has a floating IP on external network %s." % (
                                   fip["floating_ip_address"], fip["id"], port_id, fixed_ip,
                                   other["floating_network_id"]), "FloatingIPPortAlreadyAssociated")
        fip.update(port_id=port_id, fixed_ip_address=fixed_ip, status="ACTIVE",
                   router_id=self.router_between(fip["floating_network_id"], port))

    def router_between(self, ext_net_id: str, port: dict) -> str | None:
        subnets = {ip["subnet_id"] for ip in port["fixed_ips"]}
        for router in self.coll("routers").values():
            if (router.get("external_gateway_info") or {}).get("network_id") != ext_net_id:
                continue
            for rport in self.ports_of_device(router["id"]):
                if subnets & {ip["subnet_id"] for ip in rport["fixed_ips"]}:
                    return router["id"]
        return None

    def new_floatingip(self, req, body, project_id):
        net = self.lookup(req, "networks", body.get("floating_network_id") or "", "Network")
        if not net.get("router:external"):
            raise _bad("Bad floatingip request: Network %s is not a valid external network." % net["id"],
                       "BadRequest")
        subnets = [self.coll("subnets")[s] for s in net["subnets"]]
        if body.get("subnet_id"):
            subnets = [s for s in subnets if s["id"] == body["subnet_id"]]
        wanted = body.get("floating_ip_address")
        if wanted:
            subnets = [s for s in subnets if ipaddress.ip_address(wanted) in ipaddress.ip_network(s["cidr"])]
        if not subnets:
            raise _bad("Bad floatingip request: no subnet of network %s fits." % net["id"])
        fip = self.stamp({"floating_network_id": net["id"], "floating_ip_address": self.allocate(subnets[0], wanted),
                          "port_id": None, "fixed_ip_address": None, "router_id": None, "status": "DOWN",
                          "qos_policy_id": None, "port_forwardings": [], "dns_domain": "", "dns_name": "",
                          "description": body.get("description", "")}, project_id)
        self.associate(req, fip, body.get("port_id"), body.get("fixed_ip_address"))
        return fip

    def update_floatingip(self, req, obj, body):
        changed = [obj["port_id"]] if obj.get("port_id") else []
        if "port_id" in body:
            self.associate(req, obj, body["port_id"], body.get("fixed_ip_address"))
            if obj.get("port_id"):
                changed.append(obj["port_id"])
        if "description" in body:
            obj["description"] = body["description"]
        return changed

    def delete_floatingip(self, req, obj):
        return [obj["port_id"]] if obj.get("port_id") else []

    def floating_for_ports(self, port_ids) -> list[dict]:
        return [f for f in self.coll("floatingips").values() if f.get("port_id") in port_ids]

    # -- routers (bookkeeping, no data plane: every network reaches every other) ------------
    def new_router(self, req, body, project_id):
        router = self.stamp({"name": body.get("name", ""), "admin_state_up": _bool(body.get("admin_state_up", True)),
                             "status": "ACTIVE", "routes": [], "external_gateway_info": None,
                             "description": body.get("description", ""), "availability_zones": ["nova"]}, project_id)
        self.set_gateway(req, router, body.get("external_gateway_info"))
        return router

    def set_gateway(self, req, router: dict, info) -> None:
        if not info:
            router["external_gateway_info"] = None
            return
        net = self.lookup(req, "networks", info.get("network_id") or "", "Network")
        if not net.get("router:external"):
            raise _bad("Bad router request: Network %s is not an external network." % net["id"])
        sub = self.coll("subnets")[net["subnets"][0]]
        router["external_gateway_info"] = {
            "network_id": net["id"], "enable_snat": info.get("enable_snat", True),
            "external_fixed_ips": [{"subnet_id": sub["id"], "ip_address": self.allocate(sub)}]}

    def update_router(self, req, obj, body):
        for field in ("name", "description", "admin_state_up", "routes"):
            if field in body:
                obj[field] = body[field]
        if "external_gateway_info" in body:
            self.set_gateway(req, obj, body["external_gateway_info"])

    def delete_router(self, req, obj):
        if self.ports_of_device(obj["id"]):
            raise ApiError(409, "Router %s still has ports" % obj["id"], "RouterInUse")

    def add_router_interface(self, req):
        body = req.body or {}
        with self.store.lock:
            router = self.lookup(req, "routers", req.params["id"], "Router")
            if body.get("port_id"):
                port = self.lookup(req, "ports", body["port_id"], "Port")
            else:
                sub = self.lookup(req, "subnets", body.get("subnet_id") or "", "Subnet")
                taken = {ip["ip_address"] for p in self.coll("ports").values() for ip in p["fixed_ips"]}
                if sub["gateway_ip"] in taken:
                    raise _bad("Router already has a port on subnet %s" % sub["id"])
                port = self.port_body({"network_id": sub["network_id"], "fixed_ips": [
                    {"subnet_id": sub["id"], "ip_address": sub["gateway_ip"]}]}, router["project_id"])
                self.coll("ports")[port["id"]] = port
            port.update(device_id=router["id"], device_owner="network:router_interface", status="ACTIVE")
            self.store.save()
            return Response(200, {
                "id": router["id"], "tenant_id": router["project_id"], "project_id": router["project_id"],
                "port_id": port["id"], "subnet_id": port["fixed_ips"][0]["subnet_id"],
                "subnet_ids": [ip["subnet_id"] for ip in port["fixed_ips"]], "network_id": port["network_id"]})

    def remove_router_interface(self, req):
        body = req.body or {}
        with self.store.lock:
            router = self.lookup(req, "routers", req.params["id"], "Router")
            for port in self.ports_of_device(router["id"]):
                on_subnet = any(ip["subnet_id"] == body.get("subnet_id") for ip in port["fixed_ips"])
                if port["id"] == body.get("port_id") or on_subnet:
                    self.coll("ports").pop(port["id"])
                    self.store.save()
                    return Response(200, {"id": router["id"], "port_id": port["id"],
                                          "subnet_id": port["fixed_ips"][0]["subnet_id"]})
            raise ApiError(404, "Router %s has no interface on that subnet or port" % router["id"],
                           "RouterInterfaceNotFound")

    # -- versions, extensions, quotas ----------------------------------------------------
    def versions(self, req):
        return Response(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
            {"rel": "self", "href": req.base_url + "/v2.0/"}]}]})

    def resources(self, req):
        return Response(200, {"resources": [
            {"name": key, "collection": coll, "links": [{"rel": "self", "href": "%s/v2.0/%s" % (req.base_url, coll)}]}
            for coll, (_s, key, _l) in RESOURCES.items()]})

    def list_extensions(self, req):
        return Response(200, {"extensions": [self.extension(a) for a in EXTENSIONS]})

    def get_extension(self, req):
        if req.params["alias"] not in EXTENSIONS:
            raise ApiError(404, "Extension with alias %s does not exist" % req.params["alias"], "ExtensionNotFound")
        return Response(200, {"extension": self.extension(req.params["alias"])})

    @staticmethod
    def extension(alias):
        return {"alias": alias, "name": EXTENSIONS[alias], "description": EXTENSIONS[alias], "links": [],
                "updated": "2013-01-01T10:00:00-00:00"}

    def quota_project(self, req) -> str:
        project = req.params["project"]
        if project != req.ctx.project_id and not req.ctx.is_admin:
            raise ApiError(403, "Only admin may see the quotas of another project", "PolicyNotAuthorized")
        return project

    def list_quotas(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "rule:get_quota is disallowed by policy", "PolicyNotAuthorized")
        with self.store.lock:
            quotas = [dict(self.quota(p), project_id=p, tenant_id=p) for p in self.coll("quotas")]
            return Response(200, {"quotas": quotas})

    def get_quota(self, req):
        with self.store.lock:
            return Response(200, {"quota": self.quota(self.quota_project(req))})

    def get_quota_default(self, req):
        return Response(200, {"quota": dict(DEFAULT_QUOTA)})

    def get_quota_details(self, req):
        with self.store.lock:
            project = self.quota_project(req)
            limits = self.quota(project)
            details = {}
            for store_name, key in QUOTA_OF.items():
                used = sum(1 for o in self.coll(store_name).values() if o.get("project_id") == project)
                details[key] = {"limit": limits[key], "used": used, "reserved": 0}
            return Response(200, {"quota": details})

    def put_quota(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "rule:update_quota is disallowed by policy", "PolicyNotAuthorized")
        body = (req.body or {}).get("quota") or {}
        unknown = set(body) - set(DEFAULT_QUOTA)
        if unknown:
            raise _bad("Unrecognized attribute(s) '%s'" % ", ".join(sorted(unknown)))
        with self.store.lock:
            self.coll("quotas").setdefault(req.params["project"], {}).update({k: int(v) for k, v in body.items()})
            self.store.save()
            return Response(200, {"quota": self.quota(req.params["project"])})

    def delete_quota(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "rule:delete_quota is disallowed by policy", "PolicyNotAuthorized")
        with self.store.lock:
            self.coll("quotas").pop(req.params["project"], None)
            self.store.save()
        return Response(204)


def _spaced(label: str) -> str:
    return {"SecurityGroup": "Security group", "SecurityGroupRule": "Security group rule",
            "FloatingIP": "Floating IP"}.get(label, label)
