"""Carina's control panel: a page of cluster cards (served from panel/, no build step) and the small JSON API
behind it, under /panel. The cards, the create form and Get Access use the same Python API, planning rules
and ownership as Magnum's API; the page sends the caller's Keystone token (X-Auth-Token) like any client."""

from __future__ import annotations

import contextlib
import io
import uuid
import zipfile
from importlib import resources

from carina import coes, planning
from carina.api import Client
from carina.errors import CarinaError
from carina.service.auth import Context
from carina.service.magnum import MagnumAPI, dashed, shown_name
from carina.service.web import HTTPError, Request, Response, Router
from carina.store import Conflict

ASSETS = {"": ("index.html", "text/html; charset=utf-8"), "panel.js": ("panel.js", "text/javascript; charset=utf-8"),
          "panel.css": ("panel.css", "text/css; charset=utf-8"), "logo.svg": ("logo.svg", "image/svg+xml")}
# The page runs only its own script and style, talks only to this service, and is never framed.
SECURITY = [("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                        "connect-src 'self'; form-action 'self'; base-uri 'none'; "
                                        "frame-ancestors 'none'"),
            ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY")]
NO_STORE = [("Cache-Control", "no-store")]
# What each bundle's shell files are called in the how-to, and the command that tries the cluster.
SHELL_HOWTO = {"bash": ("bash or zsh", "source {folder}/{file}"), "fish": ("fish", "source {folder}/{file}"),
               "powershell": ("PowerShell", ". .\\{folder}\\{file}"), "cmd": ("cmd.exe", "{folder}\\{file}")}
TRY = {"docker": "docker info", "kube": "kubectl get nodes"}
OPENSTACK_FIELDS = {"image": str, "flavor": str, "master_flavor": str, "server_type": str, "master_server_type": str,
                    "floating_ip_enabled": bool}
HERE = "\0"  # stands for the bundle's folder while the shell files are written


class Panel:
    def __init__(self, client: Client, authenticate, magnum: MagnumAPI, cloud: dict | None = None):
        self.client = client
        self.authenticate = authenticate
        self.magnum = magnum
        self.cloud = dict(cloud or {})
        self.router = Router()
        r = self.router
        r.add("GET", "/panel/", self.asset)
        r.add("GET", "/panel/{asset}", self.asset)
        r.add("GET", "/panel/api/session", self.session)
        r.add("POST", "/panel/api/login", self.login)
        r.add("GET", "/panel/api/form", self.form)
        r.add("GET", "/panel/api/clusters", self.cards)
        r.add("POST", "/panel/api/clusters", self.create)
        r.add("DELETE", "/panel/api/clusters/{ident}", self.delete)
        r.add("GET", "/panel/api/clusters/{ident}/bundle", self.bundle)

    OPEN = ("/panel", "/panel/", "/panel/api/session", "/panel/api/login")

    def handle(self, request: Request) -> Response:
        try:
            # /panel/ is the page ("/panel" is a route's optional slash away from it: redirect, not serve)
            handler = self.redirect if request.path == "/panel" else self.router.find(request)
            if request.path.startswith("/panel/api/") and request.path not in self.OPEN:
                request.context["who"] = self.authenticate(request)
                request.context["version"] = (1, 1)
                self.magnum.sweep_trusts(request.context["who"])
            response = handler(request)
        except HTTPError as exc:
            response = problem(exc.status, [exc.detail], exc.headers)
        except Conflict as exc:
            response = problem(409, [str(exc)])
        except CarinaError as exc:
            response = problem(400, exc.problems)
        response.headers += SECURITY + (NO_STORE if request.path.startswith("/panel/api/") else [])
        return response

    # -- the page ---------------------------------------------------------------------------
    @staticmethod
    def redirect(request: Request) -> Response:
        return Response(308, b"", headers=[("Location", "/panel/")], content_type="")

    @staticmethod
    def asset(request: Request) -> Response:
        name = request.params.get("asset", "")
        if name not in ASSETS:
            raise HTTPError(404, f"no resource at {request.path}")
        filename, content_type = ASSETS[name]
        data = resources.files("carina.service").joinpath("panel", filename).read_bytes()
        return Response(200, data, content_type=content_type, headers=[("Cache-Control", "no-cache")])

    def session(self, request: Request) -> Response:
        """What the page needs before anything else: whether it must log in first."""
        keystone = bool(getattr(self.authenticate, "keystone", False))
        return Response(200, {"login": keystone, "provider": "openstack" if self.cloud else "local"})

    def login(self, request: Request) -> Response:
        if not getattr(self.authenticate, "keystone", False):
            raise HTTPError(404, "this service has no Keystone: there is nothing to log in to")
        body = request.json()
        fields = {key: body.get(key) if isinstance(body, dict) else None
                  for key in ("username", "password", "project", "domain")}
        missing = [key for key in ("username", "password", "project") if not isinstance(fields[key], str)
                   or not fields[key]]
        if missing:
            raise HTTPError(400, f"give {', '.join(missing)}")
        domain = fields["domain"] if isinstance(fields["domain"], str) and fields["domain"] else "Default"
        return Response(200, self.authenticate.login(fields["username"], fields["password"], fields["project"],
                                                     domain))

    # -- cards --------------------------------------------------------------------------------
    def form(self, request: Request) -> Response:
        """The create form's choices, from the COE contracts: counts with their bounds, and each COE's options."""
        found = []
        for name, contract in sorted(planning.contracts().items()):
            options = {key: {"type": rule.get("type", "str"), "default": rule.get("default"),
                             "description": " ".join(str(rule.get("description", "")).split())}
                       for key, rule in (contract.get("options") or {}).items()}
            found.append({"name": name, "title": contract.get("title", name), "default": bool(contract.get("default")),
                          "masters": contract.get("masters") or {}, "workers": contract.get("workers") or {},
                          "words": {role: [(contract.get("roles") or {}).get(role, {}).get(key, role)
                                           for key in ("word", "plural")] for role in ("master", "worker")},
                          "options": options})
        provider = {"name": "openstack", "defaults": {k: v for k, v in self.cloud.items() if k != "name"}} \
            if self.cloud else {"name": "local", "defaults": {}}
        return Response(200, {"coes": found, "provider": provider, "name_rule": planning.spec().NAME_RULE})

    def cards(self, request: Request) -> Response:
        who: Context = request.context["who"]
        return Response(200, {"clusters": [self.card(c) for c in self.client.list() if who.owns(c.project)]})

    def card(self, cluster) -> dict:
        title = cluster.coe
        with contextlib.suppress(CarinaError):
            title = coes.get(cluster.coe).title
        health, _reason = self.magnum.health_of(cluster, probe=False)
        return {"uuid": dashed(cluster.uuid) or None, "name": shown_name(cluster), "carina_name": cluster.name,
                "coe": cluster.coe, "type": f"{title} cluster", "masters": cluster.masters, "nodes": cluster.nodes,
                "segments": cluster.masters + cluster.nodes, "autoscale": False, "status": cluster.status,
                "status_reason": cluster.status_reason, "health_status": health, "provider": cluster.provider,
                "api_address": cluster.api_url or None, "project_id": cluster.project or None,
                "bundle": cluster.status.endswith("_COMPLETE") or cluster.status.startswith("UPDATE_")}

    def create(self, request: Request) -> Response:
        """A cluster from the form: the planning rules judge it; each problem comes back on its own."""
        who: Context = request.context["who"]
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, "send the form as a JSON object")
        name, coe, counts, options, openstack = self.read_form(body)
        if any(shown_name(c) == name for c in self.client.list() if c.project == who.project_id):
            raise HTTPError(409, f"A cluster named {name} already exists in this project; choose another name")
        provider, settings, image = "local", None, ""
        if self.cloud:
            provider = "openstack"
            settings = {"cloud": self.cloud.get("name"), **{k: self.cloud.get(k) for k in (
                "flavor", "master_flavor", "fixed_network", "fixed_subnet", "external_network")}}
            settings |= {k: v for k, v in openstack.items() if v not in (None, "")}
            image = settings.pop("image", None) or self.cloud.get("image") or ""
        options = {key: str(value).lower() if isinstance(value, bool) else str(value)
                   for key, value in options.items() if value not in (None, "")}
        cluster_id = uuid.uuid4().hex
        cluster, _run = self.magnum.create_delegated(
            who, self.magnum.internal_name(name, cluster_id), cluster_id, coe=coe, masters=counts["masters"],
            nodes=counts["nodes"], provider=provider, openstack=settings, coe_options=options or None,
            extra={"name": name, "user_id": who.user_id or None, "source": "panel"}, image=image)
        return Response(202, self.card(cluster))

    def read_form(self, body: dict) -> tuple:
        """The form's fields, each checked for its type; the planning rules judge the counts and options later."""
        problems = []
        unknown = sorted(set(body) - {"name", "coe", "masters", "nodes", "options", "openstack"})
        problems += [f"unknown field {key!r}" for key in unknown]
        name = body.get("name")
        problems += planning.spec().name_problems(name)
        coe = body.get("coe") or coes.default()
        if coe not in planning.contracts():
            problems.append(f"coe {coe!r}: choose one of {', '.join(sorted(planning.contracts()))}")
        counts = {}
        for key in ("masters", "nodes"):
            value = body.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                problems.append(f"{key} {value!r}: a whole number")
            counts[key] = value
        options = body.get("options") or {}
        if not isinstance(options, dict) or any(not isinstance(v, str | int | bool) for v in options.values()):
            problems.append("options: a map of option names to values")
            options = {}
        openstack = body.get("openstack") or {}
        if openstack and not self.cloud:
            problems.append("openstack: this service makes clusters on this machine (it has no [cloud])")
        elif not isinstance(openstack, dict):
            problems.append("openstack: a map of provider options")
        else:
            for key, value in openstack.items():
                kind = OPENSTACK_FIELDS.get(key)
                if kind is None:
                    problems.append(f"openstack: unknown option {key!r} (known: {', '.join(OPENSTACK_FIELDS)})")
                elif value not in (None, "") and not isinstance(value, kind):
                    problems.append(f"openstack {key}: {'true or false' if kind is bool else 'text'}")
        if problems:  # the counts are judged too, so that the form shows every problem at once
            contract = planning.contracts().get(coe)
            if contract and all(isinstance(v, int | None) for v in counts.values()):
                masters = counts["masters"] if counts["masters"] is not None else contract["masters"].get("default", 1)
                nodes = counts["nodes"] if counts["nodes"] is not None else contract["workers"].get("default", 1)
                problems += planning.spec().count_problems(contract, masters, nodes)
            raise CarinaError("; ".join(problems), problems)
        return name, coe, counts, options, openstack

    def delete(self, request: Request) -> Response:
        return self.magnum.delete_cluster(request)

    def bundle(self, request: Request) -> Response:
        """Get Access: the credentials bundle as a zip, in a folder named after the cluster, its shell files finding
        their own folder wherever it is unpacked, and a how-to."""
        cluster = self.magnum._cluster(request, request.params["ident"])  # the API's ownership rules
        if not (cluster.status.endswith("_COMPLETE") or cluster.status.startswith("UPDATE_")):
            raise HTTPError(409, f"cluster {shown_name(cluster)} is {cluster.status}: its credentials exist once "
                                 f"it is made")
        data = bundle_zip(self.client, cluster)
        folder = shown_name(cluster)
        return Response(200, data, content_type="application/zip",
                        headers=[("Content-Disposition", f'attachment; filename="{folder}.zip"')])


