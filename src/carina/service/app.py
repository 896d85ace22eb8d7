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
            if request.path == "/openapi.json" and request.method == "GET":
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


def wants_html(request: Request) -> bool:
    """A browser asking for the root (Accept names HTML before JSON): it gets the panel, clients the versions."""
    accept = request.header("Accept")
    return "text/html" in accept and "application/json" not in accept.split("text/html")[0]
