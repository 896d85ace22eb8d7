"""An HAProxy configuration from an Octavia load balancer's listeners, pools, members and health
monitors (plain dicts as Octavia's v2 API returns them), close to what an amphora runs."""

from __future__ import annotations

import re

ALGORITHMS = {"ROUND_ROBIN": "roundrobin", "LEAST_CONNECTIONS": "leastconn", "SOURCE_IP": "source",
              "SOURCE_IP_PORT": "source"}
# Listener protocols HAProxy can serve here; TERMINATED_HTTPS needs Barbican certificates,
# UDP/SCTP are not HAProxy's (Octavia uses keepalived/LVS for them).
MODES = {"TCP": "tcp", "HTTPS": "tcp", "HTTP": "http"}
GONE = ("PENDING_DELETE", "DELETED")


def _expect(codes: str) -> str:
    """Octavia's expected_codes ('200', '200,202', '200-204') as an rstatus regex."""
    parts = []
    for item in (codes or "200").split(","):
        code = item.strip()
        if "-" in code:
            lo, hi = (int(x) for x in code.split("-", 1))
            parts.extend(str(c) for c in range(lo, hi + 1))
        elif code:
            parts.append(code)
    return "^(%s)$" % "|".join(parts)


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:/-]", "", str(text))


def _ms(value, default: int) -> str:
    return "%dms" % (int(value) if value not in (None, "") else default)


def render(lb: dict, listeners: list[dict], pools: dict[str, dict], members: dict[str, list[dict]],
           monitors: dict[str, dict]) -> str:
    """``pools`` by id, ``members`` by pool id, ``monitors`` by id."""
    out = ["# load balancer %s (%s), written by the test cloud agent" % (lb["id"], _clean(lb.get("name") or "")),
           "global", "    maxconn 4096", "    log stdout format raw local0 info", "",
           "defaults", "    log global", "    retries 3", "    option redispatch", "    timeout connect 5s",
           "    timeout client 50s", "    timeout server 50s", "    timeout check 5s", ""]
    for listener in sorted(listeners, key=lambda x: x["protocol_port"]):
        if listener.get("provisioning_status") in GONE:
            continue
        mode = MODES.get(listener["protocol"])
        lid = listener["id"]
        if mode is None:
            out += ["# listener %s: protocol %s is not served by the test cloud" % (lid, listener["protocol"]), ""]
            continue
        out += ["frontend l_%s" % lid, "    bind :%d" % int(listener["protocol_port"]), "    mode %s" % mode,
                "    option %slog" % ("http" if mode == "http" else "tcp")]
        if not listener.get("admin_state_up", True):
            out.append("    disabled")
        limit = listener.get("connection_limit")
        if limit not in (None, -1):
            out.append("    maxconn %d" % int(limit))
        out.append("    timeout client %s" % _ms(listener.get("timeout_client_data"), 50000))
        if listener.get("timeout_tcp_inspect"):
            out.append("    tcp-request inspect-delay %s" % _ms(listener["timeout_tcp_inspect"], 0))
        cidrs = [c for c in listener.get("allowed_cidrs") or [] if c]
        if cidrs:
            out.append("    tcp-request connection reject unless { src %s }" % " ".join(_clean(c) for c in cidrs))
        if mode == "http":
            out.append("    option forwardfor")
        pool = pools.get(listener.get("default_pool_id") or "")
        if pool and pool.get("provisioning_status") not in GONE:
            out.append("    default_backend p_%s_%s" % (pool["id"], lid))
        out.append("")
        if pool and pool.get("provisioning_status") not in GONE:
            out += backend(pool, lid, mode, listener, members.get(pool["id"], []),
                           monitors.get(pool.get("healthmonitor_id") or ""))
    return "\n".join(out) + "\n"


def backend(pool: dict, lid: str, mode: str, listener: dict,  # noqa: PLR0912, PLR0917 - a renderer
            members: list[dict], monitor: dict | None) -> list[str]:
    out = ["backend p_%s_%s" % (pool["id"], lid), "    mode %s" % mode,
           "    balance %s" % ALGORITHMS.get(pool.get("lb_algorithm"), "roundrobin"),
           "    timeout connect %s" % _ms(listener.get("timeout_member_connect"), 5000),
           "    timeout server %s" % _ms(listener.get("timeout_member_data"), 50000)]
    persistence = pool.get("session_persistence") or {}
    cookie = False
    if persistence.get("type") == "SOURCE_IP":
        out += ["    stick-table type ip size 10k", "    stick on src"]
    elif persistence.get("type") == "HTTP_COOKIE" and mode == "http":
        out.append("    cookie SRV insert indirect nocache")
        cookie = True
    elif persistence.get("type") == "APP_COOKIE" and mode == "http" and persistence.get("cookie_name"):
        name = _clean(persistence["cookie_name"])
        out += ["    stick-table type string len 64 size 10k", "    stick store-response res.cook(%s)" % name,
                "    stick match req.cook(%s)" % name]
    opts = ""  # options of every server line
    if monitor and monitor.get("admin_state_up", True) and monitor.get("provisioning_status") not in GONE:
        kind = monitor.get("type")
        out.append("    timeout check %ds" % int(monitor.get("timeout") or 5))
        if kind in ("HTTP", "HTTPS"):
            send = "    http-check send meth %s uri %s" % (_clean(monitor.get("http_method") or "GET"),
                                                         _clean(monitor.get("url_path") or "/"))
            if monitor.get("http_version") == 1.1 or monitor.get("domain_name"):
                send += " ver HTTP/1.1"
                if monitor.get("domain_name"):
                    send += " hdr Host %s" % _clean(monitor["domain_name"])
            expect = _expect(monitor.get("expected_codes"))
            out += ["    option httpchk", send, "    http-check expect rstatus %s" % expect]
        # TCP, PING and TLS-HELLO are plain TCP connect checks here. HAProxy's ssl-hello-chk speaks
        # SSLv3, which TLS-1.2-only members (dockerd with tlsverify) answer with an alert, and
        # check-ssl needs the client certificate such members demand.
        opts = " check inter %ds fall %d rise %d" % (
            int(monitor.get("delay") or 5), int(monitor.get("max_retries_down") or 3),
            int(monitor.get("max_retries") or 3))
        if kind == "HTTPS":
            opts += " check-ssl verify none"
    if pool.get("protocol") == "PROXY":
        opts += " send-proxy"
    elif pool.get("protocol") == "PROXYV2":
        opts += " send-proxy-v2"
    for member in sorted(members, key=lambda m: m["id"]):
        if member.get("provisioning_status") in GONE:
            continue
        line = "    server m_%s %s:%d weight %d%s" % (
            member["id"], _clean(member["address"]), int(member["protocol_port"]),
            int(member.get("weight") if member.get("weight") is not None else 1), opts)
        if " check " in opts and (member.get("monitor_address") or member.get("monitor_port")):
            if member.get("monitor_address"):
                line += " addr %s" % _clean(member["monitor_address"])
            if member.get("monitor_port"):
                line += " port %d" % int(member["monitor_port"])
        if member.get("backup"):
            line += " backup"
        if cookie:
            line += " cookie %s" % member["id"]
        if not member.get("admin_state_up", True) or not pool.get("admin_state_up", True):
            line += " disabled"
        out.append(line)
    out.append("")
    return out