def problem(status: int, problems: list[str], headers=()) -> Response:
    """The panel's error body: every problem on its own (the form shows each), and their sum as `message`."""
    return Response(status, {"message": "; ".join(problems), "problems": problems}, headers=headers)


def bundle_zip(client: Client, cluster) -> bytes:
    coe = coes.get(cluster.coe)
    source = client.bundle_dir(cluster.name)
    folder = shown_name(cluster)
    contract = coe.contract["credentials"]
    env = {key: str(value).format(endpoint=cluster.endpoint, path=HERE)
           for key, value in (contract.get("env") or {}).items()}
    env["CARINA_CLUSTER_NAME"] = folder
    shells = {}
    for shell, file in coe.shells().items():  # bash, sh and zsh share one file
        shells.setdefault(file, shell)
    secret = set(coe.secret_files())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in coe.bundle_files():
            data = shell_file(shells[item], folder, env) if item in shells else (source / item).read_bytes()
            info = zipfile.ZipInfo(f"{folder}/{item}", date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100600 if item in secret else 0o100644) << 16
            archive.writestr(info, data)
        howto = readme(folder, coe.title, contract["basename"], coe.shells())
        info = zipfile.ZipInfo(f"{folder}/README.txt", date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        archive.writestr(info, howto)
    return buffer.getvalue()


def readme(folder: str, title: str, basename: str, shells: dict[str, str]) -> str:
    lines = [f"Cluster {folder} ({title}): the credentials to use it with its own client.", "",
             "Unpack this zip anywhere, then in the folder that holds it:", ""]
    for file, shell in {file: shell for shell, file in reversed(shells.items())}.items():
        label, command = SHELL_HOWTO.get(shell, (shell, "{folder}/{file}"))
        lines.append(f"  {label + ':':<13} {command.format(folder=folder, file=file)}")
    lines += ["", f"then: {TRY.get(basename, 'use the cluster')}", "",
              "key.pem is the cluster's administrator key: keep the folder private (it is readable by you only).", ""]
    return "\n".join(lines)


def shell_file(shell: str, name: str, env: dict[str, str]) -> bytes:
    """One shell's file of the bundle: it sets the environment with the bundle's folder found at run time."""

    def sh(value: str, here: str) -> str:
        return here.join("'" + part.replace("'", "'\"'\"'") + "'" if part else "" for part in value.split(HERE))

    if shell in ("bash", "sh", "zsh"):
        lines = [f"# Cluster {name}: source this file in bash or zsh from anywhere, then use the cluster's client.",
                 'if [ -n "${BASH_SOURCE:-}" ]; then __carina_here=${BASH_SOURCE[0]}',
                 "elif [ -n \"${ZSH_VERSION:-}\" ]; then eval '__carina_here=${(%):-%x}'",
                 "else __carina_here=$0; fi",
                 '__carina_here=$(CDPATH= cd -- "$(dirname -- "$__carina_here")" >/dev/null && pwd)']
        here = '"$__carina_here"'
        lines += [f"export {key}={sh(value, here)}" for key, value in env.items()]
        lines.append("unset __carina_here")
        return ("\n".join(lines) + "\n").encode()
    if shell == "fish":
        lines = [f"# Cluster {name}: source this file in fish from anywhere, then use the cluster's client.",
                 "set -l __carina_here (builtin realpath (dirname (status --current-filename)))"]
        lines += [f"set -gx {key} {sh(value, '$__carina_here')}" for key, value in env.items()]
        return ("\n".join(lines) + "\n").encode()
    if shell == "powershell":
        lines = [f"# Cluster {name}: dot-source this file in PowerShell, then use the cluster's client."]
        for key, value in env.items():
            parts = ["'" + part.replace("'", "''") + "'" for part in value.split(HERE)]
            lines.append(f"$env:{key} = " + " + $PSScriptRoot + ".join(parts))
        return ("\r\n".join(lines) + "\r\n").encode()
    lines = ["@echo off", f"REM Cluster {name}: run this file in cmd.exe, then use the cluster's client."]
    lines += [f'set "{key}={value.replace(HERE + "/", "%~dp0").replace(HERE, "%~dp0.")}"' for key, value in env.items()]
    return ("\r\n".join(lines) + "\r\n").encode()
