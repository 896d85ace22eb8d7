"""Magnum's v1 API over carina.api: cluster templates, clusters and certificates, as Magnum's clients use them.

What python-magnumclient (`openstack coe ...`) and openstacksdk send and read decides the shapes here: every
field Magnum shows is present (null when not known), names or UUIDs are accepted wherever Magnum accepts them,
errors carry the message in `errors[0].title` (what magnumclient prints). Clusters are made by
carina.api.Client, as the command line makes them; the template says the COE and the provider's options.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import threading
import time
import uuid as uuidlib

from carina import coes, paths, planning
from carina.api import Client
from carina.errors import CarinaError
from carina.service import certs
from carina.service.auth import Context
from carina.service.web import HTTPError, Request, Response, Router
from carina.store import IN_PROGRESS, Cluster, Conflict, Template

LOG = logging.getLogger("carina.service")
SERVICE = "container-infrastructure-management"
SERVICE_NAMES = {SERVICE, "container-infrastructure", "container-infra"}
MIN_VERSION, MAX_VERSION = (1, 1), (1, 14)
MAX_LIMIT = 1000
SWEEP_SECONDS = 30.0  # a user's calls look for trusts of deleted clusters at most this often
LIST_SECONDS = 2.0  # a listing is reused this long at most, while the store has not changed
LIST_CACHE = 1000  # listings kept (callers x URLs) before the cache starts over
HEALTH_SECONDS = 15  # a health probe's answer is shown this long before the next show probes again
FAILED = ("CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED", "ROLLBACK_FAILED", "RESUME_FAILED")
MAGNUM_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]*$")
CLUSTER_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_.-]{0,99}")
CLUSTER_NAME_RULE = "a letter, then up to 99 letters, digits, '_', '.' or '-'"
INTERNAL_PREFIX = 31  # of a carina name made from a Magnum name: with '-' and 8 hex digits, 40, the longest name

# Magnum's COE names of carina's COE drivers (both of Magnum's Swarm names are the one Swarm driver).
COE_ALIASES = {"swarm-mode": "swarm", "swarm": "swarm"}
MAGNUM_COE = {"swarm": "swarm-mode"}

TEMPLATE_FIELDS = {  # every field a template shows, with its default
    "name": None, "coe": None, "image_id": None, "flavor_id": None, "master_flavor_id": None, "keypair_id": None,
    "dns_nameserver": None, "external_network_id": None, "fixed_network": None, "fixed_subnet": None,
    "network_driver": None, "volume_driver": None, "apiserver_port": None, "docker_volume_size": None,
    "docker_storage_driver": None, "cluster_distro": None, "http_proxy": None, "https_proxy": None,
    "no_proxy": None, "insecure_registry": None, "server_type": "vm", "labels": {}, "tls_disabled": False,
    "public": False, "registry_enabled": False, "master_lb_enabled": False, "floating_ip_enabled": True,
    "hidden": False, "tags": None, "driver": None,
}
TEMPLATE_TYPES = {"apiserver_port": int, "docker_volume_size": int, "labels": dict, "tls_disabled": bool,
                  "public": bool, "registry_enabled": bool, "master_lb_enabled": bool, "floating_ip_enabled": bool,
                  "hidden": bool}
TEMPLATE_READ_ONLY = {"uuid", "id", "created_at", "updated_at", "links", "project_id", "user_id"}
# What a cluster takes from its template when the create leaves it out: cluster field -> template field.
FROM_TEMPLATE = {"keypair": "keypair_id", "docker_volume_size": "docker_volume_size",
                 "master_flavor_id": "master_flavor_id", "flavor_id": "flavor_id", "fixed_network": "fixed_network",
                 "fixed_subnet": "fixed_subnet", "floating_ip_enabled": "floating_ip_enabled",
                 "master_lb_enabled": "master_lb_enabled"}
CLUSTER_INPUTS = {"name", "cluster_template_id", "create_timeout", "discovery_url", "keypair", "master_count",
                  "node_count", "labels", "docker_volume_size", "master_flavor_id", "flavor_id", "fixed_network",
                  "fixed_subnet", "floating_ip_enabled", "master_lb_enabled", "merge_labels"}
BRIEF = ("uuid", "name", "cluster_template_id", "keypair", "docker_volume_size", "labels", "node_count",
         "master_count", "status", "health_status", "master_flavor_id", "flavor_id", "create_timeout", "links")
# Labels Magnum's Kubernetes templates use, as the COE options they mean.
LABEL_OPTIONS = {"kube_tag": ("kubernetes_version", lambda value: value.lstrip("v")),
                 "flannel_network_cidr": ("pod_cidr", str), "calico_ipv4pool": ("pod_cidr", str),
                 "service_cluster_ip_range": ("service_cidr", str), "dns_cluster_domain": ("cluster_domain", str)}


def internal_name(client: Client, name: str, cluster_id: str) -> str:
    """The carina name of a cluster Magnum's clients call `name`: the name itself when it is a carina name no
    one uses, else one made from it and the cluster's id. Magnum's names are per project; carina's (state
    folders, host names) are the machine's, so two projects may each have their `web`."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", (name or "cluster").lower())).strip("-")
    slug = slug if slug[:1].isalpha() else f"c-{slug}".rstrip("-")
    taken = {c.name for c in client.store.list_clusters()}
    if slug in taken or paths.state_dir(client.home, slug).exists() or not planning.spec().valid_name(slug):
        slug = f"{slug[:INTERNAL_PREFIX].rstrip('-')}-{cluster_id[:8]}"
    return slug


def iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def dashed(hex32: str) -> str:
    """A carina id (32 hex digits) as Magnum writes uuids: 8-4-4-4-12, lower case."""
    if len(hex32) == 32 and "-" not in hex32:
        h = hex32.lower()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return str(uuidlib.UUID(hex=hex32)) if hex32 else ""


def uuid_like(text: str) -> bool:
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return True


def write_private(path, text: str) -> None:
    """A file only the service reads (0600, in a 0700 folder), written whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def shown_name(cluster: Cluster) -> str:
    """The name Magnum's clients gave the cluster (its carina name may differ, see MagnumAPI.internal_name)."""
    return (cluster.extra or {}).get("name") or cluster.name


class MagnumAPI:
    """The WSGI application of Magnum's API (mounted at / and /v1)."""

    def __init__(self, client: Client, authenticate, cloud: dict | None = None):
        self.client = client
        self.authenticate = authenticate
        self.cloud = dict(cloud or {})  # [cloud] of the config: clusters on OpenStack, else on this machine
        self.health: dict[str, tuple[float, coes.Health]] = {}
        self.probing: set[str] = set()  # the clusters whose probe runs in the background
        self.deleting: set[str] = set()  # the clusters whose run is being stopped before their delete
        self.swept: dict[str, float] = {}  # when each user's call last looked for trusts to delete
        self.listings: dict[tuple, tuple[tuple, float, bytes]] = {}  # the last listing per caller and URL
        self.lock = threading.Lock()
        self.router = Router()
        r = self.router.add
        r("GET", "/", self.root)
        r("GET", "/v1", self.v1)
        r("GET", "/v1/clustertemplates", self.list_templates)
        r("GET", "/v1/clustertemplates/detail", self.list_templates)
        r("POST", "/v1/clustertemplates", self.create_template)
        r("GET", "/v1/clustertemplates/{ident}", self.show_template)
        r("PATCH", "/v1/clustertemplates/{ident}", self.update_template)
        r("DELETE", "/v1/clustertemplates/{ident}", self.delete_template)
        r("GET", "/v1/clusters", self.list_clusters)
        r("GET", "/v1/clusters/detail", self.list_clusters_detail)
        r("POST", "/v1/clusters", self.create_cluster)
        r("GET", "/v1/clusters/{ident}", self.show_cluster)
        r("PATCH", "/v1/clusters/{ident}", self.update_cluster)
        r("DELETE", "/v1/clusters/{ident}", self.delete_cluster)
        r("POST", "/v1/clusters/{ident}/actions/resize", self.resize_cluster)
        r("GET", "/v1/certificates/{ident}", self.show_ca)
        r("POST", "/v1/certificates", self.sign_certificate)

    # -- WSGI -------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        headers = [("X-OpenStack-Request-Id", request.id)]
        try:
            if request.path.startswith("/v1"):
                version = self.version(request)
                request.context["version"] = version
                text = f"{version[0]}.{version[1]}"
                headers += [("OpenStack-API-Minimum-Version", f"{SERVICE} {MIN_VERSION[0]}.{MIN_VERSION[1]}"),
                            ("OpenStack-API-Maximum-Version", f"{SERVICE} {MAX_VERSION[0]}.{MAX_VERSION[1]}"),
                            ("OpenStack-API-Version", f"{SERVICE} {text}"), ("Vary", "OpenStack-API-Version")]
            handler = self.router.find(request)
            if request.path.rstrip("/") not in ("", "/v1"):
                request.context["who"] = self.authenticate(request)
                self.sweep_trusts(request.context["who"])
            response = handler(request)
        except HTTPError as exc:
            response = error_response(exc, request)
        except Conflict as exc:
            response = error_response(HTTPError(409, str(exc)), request)
        except CarinaError as exc:
            response = error_response(HTTPError(400, str(exc)), request)
        response.headers = headers + response.headers
        return response

    @staticmethod
    def version(request: Request) -> tuple[int, int]:
        """The microversion asked for (OpenStack-API-Version), 1.1 when none; 406 outside 1.1..1.14."""
        value = request.header("OpenStack-API-Version").strip()
        if not value:
            return MIN_VERSION
        words = value.split()
        if len(words) != 2 or words[0].lower() not in SERVICE_NAMES:
            raise HTTPError(406, f"OpenStack-API-Version {value!r}: give '{SERVICE} X.Y' (or 'latest')")
        if words[1].lower() == "latest":
            return MAX_VERSION
        match = re.fullmatch(r"(\d+)\.(\d+)", words[1])
        version = (int(match[1]), int(match[2])) if match else None
        if version is None or not MIN_VERSION <= version <= MAX_VERSION:
            raise HTTPError(406, f"Version {words[1]} was requested but the minimum supported version is "
                                 f"{MIN_VERSION[0]}.{MIN_VERSION[1]} and the maximum is "
                                 f"{MAX_VERSION[0]}.{MAX_VERSION[1]}")
        return version

    # -- versions ---------------------------------------------------------------------------
    def root(self, request: Request) -> Response:
        return Response(200, {
            "name": "OpenStack Magnum API (carina)",
            "description": "Container clusters made by the rax.carina collection, through Magnum's API.",
            "versions": [{"id": "v1", "status": "CURRENT", "min_version": "%d.%d" % MIN_VERSION,
                          "max_version": "%d.%d" % MAX_VERSION,
                          "links": [{"href": request.url("/v1/"), "rel": "self"}]}]})

    def v1(self, request: Request) -> Response:
        body = {"id": "v1", "links": [{"href": request.url("/v1/"), "rel": "self"},
                                      {"href": request.url("/openapi.json"), "rel": "describedby",
                                       "type": "application/json"}],
                "media_types": [{"base": "application/json", "type": "application/vnd.openstack.magnum.v1+json"}]}
        for name in ("clustertemplates", "clusters", "certificates"):
            body[name] = [{"href": request.url(f"/v1/{name}/"), "rel": "self"},
                          {"href": request.url(f"/{name}/"), "rel": "bookmark"}]
        return Response(200, body)

    # -- cluster templates -----------------------------------------------------------------
    def _templates(self, who: Context) -> list[Template]:
        return [t for t in self.client.store.list_templates() if t.public or who.owns(t.project)]

    def _template(self, request: Request, ident: str, status: int = 404) -> Template:
        found = [t for t in self._templates(request.context["who"])
                 if (t.uuid == ident.lower() if uuid_like(ident) else t.name == ident)]
        if not found:
            raise HTTPError(status, f"ClusterTemplate {ident} could not be found")
        if len(found) > 1:
            raise HTTPError(409, f"Multiple cluster templates exist with name {ident}; use the uuid instead")
        return found[0]

    def template_view(self, request: Request, template: Template) -> dict:
        view = dict(TEMPLATE_FIELDS) | template.body
        view.update(uuid=template.uuid, name=template.name, public=template.public,
                    project_id=template.project or None, user_id=template.body.get("user_id"),
                    created_at=iso(template.created_at), updated_at=iso(template.updated_at),
                    links=links(request, "clustertemplates", template.uuid))
        return view

    def list_templates(self, request: Request) -> Response:
        views = [self.template_view(request, t) for t in self._templates(request.context["who"])]
        items, next_url = page(request, views, "clustertemplates")
        return Response(200, {"clustertemplates": items, **({"next": next_url} if next_url else {})})

    def show_template(self, request: Request) -> Response:
        return Response(200, self.template_view(request, self._template(request, request.params["ident"])))

    def create_template(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "a cluster template is a JSON object")
        who: Context = request.context["who"]
        fields = self.template_fields(body, creating=True)
        if fields.get("public") and not who.is_admin:
            raise HTTPError(403, "only an admin may publish a cluster template (public: true)")
        name = fields.pop("name", None) or f"template-{uuidlib.uuid4().hex[:8]}"
        template = Template(uuid=str(uuidlib.uuid4()), name=name, project=who.project_id,
                            public=bool(fields.pop("public", False)),
                            body=fields | {"user_id": who.user_id or None})
        self.client.store.put_template(template)
        view = self.template_view(request, template)
        return Response(201, view, headers=[("Location", view["links"][0]["href"])])

    def update_template(self, request: Request) -> Response:
        template = self._template(request, request.params["ident"])
        who: Context = request.context["who"]
        if not who.owns(template.project):
            raise HTTPError(403, f"ClusterTemplate {template.name} belongs to another project")
        current = self.template_view(request, template)
        changed = apply_patch(current, request.json(), TEMPLATE_READ_ONLY)
        fields = self.template_fields({k: v for k, v in changed.items() if k in TEMPLATE_FIELDS}, creating=False)
        if fields.get("public") and not template.public and not who.is_admin:
            raise HTTPError(403, "only an admin may publish a cluster template (public: true)")
        in_use = [shown_name(c) for c in self.client.store.list_clusters()
                  if (c.extra or {}).get("cluster_template_id") == template.uuid]
        moved = sorted(k for k in ("coe", "image_id", "server_type", "tls_disabled")
                       if fields.get(k) != current.get(k))
        if in_use and moved:
            raise HTTPError(400, f"ClusterTemplate {template.name} is referenced by clusters ({', '.join(in_use)}); "
                                 f"{', '.join(moved)} cannot change")
        template.name = fields.pop("name", None) or template.name
        template.public = bool(fields.pop("public", template.public))
        template.body = {k: v for k, v in fields.items()} | {"user_id": template.body.get("user_id")}
        self.client.store.put_template(template)
        return Response(200, self.template_view(request, template))

    def delete_template(self, request: Request) -> Response:
        template = self._template(request, request.params["ident"])
        if not request.context["who"].owns(template.project):
            raise HTTPError(403, f"ClusterTemplate {template.name} belongs to another project")
        users = [shown_name(c) for c in self.client.store.list_clusters()
                 if (c.extra or {}).get("cluster_template_id") == template.uuid]
        if users:
            raise HTTPError(400, f"ClusterTemplate {template.name} is referenced by one or multiple clusters "
                                 f"({', '.join(sorted(users))})")
        self.client.store.delete_template(template.uuid)
        return Response(204)

    def template_fields(self, body: dict, creating: bool) -> dict:
        """The template's fields from a request, typed and checked: 400 naming every problem."""
        problems: list[str] = []
        fields: dict = {}
        for key, value in body.items():
            # Read-only fields, and those of other Magnum releases (merge_labels, ...), are ignored.
            if key in TEMPLATE_FIELDS and key not in TEMPLATE_READ_ONLY:
                fields[key] = typed(key, value, problems)
        labels = fields.get("labels") or {}
        if any(not isinstance(k, str) or not isinstance(v, str | int | float | bool) for k, v in labels.items()):
            problems.append("labels: a map of names to text")
        fields["labels"] = {k: str(v) for k, v in labels.items()}
        if "name" in fields and fields["name"] is not None and not MAGNUM_NAME.match(str(fields["name"])):
            problems.append(f"name {fields['name']!r}: a letter first, then letters, digits, '_', '.' or '-'")
        if creating or "coe" in fields:
            coe = fields.get("coe")
            known = self.coes()
            if not coe:
                problems.append(f"coe: required, one of {', '.join(known)}")
            elif coe not in known:
                problems.append(f"coe {coe!r} is not supported; choose one of {', '.join(known)}")
        if creating and not fields.get("image_id"):
            problems.append("image_id: required (the image of the cluster's hosts)")
        if fields.get("server_type") not in (None, "vm", "bm"):
            problems.append(f"server_type {fields['server_type']!r}: vm or bm")
        if fields.get("tls_disabled"):
            problems.append("tls_disabled: carina clusters always use TLS")
        if fields.get("docker_volume_size") is not None and fields["docker_volume_size"] < 1:
            problems.append("docker_volume_size: at least 1 (GB)")
        if problems:
            raise HTTPError(400, "; ".join(problems))
        return {k: v for k, v in fields.items()}

    @staticmethod
    def coes() -> list[str]:
        """The COE names a template may give: carina's drivers, and Magnum's names of them."""
        drivers = sorted(planning.contracts())
        return sorted({*drivers, *(alias for alias, coe in COE_ALIASES.items() if coe in drivers)})

    # -- clusters ---------------------------------------------------------------------------
    def _clusters(self, who: Context) -> list[Cluster]:
        return [c for c in self.client.list() if who.owns(c.project)]

    def _cluster(self, request: Request, ident: str, status: int = 404) -> Cluster:
        who: Context = request.context["who"]
        if uuid_like(ident):
            try:
                found = [self.client.find(ident)]
            except CarinaError:
                found = []
        else:
            found = [c for c in self._clusters(who) if shown_name(c) == ident]
        found = [c for c in found if who.owns(c.project)]
        if not found:
            raise HTTPError(status, f"Cluster {ident} could not be found")
        if len(found) > 1:  # an admin sees every project's, and names are per project
            raise HTTPError(409, f"Multiple clusters exist with same name {ident}; use the uuid (projects "
                                 f"{', '.join(sorted(c.project or '-' for c in found))})")
        return found[0]

    def cluster_view(self, request: Request, cluster: Cluster, full: bool = True, probe: bool | None = None) -> dict:
        extra = cluster.extra or {}
        coe = None
        with contextlib.suppress(CarinaError):
            coe = coes.get(cluster.coe)
        health, reason = self.health_of(cluster, probe=full if probe is None else probe)
        version = request.context.get("version", MIN_VERSION)
        labels = dict(extra.get("labels") or {})
        view = {
            "uuid": dashed(cluster.uuid) or None, "name": shown_name(cluster),
            "cluster_template_id": extra.get("cluster_template_id"), "keypair": extra.get("keypair"),
            "docker_volume_size": extra.get("docker_volume_size"), "labels": labels,
            "node_count": cluster.nodes, "master_count": cluster.masters, "status": cluster.status,
            "health_status": health, "master_flavor_id": extra.get("master_flavor_id"),
            "flavor_id": extra.get("flavor_id"), "create_timeout": extra.get("create_timeout", 60),
            "links": links(request, "clusters", dashed(cluster.uuid) or cluster.name),
        }
        view["cluster_id" if version >= (1, 13) else "stack_id"] = None
        if not full:
            return view
        record = self.record(cluster)
        addresses = record.get("addresses") or {}
        template_labels = extra.get("template_labels") or {}
        view.update({
            "project_id": cluster.project or None, "user_id": extra.get("user_id"),
            "discovery_url": extra.get("discovery_url"), "api_address": cluster.api_url or None,
            "coe_version": self.coe_version(cluster, coe), "container_version": None,
            "status_reason": cluster.status_reason or None, "health_status_reason": reason,
            "master_addresses": [addresses[h] for h in record.get("master_hosts") or [] if h in addresses],
            "node_addresses": [addresses[h] for h in record.get("worker_hosts") or [] if h in addresses],
            "fixed_network": extra.get("fixed_network"), "fixed_subnet": extra.get("fixed_subnet"),
            "floating_ip_enabled": extra.get("floating_ip_enabled"),
            "master_lb_enabled": extra.get("master_lb_enabled", True),
            "created_at": iso(cluster.created_at), "updated_at": iso(cluster.updated_at),
            "labels_overridden": {k: v for k, v in template_labels.items() if k in labels and labels[k] != v},
            "labels_added": {k: v for k, v in labels.items() if k not in template_labels},
            "labels_skipped": {k: v for k, v in template_labels.items() if k not in labels},
        })
        if cluster.status in FAILED:
            view["faults"] = {"default-worker": cluster.status_reason or cluster.status}
        return view

    def record(self, cluster: Cluster) -> dict:
        try:
            return planning.read_record(paths.state_dir(self.client.home, cluster.name)) or {}
        except (CarinaError, OSError, ValueError):
            return {}

    @staticmethod
    def coe_version(cluster: Cluster, coe) -> str | None:
        if coe is None:
            return None
        option = (coe.options().get("kubernetes_version") or {})
        version = cluster.coe_options.get("kubernetes_version", option.get("default"))
        return f"v{version}" if version else None

    def health_of(self, cluster: Cluster, probe: bool) -> tuple[str | None, dict]:
        """Magnum's health_status and reason: probed on a show (at most every HEALTH_SECONDS), else the last."""
        if not cluster.status.endswith("_COMPLETE"):
            return None, {}
        with self.lock:
            known = self.health.get(cluster.uuid)
            stale = probe and known is not None and time.time() - known[0] > HEALTH_SECONDS
            refresh = stale and cluster.uuid not in self.probing
            if refresh:
                self.probing.add(cluster.uuid)
        if probe and known is None:  # the first show waits for the first probe (bounded by its timeout)
            known = self.probe(cluster)
        elif refresh:  # later ones show the last answer; a new probe runs meanwhile, never holding a request
            threading.Thread(target=self.probe, args=(cluster,), daemon=True).start()
        if known is None:
            return None, {}
        return known[1].status, {"api": known[1].reason}

    def probe(self, cluster: Cluster) -> tuple[float, coes.Health]:
        try:
            known = (time.time(), self.client.health(cluster.name))
        except CarinaError as exc:
            known = (time.time(), coes.Health("UNKNOWN", str(exc)))
        finally:
            with self.lock:
                self.probing.discard(cluster.uuid)
        with self.lock:
            self.health[cluster.uuid] = known
        return known

    def list_clusters(self, request: Request) -> Response:
        return self._list_clusters(request, full=False)

    def list_clusters_detail(self, request: Request) -> Response:
        return self._list_clusters(request, full=True)

    def _list_clusters(self, request: Request, full: bool) -> Response:
        """A listing, answered from the last one for the same caller and URL while the store has not changed and
        it is under LIST_SECONDS old (so that runs that died unnoticed are still reconciled soon)."""
        who: Context = request.context["who"]
        key = (who.project_id, who.is_admin, full, request.url(request.path), request.environ.get("QUERY_STRING", ""),
               request.context.get("version"))
        generation = self.client.store.generation()
        with self.lock:
            cached = self.listings.get(key)
        if cached and cached[0] == generation and time.monotonic() - cached[1] < LIST_SECONDS:
            return Response(200, cached[2])
        response = self._list_clusters_now(request, full)
        with self.lock:
            if len(self.listings) > LIST_CACHE:
                self.listings.clear()
            self.listings[key] = (generation, time.monotonic(), response.data)
        return response

    def _list_clusters_now(self, request: Request, full: bool) -> Response:
        clusters = self._clusters(request.context["who"])  # read and reconciled once per request
        views = [self.cluster_view(request, c, full=False) for c in clusters]
        items, next_url = page(request, views, "clusters")
        if full:
            # The last probed health only: a listing never waits on the clusters' endpoints.
            by_uuid = {dashed(c.uuid): c for c in clusters}
            items = [self.cluster_view(request, by_uuid[v["uuid"]], probe=False) if v["uuid"] in by_uuid else v
                     for v in items]
            for item in items:
                item.pop("faults", None)
        return Response(200, {"clusters": items, **({"next": next_url} if next_url else {})})

    def show_cluster(self, request: Request) -> Response:
        return Response(200, self.cluster_view(request, self._cluster(request, request.params["ident"])))

    def create_cluster(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "a cluster is a JSON object")
        who: Context = request.context["who"]
        version = request.context["version"]
        unknown = sorted(set(body) - CLUSTER_INPUTS)
        if unknown:
            raise HTTPError(400, f"unknown cluster field(s): {', '.join(unknown)}")
        ident = body.get("cluster_template_id")
        if not ident or not isinstance(ident, str):
            raise HTTPError(400, "cluster_template_id: required (a cluster template's name or uuid)")
        template = self._template(request, ident, status=404 if version >= (1, 10) else 400)
        tview = self.template_view(request, template)
        counts = {}
        for key, default in (("master_count", 1), ("node_count", 1)):
            value = body.get(key)
            value = default if value is None else value
            if isinstance(value, bool) or not isinstance(value, int):
                raise HTTPError(400, f"{key}: a whole number")
            counts[key] = value
        if counts["node_count"] == 0 and version < (1, 10):
            raise HTTPError(400, "node_count 0 needs API version 1.10 or later")
        timeout = body.get("create_timeout")
        timeout = 60 if timeout is None else timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise HTTPError(400, "create_timeout: minutes, a whole number of 1 or more")
        name = body.get("name") or f"cluster-{uuidlib.uuid4().hex[:8]}"
        if not isinstance(name, str) or not CLUSTER_NAME.fullmatch(name):
            raise HTTPError(400, f"name {name!r}: {CLUSTER_NAME_RULE}")
        if any(shown_name(c) == name for c in self._clusters(who) if c.project == who.project_id):
            raise HTTPError(409, f"A cluster named {name} already exists in this project; choose another name")
        labels = body.get("labels")
        if labels is not None and (not isinstance(labels, dict)
                                   or any(not isinstance(v, str | int | float | bool) for v in labels.values())):
            raise HTTPError(400, "labels: a map of names to text")
        template_labels = dict(tview.get("labels") or {})
        given = {k: str(v) for k, v in (labels or {}).items()}
        labels = (template_labels | given) if body.get("merge_labels") or labels is None else given
        fields = {key: body[key] if body.get(key) not in (None, "") else tview.get(source)
                  for key, source in FROM_TEMPLATE.items()}
        for key in ("floating_ip_enabled", "master_lb_enabled"):
            if not isinstance(fields[key], bool | None):
                raise HTTPError(400, f"{key}: true or false")
        coe = COE_ALIASES.get(tview["coe"], tview["coe"])
        coe_options = self.coe_options(coe, labels)
        provider, openstack = self.placement(tview, fields, labels)
        image = (tview.get("image_id") or self.cloud.get("image") or "") if provider == "openstack" else ""
        cluster_id = uuidlib.uuid4().hex
        internal = self.internal_name(name, cluster_id)
        extra = {"name": name, "cluster_template_id": template.uuid, "labels": labels,
                 "template_labels": template_labels, "create_timeout": timeout,
                 "discovery_url": body.get("discovery_url"), "user_id": who.user_id or None, **fields}
        self.create_delegated(who, internal, cluster_id, coe=coe, masters=counts["master_count"],
                              nodes=counts["node_count"], provider=provider, openstack=openstack,
                              coe_options=coe_options or None, extra=extra, image=image, timeout=timeout * 60)
        return Response(202, {"uuid": dashed(cluster_id)})

    def create_delegated(self, who: Context, name: str, cluster_id: str, *, provider: str, openstack: dict | None,
                         extra: dict, **spec):
        """Client.create, under the caller's own identity on OpenStack when the service has Keystone: a trust from
        the caller to the service, and the cluster's own clouds.yaml (0600) that every run of it uses. Refused or
        failed, the trust and the file are removed again."""
        run_env, trust = None, None
        if provider == "openstack" and getattr(self.authenticate, "keystone", False):
            trust = self.authenticate.delegate(who)
            cloud = f"carina-{cluster_id}"
            path = self.credentials_file(cluster_id)
            write_private(path, json.dumps({"clouds": {cloud: self.authenticate.trust_cloud(trust["trust_id"])}}))
            write_private(path.with_suffix(".json"), json.dumps({"trust_id": trust["trust_id"], "trustor": who.user_id,
                                                                 "project": who.project_id}))
            openstack = dict(openstack or {}, cloud=cloud)
            run_env = {"OS_CLIENT_CONFIG_FILE": str(path)}
            extra = dict(extra, trust_id=trust["trust_id"], trust_roles=trust["roles"])
        try:
            return self.client.create(name, provider=provider, openstack=openstack, cluster_id=cluster_id,
                                      project=who.project_id, extra=extra, run_env=run_env, **spec)
        except BaseException:
            if trust:
                with contextlib.suppress(HTTPError):
                    self.authenticate.revoke(who.token, trust["trust_id"])
                self.credentials_file(cluster_id).unlink(missing_ok=True)
                self.credentials_file(cluster_id).with_suffix(".json").unlink(missing_ok=True)
            raise

    def credentials_file(self, cluster_id: str):
        return self.client.home / "credentials" / f"{cluster_id}.yaml"

    def forget_delegation(self, cluster: Cluster, run_id: str, who: Context) -> None:
        """Once the delete run of a cluster made under a trust ends: the trust is deleted with the deleter's token
        (when they are its trustor or an admin) and the cluster's clouds.yaml with it (see sweep_trusts)."""
        try:
            self.client.wait(run_id, timeout=None)
        except CarinaError:
            return
        self.sweep_trusts(who, force=True)

    def sweep_trusts(self, who: Context, force: bool = False) -> None:
        """Trusts of clusters that are gone, deleted with the token of their trustor or an admin as soon as one of
        them calls (at most every SWEEP_SECONDS each): a delete whose revocation failed, or that a restart cut
        short, is finished later, and the cluster's clouds.yaml goes with its trust."""
        folder = self.client.home / "credentials"
        if not getattr(self.authenticate, "keystone", False) or not folder.is_dir():
            return
        with self.lock:
            last = self.swept.get(who.user_id, 0.0)
            if not force and time.monotonic() - last < SWEEP_SECONDS:
                return
            self.swept[who.user_id] = time.monotonic()
        alive = {c.uuid for c in self.client.store.list_clusters()}
        for meta in folder.glob("*.json"):
            try:
                facts = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            if meta.stem in alive or not (who.is_admin or facts.get("trustor") == who.user_id):
                continue
            try:
                self.authenticate.revoke(who.token, facts["trust_id"])
            except HTTPError as exc:
                LOG.warning("cluster %s is deleted but its trust %s is not yet (%s); its trustor's or an admin's "
                            "next call tries again", meta.stem, facts.get("trust_id"), exc.detail)
                continue
            self.credentials_file(meta.stem).unlink(missing_ok=True)
            meta.unlink(missing_ok=True)

    def internal_name(self, name: str, cluster_id: str) -> str:
        return internal_name(self.client, name, cluster_id)

    @staticmethod
    def coe_options(coe: str, labels: dict) -> dict:
        """The COE options labels set: a label named as an option of the COE, or one Magnum's templates use for it
        (kube_tag); other labels are kept and shown, as Magnum keeps labels its driver does not read."""
        try:
            known = coes.get(coe).options()
        except CarinaError:
            return {}
        options = {key: value for key, value in labels.items() if key in known}
        for label, (option, convert) in LABEL_OPTIONS.items():
            if label in labels and option in known and option not in options:
                options[option] = convert(labels[label])
        return options

    @staticmethod
    def allowed_cidrs(labels: dict) -> list[str] | None:
        """Magnum's label master_lb_allowed_cidrs (CIDRs apart by commas: who may reach the API through the load
        balancer) as carina's openstack option api_cidrs; None without the label."""
        text = str((labels or {}).get("master_lb_allowed_cidrs") or "")
        return [cidr.strip() for cidr in text.split(",") if cidr.strip()] or None

    def placement(self, template: dict, fields: dict, labels: dict | None = None) -> tuple[str, dict | None]:
        """The provider and its options: OpenStack when the service has a [cloud], else this machine (local),
        where the image, flavors and networks of the template are shown but hosts are containers."""
        if not self.cloud:
            return "local", None
        options = {"cloud": self.cloud.get("name"),
                   "flavor": fields.get("flavor_id") or self.cloud.get("flavor"),
                   "master_flavor": fields.get("master_flavor_id") or self.cloud.get("master_flavor"),
                   "fixed_network": fields.get("fixed_network") or self.cloud.get("fixed_network"),
                   "fixed_subnet": fields.get("fixed_subnet") or self.cloud.get("fixed_subnet"),
                   "external_network": template.get("external_network_id") or self.cloud.get("external_network"),
                   "floating_ip_enabled": bool(fields.get("floating_ip_enabled")),
                   "server_type": template.get("server_type") or "vm",
                   "master_server_type": template.get("server_type") or "vm",
                   "api_cidrs": self.allowed_cidrs(labels or {})}
        return "openstack", {k: v for k, v in options.items() if v not in (None, "")}

    def update_cluster(self, request: Request) -> Response:
        cluster = self._cluster(request, request.params["ident"])
        current = self.cluster_view(request, cluster, full=False)
        changed = apply_patch(current, request.json(), set(current) - {"node_count", "health_status"},
                              add_replaces=True)
        others = sorted(k for k, v in changed.items() if k not in ("node_count", "health_status") and v != current[k])
        if others:
            raise HTTPError(400, f"cannot change cluster property(ies) {', '.join(others)}")
        nodes = changed.get("node_count", cluster.nodes)
        self.resize(request, cluster, nodes, [])
        return Response(202, {"uuid": dashed(cluster.uuid)})

    def resize_cluster(self, request: Request) -> Response:
        if request.context["version"] < (1, 7):
            raise HTTPError(406, "Version %d.%d was requested but the requested API resize is not supported for "
                                 "this version (1.7 or later)" % request.context["version"])
        cluster = self._cluster(request, request.params["ident"])
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "a resize is a JSON object: {node_count, nodes_to_remove, nodegroup}")
        nodegroup = body.get("nodegroup")
        if nodegroup not in (None, "", "default-worker"):
            raise HTTPError(400, f"nodegroup {nodegroup!r}: carina clusters have one worker node group, "
                                 f"default-worker")
        remove = body.get("nodes_to_remove") or []
        if not isinstance(remove, list) or not all(isinstance(n, str) for n in remove):
            raise HTTPError(400, "nodes_to_remove: a list of node names")
        self.resize(request, cluster, body.get("node_count"), remove)
        return Response(202, {"uuid": dashed(cluster.uuid)})

    def resize(self, request: Request, cluster: Cluster, nodes, remove: list[str]) -> None:
        if isinstance(nodes, bool) or not isinstance(nodes, int):
            raise HTTPError(400, "node_count: a whole number")
        if nodes == 0 and request.context["version"] < (1, 10):
            raise HTTPError(400, "node_count 0 needs API version 1.10 or later")
        if not cluster.status.endswith("_COMPLETE"):
            raise HTTPError(400, f'Updating a cluster when status is "{cluster.status}" is not supported')
        self.client.resize(cluster.name, nodes=nodes, remove=remove)

    def delete_cluster(self, request: Request) -> Response:
        cluster = self._cluster(request, request.params["ident"])
        who: Context = request.context["who"]
        if cluster.status == "DELETE_IN_PROGRESS":
            return Response(204)
        if cluster.status in IN_PROGRESS:
            # As Magnum does: a cluster whose create or update is under way can be deleted; its run is stopped
            # first (in the background, the answer does not wait), then the delete starts.
            with self.lock:
                if cluster.uuid in self.deleting:
                    return Response(204)
                self.deleting.add(cluster.uuid)
            threading.Thread(target=self.stop_then_delete, args=(cluster, who), daemon=True).start()
            return Response(204)
        self.start_delete(cluster, who)
        return Response(204)

    def start_delete(self, cluster: Cluster, who: Context) -> None:
        _cluster, run = self.client.delete(cluster.name)
        if (cluster.extra or {}).get("trust_id"):
            threading.Thread(target=self.forget_delegation, args=(cluster, run.id, who), daemon=True).start()

    def stop_then_delete(self, cluster: Cluster, who: Context) -> None:
        try:
            with contextlib.suppress(CarinaError):  # it may have ended meanwhile
                self.client.cancel(cluster.current_run)
            self.client.wait(cluster.current_run, timeout=120)
            self.start_delete(self.client.get(cluster.name), who)
        except (CarinaError, Conflict) as exc:
            LOG.warning("cluster %s: the delete asked during %s could not start: %s", cluster.uuid, cluster.status,
                        exc)
        finally:
            with self.lock:
                self.deleting.discard(cluster.uuid)

    # -- certificates -----------------------------------------------------------------------
    def show_ca(self, request: Request) -> Response:
        cluster = self._cluster(request, request.params["ident"])
        kind = request.query.get("ca_cert_type", "")
        if kind not in ("", "kubernetes", "docker"):
            raise HTTPError(400, f"ca_cert_type {kind!r}: carina shows the cluster CA clients trust")
        pem = certs.ca_pem(paths.state_dir(self.client.home, cluster.name))
        return Response(200, {"cluster_uuid": dashed(cluster.uuid), "pem": pem,
                              "links": links(request, "certificates", dashed(cluster.uuid))})

    def sign_certificate(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("cluster_uuid"), str):
            raise HTTPError(400, "a certificate request is {cluster_uuid, csr}")
        cluster = self._cluster(request, body["cluster_uuid"], status=400)
        if not cluster.status.endswith("_COMPLETE") and cluster.status not in ("UPDATE_IN_PROGRESS", "UPDATE_FAILED"):
            raise HTTPError(400, f"cluster {shown_name(cluster)} is {cluster.status}; certificates are signed once "
                                 f"it is made")
        pem = certs.sign(paths.state_dir(self.client.home, cluster.name), body.get("csr"))
        return Response(201, {"cluster_uuid": dashed(cluster.uuid), "csr": body.get("csr"), "pem": pem,
                              "links": links(request, "certificates", dashed(cluster.uuid))})


