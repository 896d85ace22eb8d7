"""What the three emulated services share: the JSON store, Keystone token validation and the
HTTP plumbing (routing, JSON bodies, errors) on top of the standard library's HTTP server."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger("testcloud.emulator")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


def seed_id(name: str) -> str:
    """Stable ids for seeded objects, so that they survive a reset of the state."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "testcloud:" + name))


class ApiError(Exception):
    """An HTTP error answer; each service renders it in its own body shape."""

    def __init__(self, status: int, message: str, kind: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}


# -- state ------------------------------------------------------------------------------------
class Store:
    """Every object of every service in one dict, persisted as JSON after each change.

    ``lock`` guards all reads and writes; ``changed`` is notified whenever a server changes
    state (GET of a building server waits on it instead of answering BUILD at once).
    """

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.data: dict = {}
        if path.exists():
            self.data = json.loads(path.read_text())

    def coll(self, service: str, name: str) -> dict:
        return self.data.setdefault(service, {}).setdefault(name, {})

    def save(self) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
            self.changed.notify_all()


# -- identity ---------------------------------------------------------------------------------
@dataclass
class Context:
    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    roles: list[str] = field(default_factory=list)
    expires: float = 0.0

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenValidator:
    """Validates X-Auth-Token against Keystone (GET /v3/auth/tokens, the token checking itself)
    and caches each answer until the token expires."""

    def __init__(self, keystone_url: str, max_cache_seconds: float = 3600):
        self.url = keystone_url.rstrip("/") + "/auth/tokens?nocatalog"
        self.max_cache = max_cache_seconds
        self.cache: dict[str, Context] = {}
        self.lock = threading.Lock()

    def validate(self, token: str | None) -> Context:
        if not token:
            raise ApiError(401, "The request you have made requires authentication.", "Unauthorized")
        key = hashlib.sha256(token.encode()).hexdigest()
        with self.lock:
            ctx = self.cache.get(key)
            if ctx and ctx.expires > time.time():
                return ctx
            self.cache.pop(key, None)
        req = urllib.request.Request(self.url, headers={"X-Auth-Token": token, "X-Subject-Token": token})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - Keystone on 127.0.0.1
                body = json.loads(resp.read())["token"]
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404):
                raise ApiError(401, "The request you have made requires authentication.", "Unauthorized") from exc
            raise ApiError(503, "Keystone answered %s while validating the token" % exc.code) from exc
        except OSError as exc:
            raise ApiError(503, "Keystone at %s is unreachable: %s" % (self.url, exc)) from exc
        expires = dt.datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        project = body.get("project") or {}
        ctx = Context(
            user_id=body["user"]["id"], user_name=body["user"].get("name", ""),
            project_id=project.get("id"), project_name=project.get("name"),
            roles=[r["name"] for r in body.get("roles", [])],
            expires=min(expires.timestamp(), time.time() + self.max_cache),
        )
        with self.lock:
            if len(self.cache) > 10000:
                self.cache.clear()
            self.cache[key] = ctx
        return ctx


# -- HTTP -------------------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: object
    body: object
    base_url: str
    ctx: Context | None = None
    params: dict = field(default_factory=dict)
    version: tuple[int, int] | None = None  # Nova microversion
    raw: bytes = b""  # the body as sent (an image's data); `body` is it parsed as JSON

    def arg(self, name: str, default=None):
        values = self.query.get(name)
        return values[-1] if values else default


class Response:
    def __init__(self, status: int = 200, body=None, headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


class Service:
    """One API: a name, a port and (method, path regex, handler, needs auth) routes."""

    name = "service"

    def __init__(self, store: Store, validator: TokenValidator | None):
        self.store = store
        self.validator = validator
        self.routes: list[tuple[str, re.Pattern, object, bool]] = []

    def route(self, method: str, pattern: str, func, auth: bool = True) -> None:
        regex = re.compile("^" + re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", pattern) + "/?$")
        self.routes.append((method, regex, func, auth))

    # overridden by each service
    def error_body(self, err: ApiError) -> object:
        return {"error": {"code": err.status, "message": err.message}}

    def prepare(self, req: Request) -> None:
        """Per-request hook after authentication (microversions, lazy defaults)."""

    def finish(self, req: Request, resp: Response) -> None:
        """Per-response hook (extra headers)."""

    def dispatch(self, req: Request) -> Response:
        allowed = False
        for method, regex, func, auth in self.routes:
            match = regex.match(req.path)
            if not match:
                continue
            if method != req.method:
                allowed = True
                continue
            req.params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            if auth:
                assert self.validator is not None
                req.ctx = self.validator.validate(req.headers.get("X-Auth-Token"))
            self.prepare(req)
            resp = func(req)
            self.finish(req, resp)
            return resp
        if allowed:
            raise ApiError(405, "The method %s is not allowed for this resource." % req.method)
        raise ApiError(404, "The resource could not be found.")


def make_handler(service: Service):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes
        server_version = "testcloud-" + service.name

        def handle_any(self):
            started = time.monotonic()
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
            req = Request(self.command, parsed.path.rstrip("/") or "/", urllib.parse.parse_qs(
                parsed.query, keep_blank_values=True), self.headers, None, "http://" + host)
            req.raw = raw
            try:
                if raw and self.headers.get("Content-Type", "").split(";")[0].strip() != "application/octet-stream":
                    try:
                        req.body = json.loads(raw)
                    except ValueError as exc:
                        raise ApiError(400, "Malformed request body: %s" % exc) from exc
                resp = service.dispatch(req)
            except ApiError as err:
                headers = dict(err.headers)
                if err.status == 401:
                    headers["WWW-Authenticate"] = 'Keystone uri="%s"' % (
                        service.validator.url.split("/auth/")[0] if service.validator else "")
                resp = Response(err.status, service.error_body(err), headers)
                with contextlib.suppress(ApiError):
                    service.finish(req, resp)
            except Exception:
                LOG.exception("%s %s failed", self.command, self.path)
                resp = Response(500, service.error_body(ApiError(500, "Unexpected error in the test cloud")))
            self.send(resp)
            LOG.info("%s %s %s -> %s (%.0f ms)", service.name, self.command, self.path, resp.status,
                     (time.monotonic() - started) * 1000)

        def send(self, resp: Response):
            payload = b""
            if resp.body is not None and resp.status != 204:
                payload = json.dumps(resp.body).encode()
            self.send_response(resp.status)
            if payload:
                self.send_header("Content-Type", "application/json")
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

        def log_message(self, format, *args):
            LOG.debug("%s " + format, service.name, *args)

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
