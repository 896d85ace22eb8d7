"""Docker Swarm: the health probe. Everything else (API URL, bundle, shells) comes from its contract."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

from carina.coes import register
from carina.coes.base import Coe, Health, https_get, mutual_tls


def docker_api(bundle: Path, host: str, port: int, path: str) -> list | dict:
    """GET a Docker API path through the cluster endpoint with the bundle's mutual TLS."""
    context = mutual_tls(bundle / "ca.pem", bundle / "cert.pem", bundle / "key.pem")
    return json.loads(https_get(context, host, port, path))


@register
class Swarm(Coe):
    name = "swarm"

    def health(self, cluster, bundle_dir: Path) -> Health:
        """HEALTHY when every manager is reachable and every node Ready, in the numbers the cluster has."""
        url = self.api_url(cluster.endpoint)
        host = urlsplit(url).hostname or cluster.endpoint
        try:
            nodes = docker_api(Path(bundle_dir), host, self.api_port, "/nodes")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return Health("UNHEALTHY", f"the endpoint {url} does not answer: {exc}")
        down = sorted(n["Description"]["Hostname"] for n in nodes if n["Status"]["State"] != "ready")
        managers = [n for n in nodes if n["Spec"].get("Role") == "manager"]
        unreachable = sorted(n["Description"]["Hostname"] for n in managers
                             if n.get("ManagerStatus", {}).get("Reachability") != "reachable")
        if down or unreachable:
            return Health("UNHEALTHY", "; ".join(filter(None, [
                f"nodes not ready: {', '.join(down)}" if down else "",
                f"managers unreachable: {', '.join(unreachable)}" if unreachable else ""])))
        if len(managers) != cluster.masters or len(nodes) != cluster.masters + cluster.nodes:
            return Health("UNHEALTHY", f"{len(managers)} managers and {len(nodes) - len(managers)} workers in the "
                                       f"swarm, {cluster.masters} and {cluster.nodes} expected")
        return Health("HEALTHY", f"{len(managers)} managers reachable, {len(nodes)} nodes ready")