def typed(key: str, value, problems: list[str]):
    """A template field's value of its type (numbers and booleans also as text); a problem when it is not."""
    kind = TEMPLATE_TYPES.get(key, str)
    if value is None:
        return TEMPLATE_FIELDS[key]
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is int and isinstance(value, str) and value.isdigit():
        return int(value)
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(f"{key}: {kind.__name__} expected, got {type(value).__name__}")
    return TEMPLATE_FIELDS[key]


def links(request: Request, kind: str, ident: str) -> list[dict]:
    return [{"href": request.url(f"/v1/{kind}/{ident}"), "rel": "self"},
            {"href": request.url(f"/{kind}/{ident}"), "rel": "bookmark"}]


def page(request: Request, items: list[dict], kind: str) -> tuple[list[dict], str]:
    """Sorted (sort_key, sort_dir) and cut (limit, marker) as Magnum does; `next` only after a full page."""
    query = request.query
    sort_key = query.get("sort_key") or "id"
    sort_dir = query.get("sort_dir") or "asc"
    if sort_dir not in ("asc", "desc"):
        raise HTTPError(400, f"sort_dir {sort_dir!r}: asc or desc")
    if sort_key != "id" and items and sort_key not in items[0]:
        raise HTTPError(400, f"sort_key {sort_key!r}: one of the fields ({', '.join(sorted(items[0]))})")
    if sort_key == "id":
        ordered = list(items)  # creation order
    else:
        ordered = sorted(items, key=lambda item: (item.get(sort_key) is None, str(item.get(sort_key))))
    if sort_dir == "desc":
        ordered.reverse()
    try:
        limit = int(query.get("limit") or MAX_LIMIT)
    except ValueError as exc:
        raise HTTPError(400, "limit: a whole number") from exc
    if limit <= 0:
        raise HTTPError(400, "Limit must be positive")
    limit = min(limit, MAX_LIMIT)
    marker = query.get("marker")
    if marker:
        at = next((i for i, item in enumerate(ordered) if item.get("uuid") == marker), None)
        if at is None:
            raise HTTPError(404, f"marker {marker} could not be found")
        ordered = ordered[at + 1:]
    items = ordered[:limit]
    if not items or len(items) < limit:
        return items, ""
    rest = f"sort_key={sort_key}&sort_dir={sort_dir}&limit={limit}&marker={items[-1]['uuid']}"
    return items, f"/v1/{kind}?{rest}"


