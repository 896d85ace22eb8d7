"""Nova (compute v2.1, microversions 2.1-2.96): flavors, key pairs, server groups, servers with
metadata and a few actions, quotas and limits. A server is a host container made by the data
plane: BUILD until sshd answers at its fixed IP, then ACTIVE (or ERROR with a fault)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
import secrets
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from testcloud.agent.dataplane import DataPlaneError, DockerPlane, hostname_of

from .core import ApiError, Request, Response, Service, new_id, now_iso

LOG = logging.getLogger("testcloud.nova")

MIN_VERSION, MAX_VERSION = (2, 1), (2, 96)
DEFAULT_QUOTA = {"instances": 20, "cores": 40, "ram": 51200, "key_pairs": 100, "metadata_items": 128,
                 "server_groups": 10, "server_group_members": 10, "injected_files": 5,
                 "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255}
POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
FAIL_KEY = "testcloud:fail"  # server metadata that makes the build fail (value = fault message)
ERROR_KIND = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
              405: "HTTPMethodNotAllowed", 406: "HTTPNotAcceptable", 409: "conflictingRequest", 413: "overLimit"}
KEY_RE = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+)\s+([A-Za-z0-9+/=]+)(\s.*)?$")


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


class Nova(Service):
    name = "nova"

    def __init__(self, store, validator, neutron, glance, *, plane: DockerPlane | None,
                 build_hold: float = 15, boot_timeout: float = 180):
        super().__init__(store, validator)
        self.neutron, self.glance, self.plane = neutron, glance, plane
        self.build_hold, self.boot_timeout = build_hold, boot_timeout
        self.host_locks: dict[str, threading.Lock] = {}
        neutron.on_floating_change = self.replumb_ports
        r = self.route
        r("GET", "/", self.versions, auth=False)
        r("GET", "/v2.1", self.version, auth=False)
        r("GET", "/v2.1/flavors/detail", self.list_flavors)
        r("GET", "/v2.1/flavors", self.list_flavors)
        r("POST", "/v2.1/flavors", self.create_flavor)
        r("GET", "/v2.1/flavors/{id}", self.get_flavor)
        r("DELETE", "/v2.1/flavors/{id}", self.delete_flavor)
        r("GET", "/v2.1/flavors/{id}/os-extra_specs", self.flavor_extra_specs)
        r("POST", "/v2.1/flavors/{id}/os-extra_specs", self.set_flavor_extra_specs)
        r("GET", "/v2.1/os-keypairs", self.list_keypairs)
        r("POST", "/v2.1/os-keypairs", self.create_keypair)
        r("GET", "/v2.1/os-keypairs/{name}", self.get_keypair)
        r("DELETE", "/v2.1/os-keypairs/{name}", self.delete_keypair)
        r("GET", "/v2.1/os-server-groups", self.list_groups)
        r("POST", "/v2.1/os-server-groups", self.create_group)
        r("GET", "/v2.1/os-server-groups/{id}", self.get_group)
        r("DELETE", "/v2.1/os-server-groups/{id}", self.delete_group)
        r("GET", "/v2.1/servers/detail", self.list_servers)
        r("GET", "/v2.1/servers", self.list_servers)
        r("POST", "/v2.1/servers", self.create_server)
        r("GET", "/v2.1/servers/{id}", self.get_server)
        r("PUT", "/v2.1/servers/{id}", self.update_server)
        r("DELETE", "/v2.1/servers/{id}", self.delete_server)
        r("POST", "/v2.1/servers/{id}/action", self.server_action)
        r("GET", "/v2.1/servers/{id}/metadata", self.get_metadata)
        r("PUT", "/v2.1/servers/{id}/metadata", self.set_metadata)
        r("POST", "/v2.1/servers/{id}/metadata", self.update_metadata)
        r("GET", "/v2.1/servers/{id}/metadata/{key}", self.get_metadata_item)
        r("PUT", "/v2.1/servers/{id}/metadata/{key}", self.set_metadata_item)
        r("DELETE", "/v2.1/servers/{id}/metadata/{key}", self.delete_metadata_item)
        r("GET", "/v2.1/servers/{id}/os-security-groups", self.server_security_groups)
        r("GET", "/v2.1/servers/{id}/os-interface", self.server_interfaces)
        r("GET", "/v2.1/os-quota-sets/{project}", self.get_quota)
        r("GET", "/v2.1/os-quota-sets/{project}/detail", self.get_quota_detail)
        r("GET", "/v2.1/os-quota-sets/{project}/defaults", self.get_quota_defaults)
        r("PUT", "/v2.1/os-quota-sets/{project}", self.put_quota)
        r("DELETE", "/v2.1/os-quota-sets/{project}", self.delete_quota)
        r("GET", "/v2.1/limits", self.limits)
        r("GET", "/v2.1/os-availability-zone", self.availability_zones)
        r("GET", "/v2.1/os-availability-zone/detail", self.availability_zones)

    # -- plumbing ------------------------------------------------------------------------
    def coll(self, name: str) -> dict:
        return self.store.coll("nova", name)

    def error_body(self, err):
        kind = ERROR_KIND.get(err.status, "computeFault")
        return {kind: {"code": err.status, "message": err.message}}

    def prepare(self, req):
        raw = None
        for header in ("OpenStack-API-Version", "X-OpenStack-Nova-API-Version"):
            value = req.headers.get(header)
            if value:
                raw = value.split()[-1] if header.startswith("OpenStack") else value
                if header.startswith("OpenStack") and not value.lower().startswith("compute"):
                    raw = None
                    continue
                break
        if raw is None:
            req.version = MIN_VERSION
        elif raw == "latest":
            req.version = MAX_VERSION
        else:
            try:
                major, minor = (int(x) for x in raw.split("."))
            except ValueError as exc:
                raise bad("Invalid microversion %r" % raw) from exc
            if not MIN_VERSION <= (major, minor) <= MAX_VERSION:
                raise ApiError(406, "Version %s is not supported by the API. Minimum is 2.1 and maximum is 2.96." % raw)
            req.version = (major, minor)

    def finish(self, req, resp):
        if req.version:
            text = "%d.%d" % req.version
            resp.headers.update({"OpenStack-API-Version": "compute " + text, "X-OpenStack-Nova-API-Version": text,
                                 "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"})

    def link(self, req, kind, obj_id):
        return [{"rel": "self", "href": "%s/v2.1/%s/%s" % (req.base_url, kind, obj_id)},
                {"rel": "bookmark", "href": "%s/%s/%s" % (req.base_url, kind, obj_id)}]

    # -- versions ------------------------------------------------------------------------
    def version_doc(self, req):
        return {"id": "v2.1", "status": "CURRENT", "version": "%d.%d" % MAX_VERSION,
                "min_version": "%d.%d" % MIN_VERSION, "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": req.base_url + "/v2.1/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    def versions(self, req):
        return Response(200, {"versions": [self.version_doc(req)]})

    def version(self, req):
        return Response(200, {"version": self.version_doc(req)})

    # -- flavors -------------------------------------------------------------------------
    def flavor_view(self, req, flavor, detail=True):
        out = {"id": flavor["id"], "name": flavor["name"], "links": self.link(req, "flavors", flavor["id"])}
        if detail:
            out.update({"vcpus": flavor["vcpus"], "ram": flavor["ram"], "disk": flavor["disk"],
                        "OS-FLV-EXT-DATA:ephemeral": flavor["ephemeral"], "OS-FLV-DISABLED:disabled": False,
                        "swap": flavor["swap"] if req.version >= (2, 75) else (flavor["swap"] or ""),
                        "os-flavor-access:is_public": flavor["is_public"], "rxtx_factor": flavor["rxtx_factor"]})
            if req.version >= (2, 55):
                out["description"] = flavor.get("description")
            if req.version >= (2, 61):
                out["extra_specs"] = flavor.get("extra_specs", {})
        return out

    def find_flavor(self, ref) -> dict:
        ref = str(ref or "").rstrip("/").rsplit("/", 1)[-1]
        flavor = self.coll("flavors").get(ref)
        if flavor is None:
            raise not_found("Flavor %s could not be found." % ref)
        return flavor

    def list_flavors(self, req):
        detail = req.path.endswith("/detail")
        with self.store.lock:
            flavors = sorted(self.coll("flavors").values(), key=lambda f: (f["ram"], f["id"]))
        if req.arg("minRam"):
            flavors = [f for f in flavors if f["ram"] >= int(req.arg("minRam"))]
        if req.arg("minDisk"):
            flavors = [f for f in flavors if f["disk"] >= int(req.arg("minDisk"))]
        return Response(200, {"flavors": [self.flavor_view(req, f, detail) for f in flavors]})

    def get_flavor(self, req):
        with self.store.lock:
            return Response(200, {"flavor": self.flavor_view(req, self.find_flavor(req.params["id"]))})

    def flavor_extra_specs(self, req):
        with self.store.lock:
            return Response(200, {"extra_specs": self.find_flavor(req.params["id"]).get("extra_specs", {})})

    def set_flavor_extra_specs(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-flavor-extra-specs:create to be performed.")
        specs = (req.body or {}).get("extra_specs")
        if not isinstance(specs, dict) or not all(isinstance(v, str) for v in specs.values()):
            raise bad("Invalid input for field/attribute extra_specs: a mapping of text to text is needed")
        with self.store.lock:
            flavor = self.find_flavor(req.params["id"])
            flavor["extra_specs"] = dict(flavor.get("extra_specs", {}), **specs)
            self.store.save()
            return Response(200, {"extra_specs": dict(flavor["extra_specs"])})

    def create_flavor(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed.")
        body = (req.body or {}).get("flavor") or {}
        try:
            flavor = {"id": str(body.get("id") or new_id()), "name": body["name"], "vcpus": int(body["vcpus"]),
                      "ram": int(body["ram"]), "disk": int(body.get("disk", 0)),
                      "ephemeral": int(body.get("OS-FLV-EXT-DATA:ephemeral", 0)), "swap": int(body.get("swap") or 0),
                      "is_public": bool(body.get("os-flavor-access:is_public", True)),
                      "description": body.get("description"), "extra_specs": {},
                      "rxtx_factor": float(body.get("rxtx_factor", 1.0))}
        except (KeyError, ValueError, TypeError) as exc:
            raise bad("Invalid input for flavor: %s" % exc) from exc
        with self.store.lock:
            if flavor["id"] in self.coll("flavors") or any(
                    f["name"] == flavor["name"] for f in self.coll("flavors").values()):
                raise ApiError(409, "Flavor with name %s already exists." % flavor["name"])
            self.coll("flavors")[flavor["id"]] = flavor
            self.store.save()
        return Response(200, {"flavor": self.flavor_view(req, flavor)})

    def delete_flavor(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-flavor-manage:delete to be performed.")
        with self.store.lock:
            self.find_flavor(req.params["id"])
            self.coll("flavors").pop(req.params["id"])
            self.store.save()
        return Response(202)

    # -- key pairs (owned by the user, not the project) ------------------------------------
    def keypair_view(self, req, kp, full=True):
        out = {"name": kp["name"], "public_key": kp["public_key"], "fingerprint": kp["fingerprint"]}
        if req.version >= (2, 2):
            out["type"] = kp["type"]
        if full:
            out.update(user_id=kp["user_id"], created_at=kp["created_at"], deleted=False, deleted_at=None,
                       updated_at=None, id=kp["id"])
        return out

    def keypair_owner(self, req, body_user=None) -> str:
        user = req.arg("user_id") or body_user
        if user and user != req.ctx.user_id:
            if not req.ctx.is_admin:
                raise ApiError(403, "Policy doesn't allow os_compute_api:os-keypairs to be performed.")
            return user
        return req.ctx.user_id

    def list_keypairs(self, req):
        owner = self.keypair_owner(req)
        with self.store.lock:
            kps = [k for k in self.coll("keypairs").values() if k["user_id"] == owner]
        return Response(200, {"keypairs": [{"keypair": self.keypair_view(req, k, full=False)} for k in kps]})

    def find_keypair(self, user_id: str, name: str) -> dict:
        kp = self.coll("keypairs").get("%s/%s" % (user_id, name))
        if kp is None:
            raise not_found("Keypair %s not found for user %s" % (name, user_id))
        return kp

    def get_keypair(self, req):
        with self.store.lock:
            return Response(200, {"keypair": self.keypair_view(req, self.find_keypair(
                self.keypair_owner(req), req.params["name"]))})

    def delete_keypair(self, req):
        with self.store.lock:
            kp = self.find_keypair(self.keypair_owner(req), req.params["name"])
            self.coll("keypairs").pop("%s/%s" % (kp["user_id"], kp["name"]))
            self.store.save()
        return Response(202 if req.version < (2, 2) else 204)

    def create_keypair(self, req):
        body = (req.body or {}).get("keypair") or {}
        name = body.get("name")
        if not isinstance(name, str) or not re.match(r"^[\w\-. @]{1,255}$", name):
            raise bad("Keypair data is invalid: Keypair name contains unsafe characters")
        owner = self.keypair_owner(req, body.get("user_id") if req.version >= (2, 10) else None)
        private_key = None
        public_key = body.get("public_key")
        if public_key is None:
            if req.version >= (2, 92):
                raise bad("Invalid input for field/attribute keypair. 'public_key' is a required property")
            private_key, public_key = _generate_key(name)
        match = KEY_RE.match(str(public_key).strip())
        if not match:
            raise bad("Keypair data is invalid: failed to generate fingerprint")
        try:
            raw = base64.b64decode(match.group(4), validate=True)
        except ValueError as exc:
            raise bad("Keypair data is invalid: failed to generate fingerprint") from exc
        digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        with self.store.lock:
            key = "%s/%s" % (owner, name)
            if key in self.coll("keypairs"):
                raise ApiError(409, "Key pair '%s' already exists." % name)
            count = sum(1 for k in self.coll("keypairs").values() if k["user_id"] == owner)
            if count >= DEFAULT_QUOTA["key_pairs"]:
                raise ApiError(403, "Quota exceeded, too many key pairs.")
            kp = {"id": len(self.coll("keypairs")) + 1, "name": name, "user_id": owner,
                  "public_key": str(public_key).strip(), "type": body.get("type", "ssh"),
                  "fingerprint": ":".join(digest[i:i + 2] for i in range(0, 32, 2)), "created_at": now_iso()}
            self.coll("keypairs")[key] = kp
            self.store.save()
        out = self.keypair_view(req, kp, full=False)
        out["user_id"] = owner
        if private_key:
            out["private_key"] = private_key
        return Response(201 if req.version >= (2, 2) else 200, {"keypair": out})

    # -- server groups -------------------------------------------------------------------
    def group_view(self, req, group):
        out = {"id": group["id"], "name": group["name"], "members": list(group["members"])}
        if req.version >= (2, 64):
            out.update(policy=group["policy"], rules=group.get("rules", {}))
        else:
            out.update(policies=[group["policy"]], metadata={})
        if req.version >= (2, 13):
            out.update(project_id=group["project_id"], user_id=group["user_id"])
        return out

    def find_group(self, req, group_id) -> dict:
        group = self.coll("server_groups").get(group_id)
        if group is None or not (req.ctx.is_admin or group["project_id"] == req.ctx.project_id):
            raise not_found("Instance group %s could not be found." % group_id)
        return group

    def list_groups(self, req):
        every = req.ctx.is_admin and req.arg("all_projects", "").lower() in ("1", "true", "yes")
        with self.store.lock:
            groups = [g for g in self.coll("server_groups").values() if every or g["project_id"] == req.ctx.project_id]
            return Response(200, {"server_groups": [self.group_view(req, g) for g in groups]})

    def get_group(self, req):
        with self.store.lock:
            return Response(200, {"server_group": self.group_view(req, self.find_group(req, req.params["id"]))})

    def create_group(self, req):
        body = (req.body or {}).get("server_group") or {}
        if req.version >= (2, 64):
            policy, rules = body.get("policy"), body.get("rules") or {}
        else:
            policies = body.get("policies") or []
            if len(policies) != 1:
                raise bad("Invalid input for field/attribute policies.")
            policy, rules = policies[0], {}
        if policy not in POLICIES:
            raise bad("Invalid input for field/attribute policy. Value: %s. %r is not one of %s" % (
                policy, policy, list(POLICIES)))
        if not body.get("name"):
            raise bad("Invalid input for field/attribute name.")
        with self.store.lock:
            project = req.ctx.project_id
            count = sum(1 for g in self.coll("server_groups").values() if g["project_id"] == project)
            if count >= self.quota(project)["server_groups"]:
                raise ApiError(403, "Quota exceeded, too many server groups.")
            group = {"id": new_id(), "name": body["name"], "policy": policy, "rules": rules, "members": [],
                     "project_id": project, "user_id": req.ctx.user_id}
            self.coll("server_groups")[group["id"]] = group
            self.store.save()
            return Response(200, {"server_group": self.group_view(req, group)})

    def delete_group(self, req):
        with self.store.lock:
            group = self.find_group(req, req.params["id"])
            self.coll("server_groups").pop(group["id"])
            self.store.save()
        return Response(204)

    # -- quotas --------------------------------------------------------------------------
    def quota(self, project_id) -> dict:
        return dict(DEFAULT_QUOTA, **self.coll("quotas").get(project_id or "", {}))

    def usage(self, project_id) -> dict:
        servers = [s for s in self.coll("servers").values() if s["project_id"] == project_id]
        return {"instances": len(servers), "cores": sum(s["flavor"]["vcpus"] for s in servers),
                "ram": sum(s["flavor"]["ram"] for s in servers),
                "server_groups": sum(1 for g in self.coll("server_groups").values() if g["project_id"] == project_id)}

    def quota_project(self, req):
        project = req.params["project"]
        if project != req.ctx.project_id and not req.ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.")
        return project

    def get_quota(self, req):
        with self.store.lock:
            project = self.quota_project(req)
            quota = self.quota(project)
            if req.arg("usage", "").lower() in ("1", "true"):
                used = self.usage(project)
                quota = {k: {"limit": v, "in_use": used.get(k, 0), "reserved": 0} for k, v in quota.items()}
            return Response(200, {"quota_set": dict(quota, id=project)})

    def get_quota_detail(self, req):
        req.query["usage"] = ["true"]
        return self.get_quota(req)

    def get_quota_defaults(self, req):
        return Response(200, {"quota_set": dict(DEFAULT_QUOTA, id=req.params["project"])})

    def put_quota(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed.")
        body = (req.body or {}).get("quota_set") or {}
        values = {k: int(v) for k, v in body.items() if k in DEFAULT_QUOTA}
        with self.store.lock:
            self.coll("quotas").setdefault(req.params["project"], {}).update(values)
            self.store.save()
            return Response(200, {"quota_set": self.quota(req.params["project"])})

    def delete_quota(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "Policy doesn't allow os_compute_api:os-quota-sets:delete to be performed.")
        with self.store.lock:
            self.coll("quotas").pop(req.params["project"], None)
            self.store.save()
        return Response(202)

    def limits(self, req):
        with self.store.lock:
            quota, used = self.quota(req.ctx.project_id), self.usage(req.ctx.project_id)
        absolute = {"maxTotalInstances": quota["instances"], "maxTotalCores": quota["cores"],
                    "maxTotalRAMSize": quota["ram"], "maxTotalKeypairs": quota["key_pairs"],
                    "maxServerMeta": quota["metadata_items"], "maxServerGroups": quota["server_groups"],
                    "maxServerGroupMembers": quota["server_group_members"], "maxPersonality": 5,
                    "maxPersonalitySize": 10240, "maxImageMeta": 128,
                    "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"],
                    "totalRAMUsed": used["ram"], "totalServerGroupsUsed": used["server_groups"]}
        return Response(200, {"limits": {"absolute": absolute, "rate": []}})

    def availability_zones(self, req):
        return Response(200, {"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": True},
                                                        "hosts": None}]})

    # -- servers: views ------------------------------------------------------------------
    def find_server(self, req, server_id) -> dict:
        server = self.coll("servers").get(server_id)
        if server is None or not (req.ctx.is_admin or server["project_id"] == req.ctx.project_id):
            raise not_found("Instance %s could not be found." % server_id)
        return server

    def addresses(self, server) -> dict:
        out: dict[str, list] = {}
        nets = self.neutron.coll("networks")
        for port in self.neutron.ports_of_device(server["id"]):
            label = nets.get(port["network_id"], {}).get("name") or port["network_id"]
            entries = out.setdefault(label, [])
            for ip in port["fixed_ips"]:
                entries.append({"addr": ip["ip_address"], "version": ipaddress.ip_address(ip["ip_address"]).version,
                                "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]})
            for fip in self.neutron.floating_for_ports([port["id"]]):
                entries.append({"addr": fip["floating_ip_address"], "version": 4, "OS-EXT-IPS:type": "floating",
                                "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]})
        return out

    def server_view(self, req, server, detail=True):  # noqa: PLR0912 - one branch per microversion
        out = {"id": server["id"], "name": server["name"], "links": self.link(req, "servers", server["id"])}
        if not detail:
            return out
        flavor = server["flavor"]
        if req.version >= (2, 47):
            flavor_out = {k: flavor[k] for k in ("vcpus", "ram", "disk", "ephemeral", "swap")}
            flavor_out.update(original_name=flavor["name"], extra_specs=flavor.get("extra_specs", {}))
        else:
            flavor_out = {"id": flavor["id"], "links": self.link(req, "flavors", flavor["id"])[1:]}
        out.update({
            "status": server["status"], "tenant_id": server["project_id"], "user_id": server["user_id"],
            "metadata": dict(server["metadata"]), "hostId": hashlib.sha224(
                (server["project_id"] + server["host"]).encode()).hexdigest(),
            "image": {"id": server["image_id"], "links": self.link(req, "images", server["image_id"])[1:]},
            "flavor": flavor_out, "created": server["created"], "updated": server["updated"],
            "addresses": self.addresses(server), "accessIPv4": "", "accessIPv6": "",
            "OS-DCF:diskConfig": "MANUAL", "progress": 100 if server["status"] == "ACTIVE" else 0,
            "OS-EXT-AZ:availability_zone": "nova", "config_drive": "", "key_name": server["key_name"],
            "OS-SRV-USG:launched_at": server.get("launched_at"), "OS-SRV-USG:terminated_at": None,
            "OS-EXT-STS:task_state": server.get("task_state"), "OS-EXT-STS:vm_state": server["vm_state"],
            "OS-EXT-STS:power_state": server["power_state"], "os-extended-volumes:volumes_attached": [],
            "security_groups": [{"name": n} for n in server["security_groups"]],
        })
        if req.ctx.is_admin:
            out.update({"OS-EXT-SRV-ATTR:host": server["host"], "OS-EXT-SRV-ATTR:hypervisor_hostname": server["host"],
                        "OS-EXT-SRV-ATTR:instance_name": server["container"]})
            if req.version >= (2, 3):
                out.update({"OS-EXT-SRV-ATTR:hostname": server["hostname"], "OS-EXT-SRV-ATTR:launch_index": 0,
                            "OS-EXT-SRV-ATTR:reservation_id": server["reservation_id"],
                            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda", "OS-EXT-SRV-ATTR:kernel_id": "",
                            "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:user_data": server.get("user_data")})
        if server.get("fault"):
            out["fault"] = dict(server["fault"])
        if req.version >= (2, 9):
            out["locked"] = False
        if req.version >= (2, 19):
            out["description"] = server.get("description")
        if req.version >= (2, 26):
            out["tags"] = list(server.get("tags", []))
        if req.version >= (2, 63):
            out["trusted_image_certificates"] = None
        if req.version >= (2, 71):
            out["server_groups"] = [server["group_id"]] if server.get("group_id") else []
        if req.version >= (2, 73):
            out["locked_reason"] = None
        if req.version >= (2, 90):
            out["OS-EXT-SRV-ATTR:hostname"] = server["hostname"]
        if req.version >= (2, 96):
            out["pinned_availability_zone"] = None
        return out

    def list_servers(self, req):
        detail = req.path.endswith("/detail")
        every = req.ctx.is_admin and req.arg("all_tenants", req.arg("all_projects", "")).lower() in ("1", "true", "")
        every = every and ("all_tenants" in req.query or "all_projects" in req.query)
        with self.store.lock:
            servers = [s for s in self.coll("servers").values() if every or s["project_id"] == req.ctx.project_id]
            if req.ctx.is_admin and req.arg("project_id", req.arg("tenant_id")):
                project = req.arg("project_id", req.arg("tenant_id"))
                servers = [s for s in self.coll("servers").values() if s["project_id"] == project]
            for key in ("name", "ip"):
                if req.arg(key):
                    pattern = re.compile(req.arg(key))
                    if key == "name":
                        servers = [s for s in servers if pattern.search(s["name"])]
                    else:
                        servers = [s for s in servers if any(pattern.search(a["addr"]) for addrs in
                                                             self.addresses(s).values() for a in addrs)]
            for key, field in (("status", "status"), ("image", "image_id"), ("flavor", "flavor_id"),
                               ("key_name", "key_name"), ("host", "host")):
                if req.arg(key):
                    servers = [s for s in servers if str(s.get(field, "")).upper() == req.arg(key).upper()]
            servers.sort(key=lambda s: (s["created"], s["id"]), reverse=True)
            if req.arg("marker"):
                ids = [s["id"] for s in servers]
                if req.arg("marker") not in ids:
                    raise bad("marker [%s] not found" % req.arg("marker"))
                servers = servers[ids.index(req.arg("marker")) + 1:]
            body = {}
            if req.arg("limit"):
                limit = int(req.arg("limit"))
                if len(servers) > limit:
                    servers = servers[:limit]
                    body["servers_links"] = [{"rel": "next", "href": "%s/v2.1/servers%s?limit=%d&marker=%s" % (
                        req.base_url, "/detail" if detail else "", limit, servers[-1]["id"])}]
            body["servers"] = [self.server_view(req, s, detail) for s in servers]
        return Response(200, body)

    def get_server(self, req):
        server_id = req.params["id"]
        with self.store.lock:
            server = self.find_server(req, server_id)
            if server["status"] == "BUILD" and self.build_hold > 0:
                # Nova would answer BUILD at once; a short hold spares the SDK's 5 s poll interval.
                self.store.changed.wait_for(
                    lambda: self.coll("servers").get(server_id, {}).get("status") != "BUILD", timeout=self.build_hold)
                server = self.find_server(req, server_id)
            return Response(200, {"server": self.server_view(req, server)})

    def update_server(self, req):
        body = (req.body or {}).get("server") or {}
        with self.store.lock:
            server = self.find_server(req, req.params["id"])
            if "name" in body:
                server["name"] = str(body["name"])
            if "description" in body and req.version >= (2, 19):
                server["description"] = body["description"]
            server["updated"] = now_iso()
            self.store.save()
            return Response(200, {"server": self.server_view(req, server)})

    # -- servers: create -----------------------------------------------------------------
    @staticmethod
    def parse_create(outer) -> dict:
        """The request body checked for shape (no lookups yet)."""
        body = (outer or {}).get("server")
        if not isinstance(body, dict):
            raise bad("Invalid input for field/attribute server.")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise bad("Invalid input for field/attribute name.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise bad("Invalid input for field/attribute metadata.")
        try:
            min_count = int(body.get("min_count", 1))
            max_count = int(body.get("max_count", min_count))
        except (TypeError, ValueError) as exc:
            raise bad("Invalid input for field/attribute min_count.") from exc
        if min_count < 1 or max_count < min_count:
            raise bad("min_count must be <= max_count")
        if body.get("availability_zone") not in (None, "", "nova"):
            raise bad("The requested availability zone is not available")
        if body.get("block_device_mapping_v2") or not body.get("imageRef"):
            raise bad("Block device mappings and volume-backed servers are not supported by the test cloud; "
                      "give imageRef.")
        hints = outer.get("OS-SCH-HNT:scheduler_hints") or outer.get("os:scheduler_hints") or {}
        return {"body": body, "name": name, "metadata": metadata, "min_count": min_count, "max_count": max_count,
                "group": hints.get("group"), "sg_names": [g.get("name") for g in body.get("security_groups") or []]
                or ["default"]}

    def resolve_create(self, req, spec) -> dict:
        """Flavor, image, key pair, group, security groups and networks of a create request."""
        body, project = spec["body"], req.ctx.project_id
        flavor = self.coll("flavors").get(str(body.get("flavorRef", "")).rstrip("/").rsplit("/", 1)[-1])
        if flavor is None:
            raise bad("Flavor %s could not be found." % body.get("flavorRef"))
        image_ref = str(body["imageRef"]).rstrip("/").rsplit("/", 1)[-1]
        image = self.glance.images().get(image_ref)
        if image is None or not (image["visibility"] == "public" or req.ctx.is_admin or image.get("owner") == project):
            raise bad("Image %s could not be found." % image_ref)
        if image["status"] != "active":
            raise bad("Image %s is not active." % image_ref)
        # Nova's own checks of a flavor against the image's minimums (FlavorMemoryTooSmall, FlavorDiskTooSmall).
        if flavor["ram"] < int(image.get("min_ram") or 0):
            raise bad("Flavor's memory is too small for requested image.")
        if flavor["disk"] and flavor["disk"] < int(image.get("min_disk") or 0):
            raise bad("Flavor's disk is too small for requested image.")
        keypair = None
        if body.get("key_name"):
            keypair = self.coll("keypairs").get("%s/%s" % (req.ctx.user_id, body["key_name"]))
            if keypair is None:
                raise bad("Invalid key_name provided.")
        group = None
        if spec["group"]:
            group = self.coll("server_groups").get(spec["group"])
            if group is None or not (req.ctx.is_admin or group["project_id"] == project):
                raise bad("Invalid server group %s" % spec["group"])
            if self.quota(project)["server_group_members"] - len(group["members"]) < spec["min_count"]:
                raise ApiError(403, "Quota exceeded, too many servers in group")
        if len(spec["metadata"]) > self.quota(project)["metadata_items"]:
            raise ApiError(403, "Quota exceeded for metadata_items: Requested %d, but already used 0 of %d "
                           "metadata_items" % (len(spec["metadata"]), self.quota(project)["metadata_items"]))
        self.neutron.default_security_group(project)
        try:
            sg_ids = self.neutron.resolve_security_groups(req, project, spec["sg_names"])
        except ApiError as exc:
            raise bad("Security group %s not found for project %s." % (exc.message.split()[2], project)) from exc
        return {"flavor": flavor, "image": image, "keypair": keypair, "group": group, "sg_ids": sg_ids,
                "requested": self.requested_networks(req, body.get("networks"), project)}

    def create_server(self, req):
        spec = self.parse_create(req.body)
        project = req.ctx.project_id
        with self.store.lock:
            refs = self.resolve_create(req, spec)
            flavor = refs["flavor"]
            self.check_quota(project, flavor, spec["min_count"])
            count = spec["max_count"]
            quota, used = self.quota(project), self.usage(project)
            for res, per in (("instances", 1), ("cores", flavor["vcpus"]), ("ram", flavor["ram"])):
                if quota[res] >= 0:
                    count = min(count, (quota[res] - used[res]) // per)
            reservation = "r-" + secrets.token_hex(4)
            created = []
            for index in range(count):
                name = spec["name"] if count == 1 else "%s-%d" % (spec["name"], index + 1)
                created.append(self.new_server(req, spec, refs, name, reservation))
            self.store.save()
        for server in created:
            threading.Thread(target=self.build, args=(server["id"],), name="build-" + server["id"][:8],
                             daemon=True).start()
        first = created[0]
        if spec["body"].get("return_reservation_id"):
            return Response(202, {"reservation_id": reservation})
        out = {"id": first["id"], "links": self.link(req, "servers", first["id"]), "OS-DCF:diskConfig": "MANUAL",
               "security_groups": [{"name": n} for n in first["security_groups"]],
               "adminPass": secrets.token_urlsafe(9)}
        return Response(202, {"server": out}, {"Location": "%s/v2.1/servers/%s" % (req.base_url, first["id"])})

    def check_quota(self, project, flavor, min_count):
        quota, used = self.quota(project), self.usage(project)
        for res, per in (("instances", 1), ("cores", flavor["vcpus"]), ("ram", flavor["ram"])):
            if quota[res] >= 0 and used[res] + per * min_count > quota[res]:
                raise ApiError(403, "Quota exceeded for %s: Requested %d, but already used %d of %d %s" % (
                    res, per * min_count, used[res], quota[res], res))
        ports = self.neutron.quota(project)["port"]
        used_ports = sum(1 for p in self.neutron.coll("ports").values() if p["project_id"] == project)
        if ports >= 0 and used_ports + min_count > ports:
            raise ApiError(403, "Maximum number of ports exceeded")

    def requested_networks(self, req, networks, project) -> list[dict]:
        """[{network, fixed_ip} | {port}] from the request (or the one network the project may use)."""
        if networks == "none":
            return []
        if networks in (None, "auto", []):
            nets = [n for n in self.neutron.coll("networks").values() if not n.get("router:external") and n["subnets"]
                    and (n["project_id"] == project or n.get("shared"))]
            own = [n for n in nets if n["project_id"] == project]
            nets = own or nets
            if not nets:
                raise bad("No network is available to project %s; create one or pass networks." % project)
            if len(nets) > 1:
                raise ApiError(409, "Multiple possible networks found, use a Network ID to be more specific.")
            return [{"network": nets[0]["id"]}]
        out = []
        for item in networks:
            if item.get("port"):
                port = self.neutron.coll("ports").get(item["port"])
                if port is None or not (req.ctx.is_admin or port["project_id"] == project):
                    raise bad("Port %s could not be found." % item["port"])
                if port["device_id"]:
                    raise ApiError(409, "Port %s is still in use." % item["port"])
                out.append({"port": port["id"]})
                continue
            net = self.neutron.coll("networks").get(item.get("uuid") or "")
            if net is None or not self.neutron.visible(req, "networks", net):
                raise bad("Network %s could not be found." % item.get("uuid"))
            if item.get("fixed_ip"):
                try:
                    ipaddress.ip_address(item["fixed_ip"])
                except ValueError as exc:
                    raise bad("Invalid fixed IP address (%s)" % item["fixed_ip"]) from exc
            out.append({"network": net["id"], "fixed_ip": item.get("fixed_ip")})
        return out

    def new_server(self, req, spec, refs, name, reservation) -> dict:
        server_id = new_id()
        ports = self.neutron.coll("ports")
        created_ports, bound_ports = [], []
        flavor, image, keypair, group = refs["flavor"], refs["image"], refs["keypair"], refs["group"]
        for item in refs["requested"]:
            if "port" in item:
                ports[item["port"]].update(device_id=server_id, device_owner="compute:nova", status="ACTIVE",
                                           **{"binding:host_id": "testcloud"})
                bound_ports.append(item["port"])
                continue
            net = self.neutron.coll("networks")[item["network"]]
            fixed = [{"ip_address": item["fixed_ip"]}] if item.get("fixed_ip") else None
            try:
                fixed_ips = self.neutron.fixed_ips_for(net, fixed)
            except ApiError as exc:
                for pid in created_ports:
                    ports.pop(pid, None)
                raise ApiError(409 if exc.status == 409 else 400, exc.message) from exc
            port = self.neutron.port_body({"network_id": net["id"], "fixed_ips": fixed_ips, "device_id": server_id,
                                           "device_owner": "compute:nova", "security_groups": refs["sg_ids"],
                                           "binding:host_id": "testcloud"}, req.ctx.project_id)
            ports[port["id"]] = port
            created_ports.append(port["id"])
        host = "compute-" + server_id[:8]
        if group and group["policy"] in ("affinity", "soft-affinity") and group["members"]:
            host = self.coll("servers").get(group["members"][0], {}).get("host", host)
        ts = now_iso()
        server = {
            "id": server_id, "name": name, "hostname": hostname_of(name), "project_id": req.ctx.project_id or "",
            "user_id": req.ctx.user_id, "status": "BUILD", "vm_state": "building", "task_state": "spawning",
            "power_state": 0, "flavor_id": flavor["id"], "flavor": dict(flavor), "image_id": image["id"],
            "docker_image": image.get("docker_image"), "key_name": keypair["name"] if keypair else None,
            "public_key": keypair["public_key"] if keypair else None, "metadata": dict(spec["metadata"]),
            "security_groups": spec["sg_names"], "created": ts, "updated": ts, "host": host,
            "container": "testcloud-" + server_id[:8], "group_id": group["id"] if group else None,
            "created_ports": created_ports, "bound_ports": bound_ports, "reservation_id": reservation,
            "description": spec["body"].get("description"), "tags": list(spec["body"].get("tags") or []),
            "user_data": spec["body"].get("user_data"), "fault": None}
        self.coll("servers")[server_id] = server
        if group:
            group["members"].append(server_id)
        return server

    # -- servers: the data plane ---------------------------------------------------------
    def lock_for(self, server_id) -> threading.Lock:
        with self.store.lock:
            return self.host_locks.setdefault(server_id, threading.Lock())

    def set_state(self, server_id, status, **fields) -> None:
        with self.store.lock:
            server = self.coll("servers").get(server_id)
            if server is None:
                return
            server.update(status=status, updated=now_iso(), **fields)
            self.store.save()

    def fail(self, server_id, message) -> None:
        LOG.warning("server %s: %s", server_id, message)
        self.set_state(server_id, "ERROR", vm_state="error", task_state=None, power_state=0,
                       fault={"code": 500, "created": now_iso(), "message": message})

    def networks_of(self, server) -> list[tuple[str, str]]:
        """[(docker network, ip)] for the server's ports (fixed IPs), first port first."""
        with self.store.lock:
            pairs = [(p["network_id"], p["fixed_ips"][0]["ip_address"])
                     for p in self.neutron.ports_of_device(server["id"]) if p["fixed_ips"]]
        return [(self.docker_network(net_id), ip) for net_id, ip in pairs]

    def docker_network(self, net_id) -> str:
        with self.store.lock:
            net = self.neutron.coll("networks")[net_id]
            subnets = [(s["cidr"], s["gateway_ip"]) for s in self.neutron.coll("subnets").values()
                       if s["network_id"] == net_id]
            external = bool(net.get("router:external"))
        return self.plane.ensure_network(net_id, net["name"], subnets, external)

    def build(self, server_id) -> None:
        with self.store.lock:
            server = self.coll("servers").get(server_id)
            if server is None:
                return
            server = dict(server)
        fail = server["metadata"].get(FAIL_KEY)
        if fail and fail.lower() != "false":
            self.fail(server_id, "Build of instance %s aborted: %s" % (
                server_id, "injected failure (metadata %s)" % FAIL_KEY if fail.lower() == "true" else fail))
            return
        if self.plane is None:
            self.set_state(server_id, "ACTIVE", vm_state="active", task_state=None, power_state=1,
                           launched_at=now_iso())
            return
        try:
            with self.lock_for(server_id):
                if server_id not in self.coll("servers"):
                    return
                networks = self.networks_of(server)
                self.plane.run_host(server["container"], hostname=server["hostname"], image=server["docker_image"],
                                    networks=networks, kind="server", owner=server_id, public_key=server["public_key"])
            self.replumb(server_id)
            if networks:
                self.plane.wait_ssh(server["container"], networks[0][1], timeout=self.boot_timeout,
                                    cancelled=lambda: server_id not in self.coll("servers"))
        except (DataPlaneError, OSError) as exc:
            self.fail(server_id, "Build of instance %s aborted: %s" % (server_id, exc))
            return
        except Exception as exc:
            LOG.exception("build of %s failed", server_id)
            self.fail(server_id, "Build of instance %s aborted: %s" % (server_id, exc))
            return
        self.set_state(server_id, "ACTIVE", vm_state="active", task_state=None, power_state=1, launched_at=now_iso())

    def wanted_networks(self, server) -> dict[str, str]:
        wanted = dict(self.networks_of(server))
        with self.store.lock:
            ports = [p["id"] for p in self.neutron.ports_of_device(server["id"])]
            fips = [dict(f) for f in self.neutron.floating_for_ports(ports)]
        for fip in fips:
            wanted[self.docker_network(fip["floating_network_id"])] = fip["floating_ip_address"]
        return wanted

    def replumb(self, server_id) -> None:
        """Put the server's container on its fixed networks and, at each floating IP, on the
        external network's bridge (a floating IP is an extra interface, not NAT)."""
        if self.plane is None:
            return
        with self.store.lock:
            server = self.coll("servers").get(server_id)
            server = dict(server) if server else None
        if server is None:
            return
        with self.lock_for(server_id):
            if server_id in self.coll("servers"):
                self.plane.sync_networks(server["container"], self.wanted_networks(server))

    def replumb_ports(self, port_ids) -> None:
        with self.store.lock:
            ports = self.neutron.coll("ports")
            servers = {ports[p]["device_id"] for p in port_ids if p in ports}
            servers = [s for s in servers if s in self.coll("servers")]
        for server_id in servers:
            try:
                self.replumb(server_id)
            except (DataPlaneError, OSError) as exc:
                LOG.warning("floating IP plumbing of %s failed: %s", server_id, exc)

    # -- servers: delete and actions -----------------------------------------------------
    def delete_server(self, req):
        with self.store.lock:
            server = self.find_server(req, req.params["id"])
            self.release(server)
            self.store.save()
        if self.plane is not None:
            with self.lock_for(server["id"]):
                self.plane.remove_host(server["container"])
        with self.store.lock:
            self.host_locks.pop(server["id"], None)
        return Response(204)

    def release(self, server) -> None:
        """Forget a server: its own ports go (their floating IPs are disassociated), ports the
        user gave are detached, and it leaves its server group."""
        ports = self.neutron.coll("ports")
        for port in self.neutron.ports_of_device(server["id"]):
            if port["id"] in server["created_ports"]:
                self.neutron.delete_port(None, port)
                ports.pop(port["id"], None)
            else:
                port.update(device_id="", device_owner="", status="DOWN", **{"binding:host_id": ""})
        group = self.coll("server_groups").get(server.get("group_id") or "")
        if group and server["id"] in group["members"]:
            group["members"].remove(server["id"])
        self.coll("servers").pop(server["id"], None)

    def server_action(self, req):
        body = req.body or {}
        action = next(iter(body), None)
        with self.store.lock:
            server = dict(self.find_server(req, req.params["id"]))
        if action in ("os-stop", "os-start", "reboot"):
            wanted = {"os-stop": "ACTIVE", "os-start": "SHUTOFF", "reboot": None}[action]
            if (wanted and server["status"] != wanted) or server["status"] in ("BUILD", "ERROR"):
                raise ApiError(409, "Cannot '%s' instance %s while it is in vm_state %s" % (
                    action.replace("os-", ""), server["id"], server["vm_state"]))
            if self.plane is not None:
                with self.lock_for(server["id"]):
                    {"os-stop": self.plane.stop, "os-start": self.plane.start,
                     "reboot": self.plane.restart}[action](server["container"])
            if action == "os-stop":
                self.set_state(server["id"], "SHUTOFF", vm_state="stopped", power_state=4)
            else:
                self.set_state(server["id"], "ACTIVE", vm_state="active", power_state=1)
            return Response(202)
        if action in ("addSecurityGroup", "removeSecurityGroup"):
            name = (body[action] or {}).get("name")
            with self.store.lock:
                sg_id = self.neutron.resolve_security_groups(req, server["project_id"], [name])[0]
                live = self.coll("servers")[server["id"]]
                for port in self.neutron.ports_of_device(server["id"]):
                    groups = [g for g in port["security_groups"] if g != sg_id]
                    port["security_groups"] = [*groups, sg_id] if action == "addSecurityGroup" else groups
                names = [n for n in live["security_groups"] if n != name]
                live["security_groups"] = [*names, name] if action == "addSecurityGroup" else names
                self.store.save()
            return Response(202)
        raise bad("The test cloud does not implement server action %r" % action)

    def server_security_groups(self, req):
        with self.store.lock:
            server = self.find_server(req, req.params["id"])
            ids = {g for p in self.neutron.ports_of_device(server["id"]) for g in p["security_groups"]}
            groups = [self.neutron.coll("security_groups")[g] for g in ids if g in self.neutron.coll("security_groups")]
            return Response(200, {"security_groups": [
                {"id": g["id"], "name": g["name"], "description": g["description"], "tenant_id": g["project_id"],
                 "rules": []} for g in groups]})

    def server_interfaces(self, req):
        with self.store.lock:
            server = self.find_server(req, req.params["id"])
            return Response(200, {"interfaceAttachments": [
                {"port_id": p["id"], "net_id": p["network_id"], "mac_addr": p["mac_address"], "port_state": p["status"],
                 "fixed_ips": p["fixed_ips"]} for p in self.neutron.ports_of_device(server["id"])]})

    # -- server metadata -----------------------------------------------------------------
    def _meta_server(self, req):
        return self.find_server(req, req.params["id"])

    def get_metadata(self, req):
        with self.store.lock:
            return Response(200, {"metadata": dict(self._meta_server(req)["metadata"])})

    def _store_metadata(self, req, replace: bool):
        meta = (req.body or {}).get("metadata")
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise bad("Malformed request body: metadata must be an object of strings")
        with self.store.lock:
            server = self._meta_server(req)
            new = dict(meta) if replace else dict(server["metadata"], **meta)
            if len(new) > self.quota(server["project_id"])["metadata_items"]:
                raise ApiError(403, "Quota exceeded for metadata_items")
            server["metadata"] = new
            server["updated"] = now_iso()
            self.store.save()
            return Response(200, {"metadata": dict(new)})

    def set_metadata(self, req):
        return self._store_metadata(req, replace=True)

    def update_metadata(self, req):
        return self._store_metadata(req, replace=False)

    def get_metadata_item(self, req):
        with self.store.lock:
            meta = self._meta_server(req)["metadata"]
            if req.params["key"] not in meta:
                raise not_found("Metadata item was not found")
            return Response(200, {"meta": {req.params["key"]: meta[req.params["key"]]}})

    def set_metadata_item(self, req):
        meta = (req.body or {}).get("meta")
        if not isinstance(meta, dict) or list(meta) != [req.params["key"]]:
            raise bad("Request body and URI mismatch")
        with self.store.lock:
            server = self._meta_server(req)
            server["metadata"].update(meta)
            self.store.save()
        return Response(200, {"meta": meta})

    def delete_metadata_item(self, req):
        with self.store.lock:
            server = self._meta_server(req)
            if req.params["key"] not in server["metadata"]:
                raise not_found("Metadata item was not found")
            del server["metadata"][req.params["key"]]
            self.store.save()
        return Response(204)

    # -- start-up ------------------------------------------------------------------------
    def resume(self) -> None:
        """After a restart: finish interrupted builds; a server whose container is gone is ERROR."""
        with self.store.lock:
            servers = [dict(s) for s in self.coll("servers").values()]
        for server in servers:
            if server["status"] == "BUILD":
                threading.Thread(target=self.build, args=(server["id"],), daemon=True).start()
            elif self.plane is not None and server["status"] in ("ACTIVE", "SHUTOFF") and \
                    self.plane.inspect(server["container"]) is None:
                self.fail(server["id"], "host container %s is gone" % server["container"])


def _generate_key(name: str) -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, "%s Generated-by-Nova %s" % (public, name)


__all__ = ["Nova", "Request"]
