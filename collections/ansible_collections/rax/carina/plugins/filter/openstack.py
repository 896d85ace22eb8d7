# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters that turn a COE contract into the input of the OpenStack modules."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def octavia_listeners(listeners):
    """rax.carina.octavia_lb listeners from a contract's listeners.

    TCP passthrough on the listener's port; the health monitor follows the listener's check,
    except that Octavia cannot present a client certificate: a check that needs one is TCP.
    """
    out = []
    for listener in listeners or []:
        try:
            port, check = int(listener["port"]), dict(listener.get("check") or {"type": "tcp"})
        except (KeyError, TypeError, ValueError) as exc:
            raise AnsibleFilterError("octavia_listeners: each listener needs a port (%s)" % exc) from exc
        kind = str(check.get("type", "tcp")).upper()
        if kind not in ("TCP", "HTTP", "HTTPS") or check.get("client_cert"):
            kind = "TCP"
        entry = {"port": port, "protocol": "TCP", "monitor_type": kind}
        if listener.get("member_port"):
            entry["member_port"] = int(listener["member_port"])
        if kind in ("HTTP", "HTTPS"):
            entry["monitor_url_path"] = check.get("path", "/")
        out.append(entry)
    return out


def role_ports(ports, role, clients=None):
    """rax.carina.nova_hosts role_ports of one role from a contract's ports: a port for clients is
    opened to each CIDR of `clients` (default anywhere), a port for the cluster to its own hosts."""
    if isinstance(clients, str):
        clients = [clients]
    clients = list(dict.fromkeys(clients or ["0.0.0.0/0"]))
    out = []
    for port in ports or []:
        if role not in (port.get("roles") or []):
            continue
        entry = {"port": str(port["port"]), "protocol": port.get("protocol", "tcp"),
                 "from": port.get("from", "clients")}
        if entry["from"] == "cluster":
            out.append(entry)
        else:
            out.extend(dict(entry, remote_ip_prefix=cidr) for cidr in clients)
    return out


class FilterModule:
    def filters(self):
        return {"octavia_listeners": octavia_listeners, "role_ports": role_ports}