def apply_patch(current: dict, patch, read_only: set[str], add_replaces: bool = False) -> dict:
    """A JSON patch (RFC 6902: add, replace, remove) on the top-level fields and label entries of a view."""
    if not isinstance(patch, list) or not patch:
        raise HTTPError(400, "a PATCH body is a JSON patch: a list of {op, path, value}")
    result = {k: (dict(v) if isinstance(v, dict) else v) for k, v in current.items()}
    for op in patch:
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove") or \
                not isinstance(op.get("path"), str) or not op["path"].startswith("/"):
            raise HTTPError(400, f"patch operation {op!r}: op add, replace or remove, and a path /field")
        parts = op["path"].strip("/").split("/")
        field = parts[0]
        if field in read_only:
            raise HTTPError(400, f"'/{field}' cannot be changed")
        if field not in result and field != "labels":
            raise HTTPError(400, f"'/{field}' is not a field")
        if len(parts) == 2 and field == "labels":
            result["labels"] = patch_label(dict(result.get("labels") or {}), parts[1], op)
            continue
        if len(parts) != 1:
            raise HTTPError(400, f"path {op['path']}: a top-level field")
        if op["op"] == "remove":
            result[field] = None
        elif op["op"] == "add" and result.get(field) is not None and not add_replaces:
            raise HTTPError(400, f"'/{field}' is set; use 'replace'")
        else:
            if "value" not in op:
                raise HTTPError(400, f"patch operation on {op['path']} has no value")
            result[field] = op["value"]
    return result


def patch_label(labels: dict, name: str, op: dict) -> dict:
    if op["op"] == "remove":
        if name not in labels:
            raise HTTPError(400, f"label {name} is not set")
        labels.pop(name)
    else:
        labels[name] = str(op.get("value"))
    return labels


def error_response(exc: HTTPError, request: Request) -> Response:
    """Magnum's error body: the message in errors[0].title (what magnumclient prints) and detail; also at the top
    (`message`, what openstacksdk prints)."""
    body = {"errors": [{"request_id": request.id, "code": "client" if exc.status < 500 else "server",
                        "status": exc.status, "title": exc.detail, "detail": exc.detail, "links": []}],
            "message": exc.detail}
    if exc.status == 406:
        body["errors"][0].update(code="magnum.microversion-unsupported",
                                 max_version="%d.%d" % MAX_VERSION, min_version="%d.%d" % MIN_VERSION)
    return Response(exc.status, body, headers=exc.headers)

