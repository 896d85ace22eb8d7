"""A small WSGI toolkit: requests, JSON responses, routes and HTTP errors (standard library only)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 1 << 20  # bytes a request body may have


class HTTPError(Exception):
    """An answer other than success: status, a short title (the reason phrase) and a detail for the user."""

    def __init__(self, status: int, detail: str, *, headers: Iterable[tuple[str, str]] = ()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = list(headers)

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase


class Request:
    def __init__(self, environ: dict):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.query = {key: values[-1] for key, values in
                      parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        self.id = "req-" + str(uuid.uuid4())
        self.params: dict[str, str] = {}  # the route's named groups
        self.context: dict[str, Any] = {}  # who asks (set by authentication)
        self._body: bytes | None = None

    def header(self, name: str, default: str = "") -> str:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.environ.get(key, default)
        return self.environ.get("HTTP_" + key, default)

    @property
    def body(self) -> bytes:
        if self._body is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError as exc:
                raise HTTPError(400, "Content-Length is not a number") from exc
            if length < 0 or length > MAX_BODY:
                raise HTTPError(413, f"a request body has at most {MAX_BODY} bytes")
            self._body = self.environ["wsgi.input"].read(length) if length else b""
        return self._body

    def json(self) -> Any:
        if not self.body:
            raise HTTPError(400, "the request has no body; send JSON")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"the body is not JSON: {exc}") from exc

    def url(self, path: str = "") -> str:
        """An absolute URL of this service (as the client reached it)."""
        env = self.environ
        host = env.get("HTTP_HOST") or f"{env.get('SERVER_NAME', '127.0.0.1')}:{env.get('SERVER_PORT', '80')}"
        return f"{env.get('wsgi.url_scheme', 'http')}://{host}{env.get('SCRIPT_NAME', '')}{path}"


class Response:
    def __init__(self, status: int = 200, body: Any = None, *, content_type: str = "application/json",
                 headers: Iterable[tuple[str, str]] = ()):
        self.status = status
        self.headers = list(headers)
        if body is None or isinstance(body, bytes):
            self.data = body or b""
        elif isinstance(body, str):
            self.data = body.encode()
        else:
            self.data = json.dumps(body, sort_keys=True).encode()
        self.content_type = content_type if self.data or status != 204 else ""

    def __call__(self, start_response: Callable) -> list[bytes]:
        headers = [*self.headers]
        if self.content_type:
            headers.append(("Content-Type", self.content_type))
        headers.append(("Content-Length", str(len(self.data))))
        start_response(f"{self.status} {HTTPStatus(self.status).phrase}", headers)
        return [self.data]


Handler = Callable[[Request], Response]


class Router:
    """Routes by method and path pattern; {name} in a pattern matches one path segment."""

    def __init__(self):
        self.routes: list[tuple[re.Pattern, dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$")
        for known, methods in self.routes:
            if known.pattern == regex.pattern:
                methods[method] = handler
                return
        self.routes.append((regex, {method: handler}))

    def find(self, request: Request) -> Handler:
        allowed: set[str] = set()
        for regex, methods in self.routes:
            match = regex.match(request.path)
            if match:
                handler = methods.get(request.method)
                if handler is None:  # another route may take this method (DELETE /v1/clusters/{ident} = detail)
                    allowed |= set(methods)
                    continue
                request.params = match.groupdict()
                return handler
        if allowed:
            raise HTTPError(405, f"{request.method} is not allowed on {request.path}",
                            headers=[("Allow", ", ".join(sorted(allowed)))])
        raise HTTPError(404, f"no resource at {request.path}")
