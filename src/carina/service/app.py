"""The service's WSGI application: Magnum's API, under the caller's identity."""

from __future__ import annotations

import logging

from carina.api import Client
from carina.service import openapi
from carina.service.auth import KeystoneAuth, NoAuth
from carina.service.magnum import MagnumAPI, error_response
from carina.service.panel import Panel
from carina.service.server import Config
from carina.service.web import HTTPError, Request, Response

LOG = logging.getLogger("carina.service")


class App:
    def __init__(self, config: Config):
        self.config = config
        self.client = Client(config.home)
        self.auth = KeystoneAuth(config.keystone) if config.keystone else NoAuth()
        self.api = MagnumAPI(self.client, self.auth, config.cloud)
        self.panel = Panel(self.client, self.auth, self.api, config.cloud)

    def refuse_cross_site(self, request: Request) -> HTTPError | None:
        """What a web page elsewhere must not do. A body is JSON (a form or text/plain post, which browsers send
        across sites unasked, is refused), and a browser's cross-site call is refused. Without Keystone (no token
        to steal or forge) the service answers only to loopback names too, so that a rebound DNS name cannot
        reach it from a browser."""
        if not self.auth.keystone and host_name(request) not in LOOPBACK_HOSTS:
            return HTTPError(421, f"this service (no Keystone) answers to 127.0.0.1 or localhost only, not "
                                  f"{request.header('Host')!r}")
        if request.header("Sec-Fetch-Site") == "cross-site":
            return HTTPError(403, "calls from another site's pages are refused")
        if request.environ.get("CONTENT_LENGTH") not in (None, "", "0") and \
                not request.header("Content-Type").lower().startswith("application/json"):
            return HTTPError(415, "send the body as JSON (Content-Type: application/json)")
        return None

    def __call__(self, environ, start_response):
        if self.config.proxy_headers:  # the TLS proxy in front says how clients reached it
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
            host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()
            if host:
                environ["HTTP_HOST"] = host
        request = Request(environ)
        try:
            refused = self.refuse_cross_site(request)
            if refused:
                response = error_response(refused, request)
            elif request.path == "/openapi.json" and request.method == "GET":
                response = Response(200, openapi.document(request.url("")))
            elif request.path == "/panel" or request.path.startswith("/panel/"):
                response = self.panel.handle(request)
            elif request.path == "/" and request.method == "GET" and wants_html(request):
                response = Response(303, b"", headers=[("Location", "/panel/")], content_type="")  # a browser
            else:
                response = self.api.handle(request)
        except Exception:  # an answer, never a traceback: the details go to the log only
            LOG.exception("%s %s failed (request %s)", request.method, request.path, request.id)
            response = error_response(HTTPError(500, f"the service failed on this request ({request.id}); its "
                                                     f"log has the details"), request)
        return response(start_response)


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def host_name(request: Request) -> str:
    host = request.header("Host").strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def wants_html(request: Request) -> bool:
    """A browser asking for the root (Accept names HTML before JSON): it gets the panel, clients the versions."""
    accept = request.header("Accept")
    return "text/html" in accept and "application/json" not in accept.split("text/html")[0]
