"""Who asks: Keystone tokens validated against Keystone, or the single local tenant without Keystone."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime

from carina.errors import CarinaError
from carina.service.web import HTTPError, Request

DEFAULT_TRUST_ROLES = ("member", "load-balancer_member")
CACHE_SECONDS = 300  # a validated token is trusted this long (at most until it expires)
TIMEOUT = 10


@dataclass(frozen=True)
class Context:
    """The caller: their project (what they own), user, roles, and whether they see every project."""

    project_id: str = ""
    user_id: str = ""
    roles: tuple[str, ...] = ()
    is_admin: bool = False
    token: str = field(default="", repr=False)

    def owns(self, project_id: str) -> bool:
        return self.is_admin or project_id == self.project_id


class NoAuth:
    """Without Keystone: one tenant, the local user, who owns everything (the service then listens on
    127.0.0.1 only)."""

    keystone = False

    def __call__(self, request: Request) -> Context:
        return Context(is_admin=True)


class KeystoneAuth:
    """Validates X-Auth-Token with Keystone (GET /v3/auth/tokens), as the service's own user.

    Tokens must be scoped to a project. The roles in `admin_roles` (default: admin) see and change every
    project's clusters and templates.
    """

    keystone = True

    def __init__(self, settings: dict):
        self.auth_url = settings["auth_url"].rstrip("/")
        if not self.auth_url.startswith(("http://", "https://")):
            raise CarinaError(f"[keystone] auth_url {self.auth_url!r}: an http:// or https:// URL")
        if not self.auth_url.endswith("/v3"):
            self.auth_url += "/v3"
        self.settings = settings
        self.admin_roles = set(settings.get("admin_roles") or ["admin"])
        # The roles a user's trust hands the service for their clusters on OpenStack (those the user has).
        self.trust_roles = list(settings.get("trust_roles") or DEFAULT_TRUST_ROLES)
        self._lock = threading.Lock()
        self._service_token = ("", 0.0)
        self._service_user = ""
        self._cache: dict[str, tuple[Context, float]] = {}

    def __call__(self, request: Request) -> Context:
        token = request.header("X-Auth-Token")
        if not token:
            raise HTTPError(401, "authentication required: send a Keystone token in X-Auth-Token",
                            headers=[("WWW-Authenticate", f'Keystone uri="{self.auth_url}"')])
        cached = self._cache.get(token)
        if cached and cached[1] > time.time():
            return cached[0]
        body = self._validate(token)
        info = body.get("token") or {}
        project = info.get("project") or {}
        if not project.get("id"):
            raise HTTPError(403, "the token is not scoped to a project; ask Keystone for a project token")
        roles = tuple(sorted(r.get("name", "") for r in info.get("roles") or []))
        context = Context(project_id=project["id"], user_id=(info.get("user") or {}).get("id", ""),
                          roles=roles, is_admin=bool(self.admin_roles & set(roles)), token=token)
        expires = parse_time(info.get("expires_at")) or time.time() + CACHE_SECONDS
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[token] = (context, min(expires, time.time() + CACHE_SECONDS))
        return context

    def _validate(self, token: str) -> dict:
        for attempt in (1, 2):
            service = self._service(renew=attempt == 2)
            req = urllib.request.Request(self.auth_url + "/auth/tokens",  # noqa: S310 - http(s), checked
                                         headers={"X-Auth-Token": service, "X-Subject-Token": token,
                                                  "Accept": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 - http(s), checked
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise HTTPError(401, "the token is not valid (expired or revoked); get a new one") from exc
                if exc.code == 401 and attempt == 1:
                    continue  # the service's own token expired
                raise HTTPError(503, f"Keystone answered {exc.code} when validating the token") from exc
            except (OSError, ValueError) as exc:
                raise HTTPError(503, f"Keystone ({self.auth_url}) cannot be reached: {exc}") from exc
        raise HTTPError(503, "Keystone refused the service's own credentials")

    def login(self, username: str, password: str, project: str, domain: str = "Default") -> dict:
        """A project-scoped token for a user's name and password (the panel's login): {token, expires_at, user,
        project}. A refusal says only that the three do not match, never which."""
        try:
            token, info = self._password_token(username, password, domain, project, domain)
        except urllib.error.HTTPError as exc:
            if exc.code in (400, 401, 403, 404):
                raise HTTPError(401, "the user name, password and project do not match an account of this "
                                     "cloud") from exc
            raise HTTPError(503, f"Keystone answered {exc.code} to the login") from exc
        return {"token": token, "expires_at": info.get("expires_at"),
                "user": (info.get("user") or {}).get("name", username),
                "project": (info.get("project") or {}).get("name", project),
                "roles": sorted(r.get("name", "") for r in info.get("roles") or [])}

    # -- delegation: the user's own identity for their clusters on OpenStack ------------------------
    def delegate(self, context: Context) -> dict:
        """A Keystone trust from the caller to the service's user, in the caller's project, with the trust_roles
        the caller has (never more, never impersonation, never redelegation): {trust_id, roles}. The service
        makes and changes the caller's clusters with it, so they land in the caller's project as the caller's."""
        roles = [role for role in self.trust_roles if role in context.roles]
        if not roles:
            wanted, have = ", ".join(self.trust_roles), ", ".join(context.roles) or "none"
            raise HTTPError(403, f"making clusters on OpenStack needs one of the roles {wanted} in your project "
                                 f"(you have {have})")
        self._service()
        body = {"trust": {"trustor_user_id": context.user_id, "trustee_user_id": self._service_user,
                          "project_id": context.project_id, "impersonation": False, "allow_redelegation": False,
                          "roles": [{"name": role} for role in roles]}}
        answer = self._call("POST", "/OS-TRUST/trusts", context.token, body, "delegate to the service")
        return {"trust_id": answer["trust"]["id"], "roles": roles}

    def revoke(self, token: str, trust_id: str) -> None:
        """Delete a trust (its trustor's or an admin's token); one already gone is fine."""
        try:
            self._call("DELETE", f"/OS-TRUST/trusts/{trust_id}", token, None, "delete the trust")
        except HTTPError as exc:
            if exc.status != 404:
                raise

    def trust_cloud(self, trust_id: str) -> dict:
        """A clouds.yaml entry: the service's user, scoped by the trust (so: the trustor's project and roles)."""
        s = self.settings
        auth = {"auth_url": self.auth_url, "username": s["username"], "password": s["password"],
                "user_domain_name": s.get("user_domain_name", "Default"), "trust_id": trust_id}
        cloud = {"auth_type": "password", "auth": auth, "identity_api_version": 3}
        cloud |= {key: s[key] for key in ("region_name", "interface") if s.get(key)}
        return cloud

    def _call(self, method: str, path: str, token: str, body: dict | None, doing: str) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.auth_url + path, data=data, method=method,  # noqa: S310 - http(s), checked
                                     headers={"X-Auth-Token": token, "Content-Type": "application/json",
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 - http(s), checked
                text = resp.read()
        except urllib.error.HTTPError as exc:
            status = exc.code if exc.code in (401, 403, 404) else 503
            raise HTTPError(status, f"Keystone refused to {doing} ({exc.code})") from exc
        except OSError as exc:
            raise HTTPError(503, f"Keystone ({self.auth_url}) cannot be reached: {exc}") from exc
        return json.loads(text) if text else {}

    def _service(self, renew: bool = False) -> str:
        with self._lock:
            token, expires = self._service_token
            if token and not renew and expires > time.time() + 60:
                return token
            s = self.settings
            try:
                token, info = self._password_token(s["username"], s["password"], s.get("user_domain_name", "Default"),
                                                   s.get("project_name", "service"),
                                                   s.get("project_domain_name", "Default"))
                expires = parse_time(info.get("expires_at")) or time.time() + 600
                self._service_user = info["user"]["id"]
            except urllib.error.HTTPError as exc:
                raise HTTPError(503, f"Keystone refused the service's own credentials ({exc.code})") from exc
            except KeyError as exc:
                raise HTTPError(503, f"Keystone ({self.auth_url}) answered without {exc}") from exc
            self._service_token = (token, expires)
            return token

    def _password_token(self, user: str, password: str, user_domain: str, project: str,
                        project_domain: str) -> tuple[str, dict]:
        """A project-scoped token for a name and password: (token, its body). Keystone's refusals stay
        urllib's HTTPError for the caller to word; an unreachable Keystone is a 503."""
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": user_domain}}}},
            "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}}
        req = urllib.request.Request(self.auth_url + "/auth/tokens", data=json.dumps(body).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 - http(s), checked
                return resp.headers["X-Subject-Token"], json.loads(resp.read())["token"]
        except urllib.error.HTTPError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise HTTPError(503, f"Keystone ({self.auth_url}) cannot be reached: {exc}") from exc


def parse_time(text: str | None) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time as Keystone writes it; 0 when there is none."""
    if not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
