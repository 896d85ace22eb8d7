"""A cluster's own cloud credentials: a Keystone trust from the user to Magnum's service user, in the user's project.

Magnum 23 keeps no trusts of its own. The driver makes one per cluster with the caller's token when the cluster is
created (the servers, networks and load balancer are then the user's, in the user's project), writes a clouds.yaml
that authenticates as Magnum's service user scoped by the trust, and deletes the trust when the cluster is gone.
The trust delegates only the configured roles the user has: no impersonation, no redelegation.
"""

from __future__ import annotations

import yaml
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from carina.errors import CarinaError

IDENTITY = {"service_type": "identity", "interface": "public"}
TIMEOUT = 30


class Delegation:
    """Trusts to Magnum's service user: `service` is its [keystone_auth] settings (auth_url, username, password,
    user_domain_name or user_domain_id, project_name, project_domain_name, region_name)."""

    def __init__(self, service: dict, roles: list[str]):
        self.service = service
        self.roles = list(roles)
        self.auth_url = service["auth_url"].rstrip("/")
        if not self.auth_url.endswith("/v3"):
            self.auth_url += "/v3"

    def _service_session(self) -> ks_session.Session:
        s = self.service
        auth = v3.Password(auth_url=self.auth_url, username=s["username"], password=s["password"],
                           user_domain_name=s.get("user_domain_name"), user_domain_id=s.get("user_domain_id"),
                           project_name=s.get("project_name"), project_domain_name=s.get("project_domain_name"),
                           project_domain_id=s.get("project_domain_id"))
        return ks_session.Session(auth=auth, timeout=TIMEOUT)

    def delegate(self, token: str, user_id: str, project_id: str, user_roles: list[str]) -> dict:
        """A trust from the user (their token) to the service user, in their project: {trust_id, roles}."""
        roles = [role for role in self.roles if role in user_roles]
        if not roles:
            raise CarinaError(f"making a cluster needs one of the roles {', '.join(self.roles)} in the project "
                              f"(the user has {', '.join(user_roles) or 'none'})")
        service = self._service_session()
        try:
            trustee = service.get_user_id()
            user = ks_session.Session(auth=v3.Token(auth_url=self.auth_url, token=token, project_id=project_id),
                                      timeout=TIMEOUT)
            body = {"trust": {"trustor_user_id": user_id, "trustee_user_id": trustee, "project_id": project_id,
                              "impersonation": False, "allow_redelegation": False,
                              "roles": [{"name": role} for role in roles]}}
            answer = user.post("/OS-TRUST/trusts", json=body, endpoint_filter=IDENTITY).json()
        except ks_exceptions.ClientException as exc:
            raise CarinaError(f"Keystone refused the cluster's trust: {exc}") from exc
        return {"trust_id": answer["trust"]["id"], "roles": roles}

    def revoke(self, trust_id: str) -> None:
        """Delete a trust with the service user's own rights; one already gone is fine."""
        try:
            self._service_session().delete(f"/OS-TRUST/trusts/{trust_id}", endpoint_filter=IDENTITY)
        except ks_exceptions.NotFound:
            return

    def clouds_yaml(self, trust_id: str, cloud: str) -> str:
        """clouds.yaml with one cloud: the service user, scoped by the trust (the user's project, the trust's roles)."""
        s = self.service
        auth = {"auth_url": self.auth_url, "username": s["username"], "password": s["password"], "trust_id": trust_id}
        for key in ("user_domain_name", "user_domain_id"):
            if s.get(key):
                auth[key] = s[key]
        entry = {"auth_type": "password", "auth": auth, "identity_api_version": 3}
        for key in ("region_name", "interface"):
            if s.get(key):
                entry[key] = s[key]
        return yaml.safe_dump({"clouds": {cloud: entry}}, default_flow_style=False)
