#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: engine_tls
short_description: Docker engine with TLS (tlsverify) on TCP and the local socket, in one step
version_added: 0.1.0
description:
  - Installs the CA, the node's server certificate and key, writes C(daemon.json) with C(tlsverify)
    on tcp O(port) plus the local socket, and a systemd drop-in that starts C(dockerd) without the
    distribution's C(-H fd://) (which conflicts with C(hosts) in C(daemon.json)).
  - Restarts the engine only when one of those files changed (or it is not running), then waits
    until it answers on the TLS port. One module run instead of a dozen tasks keeps cluster
    creates fast.
  - Keys are written with mode 0600 from the start and never returned.
  - With O(restricted_clients), the engine also consults an authorization plug-in of carina's
    (C(carina-authz), a small Python program started by a systemd socket) that lets the named client
    certificates make only the API calls listed for them; every other client of the cluster CA keeps
    full access. Docker names a TLS client by its certificate's common name.
author:
  - rax.carina developers (@rax-carina)
attributes:
  check_mode:
    support: full
    description: Reports which files would change and whether the engine would restart.
  diff_mode:
    support: none
    description: No diff; the files hold a private key.
  idempotent:
    support: full
    description: A second run with the same input changes nothing and restarts nothing.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with systemd and Docker's C(dockerd).
options:
  ca_cert:
    description: PEM of the cluster CA certificate.
    type: str
    required: true
  cert:
    description: PEM of the node's server certificate.
    type: str
    required: true
  key:
    description: PEM of the node's private key.
    type: str
    required: true
  port:
    description: TCP port of the Docker API over TLS.
    type: int
    default: 2376
  bind_address:
    description:
      - Address the TLS port listens on. V(0.0.0.0) is every address; a node that also carries a
        load balancer on the same port (a virtual IP on the masters) listens on its own address only.
    type: str
    default: 0.0.0.0
  tls_dir:
    description: Folder of the certificates on the host.
    type: path
    default: /etc/docker/tls
  labels:
    description: Engine labels (C(daemon.json) C(labels)).
    type: dict
    default: {}
  daemon_options:
    description: More C(daemon.json) settings, merged under the TLS ones.
    type: dict
    default: {}
  restricted_clients:
    description:
      - Client certificate common names, each with the only API calls it may make, as
        C(METHOD /path) without the API version prefix (C(GET /_ping) allows C(GET /v1.45/_ping)
        as well). For a load balancer's health check, which needs nothing but C(/_ping).
      - Empty (the default) leaves the engine without the plug-in, and removes it where an earlier
        run installed it.
    type: dict
    default: {}
  dockerd:
    description: Path of C(dockerd), used in the systemd drop-in.
    type: path
    default: /usr/sbin/dockerd
  wait_timeout:
    description: Seconds to wait for the engine to answer after a (re)start.
    type: int
    default: 60
notes:
  - Needs systemd. The drop-in is C(/etc/systemd/system/docker.service.d/carina.conf).
  - The plug-in is C(/usr/local/libexec/carina-docker-authz), its units C(carina-docker-authz.socket) and
    C(.service) (running as C(nobody), the policy its argument), and Docker finds it
    through C(/etc/docker/plugins/carina-authz.spec). While it is configured, the engine answers a TLS
    client only when the plug-in does; the socket unit keeps it reachable.
"""

EXAMPLES = r"""
- name: Configure the engine for TLS
  rax.carina.engine_tls:
    ca_cert: "{{ lookup('ansible.builtin.file', pki_dir ~ '/ca.pem') }}"
    cert: "{{ lookup('ansible.builtin.file', pki_dir ~ '/server-' ~ inventory_hostname ~ '.pem') }}"
    key: "{{ lookup('ansible.builtin.file', pki_dir ~ '/server-' ~ inventory_hostname ~ '-key.pem') }}"
    labels:
      carina.cluster: demo
      carina.role: manager
    restricted_clients:
      demo-lb-health: [GET /_ping, HEAD /_ping]
"""

RETURN = r"""
changed_files:
  description: Files written (or that would be written in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/docker/daemon.json]
removed_files:
  description: Files of an authorization plug-in an earlier run installed, removed as O(restricted_clients) is empty.
  returned: always
  type: list
  elements: str
  sample: []
restarted:
  description: Whether the engine was (or would be) restarted.
  returned: always
  type: bool
endpoint:
  description: The TLS endpoint of the engine on the host.
  returned: always
  type: str
  sample: tcp://0.0.0.0:2376
"""

import base64
import json
import os
import re
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rax.carina.plugins.module_utils.files import read_bytes, write_atomic

DAEMON_JSON = "/etc/docker/daemon.json"
DROPIN = "/etc/systemd/system/docker.service.d/carina.conf"
AUTHZ_NAME = "carina-authz"
AUTHZ_UNIT = "carina-docker-authz"
AUTHZ_PROGRAM = "/usr/local/libexec/carina-docker-authz"
AUTHZ_SOCKET = "/run/carina-docker-authz.sock"
AUTHZ_SPEC = "/etc/docker/plugins/%s.spec" % AUTHZ_NAME
AUTHZ_SOCKET_UNIT = "/etc/systemd/system/%s.socket" % AUTHZ_UNIT
AUTHZ_SERVICE_UNIT = "/etc/systemd/system/%s.service" % AUTHZ_UNIT
AUTHZ_FILES = (AUTHZ_PROGRAM, AUTHZ_SPEC, AUTHZ_SOCKET_UNIT, AUTHZ_SERVICE_UNIT)

# The plug-in (Docker's authorization plug-in protocol over HTTP on a Unix socket that systemd holds).
# Clients named in the policy may make the listed calls only; any other client, and the local socket
# (no user), is let through. The policy is its argument (base64 of JSON, in the service unit); without
# a policy it can read, it denies every TLS client.
AUTHZ_SOURCE = r'''#!/usr/bin/python3
"""carina-authz: limits the Docker API calls of the client certificates named in its policy (argument 1,
base64 of {"restricted": {"<common name>": ["GET /_ping", ...]}}). Installed by rax.carina.engine_tls;
Docker reaches it through %(spec)s."""
import base64
import http.server
import json
import os
import re
import socket
import socketserver
import sys

VERSIONED = re.compile(r"^/v[0-9][0-9.]*(/.*)$")


def read_policy(argv):
    try:
        return dict(json.loads(base64.b64decode(argv[1]))["restricted"]), None
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        return None, "carina-authz cannot read its policy: %%s" %% exc


RESTRICTED, PROBLEM = read_policy(sys.argv)


def decide(request):
    user = request.get("User") or ""
    if not user:
        return {"Allow": True}
    if RESTRICTED is None:
        return {"Allow": False, "Msg": PROBLEM}
    allowed = RESTRICTED.get(user)
    if allowed is None:
        return {"Allow": True}
    path = (request.get("RequestUri") or request.get("RequestURI") or "").split("?", 1)[0]
    match = VERSIONED.match(path)
    call = "%%s %%s" %% (request.get("RequestMethod"), match.group(1) if match else path)
    if call in allowed:
        return {"Allow": True}
    return {"Allow": False, "Msg": "%%s may only make these calls: %%s" %% (user, ", ".join(allowed))}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/Plugin.Activate":
            answer = {"Implements": ["authz"]}
        elif self.path == "/AuthZPlugin.AuthZReq":
            try:
                answer = decide(json.loads(body or b"{}"))
            except ValueError:
                answer = {"Allow": False, "Msg": "carina-authz: the request is not JSON"}
        elif self.path == "/AuthZPlugin.AuthZRes":
            answer = {"Allow": True}
        else:
            self.send_error(404)
            return
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        return self.socket.accept()[0], "docker"


if __name__ == "__main__":
    server = Server(os.environ.get("CARINA_AUTHZ_SOCKET", "%(socket)s"), Handler, bind_and_activate=False)
    if os.environ.get("LISTEN_FDS") == "1":  # the socket systemd holds
        server.socket = socket.socket(fileno=3)
    else:
        server.server_bind()
        server.server_activate()
    server.serve_forever()
''' % {"spec": AUTHZ_SPEC, "socket": AUTHZ_SOCKET}

AUTHZ_SOCKET_TEXT = """# Managed by rax.carina.engine_tls.
[Unit]
Description=carina: socket of the Docker authorization plug-in
Before=docker.service

[Socket]
ListenStream=%s
SocketMode=0600

[Install]
WantedBy=sockets.target
""" % AUTHZ_SOCKET


def authz_service_text(restricted):
    """The plug-in's service unit; its policy is the argument (base64 of JSON), shown in a comment."""
    policy = json.dumps({"restricted": {name: sorted(calls) for name, calls in sorted(restricted.items())}},
                        sort_keys=True)
    return """# Managed by rax.carina.engine_tls. Policy: %(policy)s
[Unit]
Description=carina: Docker authorization plug-in (restricted client certificates)
Requires=%(unit)s.socket

[Service]
ExecStart=/usr/bin/python3 -I %(program)s %(arg)s
User=nobody
NoNewPrivileges=yes
Restart=on-failure
""" % {"unit": AUTHZ_UNIT, "program": AUTHZ_PROGRAM, "policy": policy,
       "arg": base64.b64encode(policy.encode()).decode()}


def pem(text):
    return (text.strip() + "\n").encode()


def wait_for_port(address, port, timeout):
    deadline = time.time() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                return True
        except OSError:
            if time.time() > deadline:
                return False
            time.sleep(0.2)


def validate(module):
    p = module.params
    for name in ("ca_cert", "cert"):
        if "-----BEGIN CERTIFICATE-----" not in p[name]:
            module.fail_json(msg="%s is not a PEM certificate" % name)
    if "PRIVATE KEY-----" not in p["key"]:
        module.fail_json(msg="key is not a PEM private key")
    for name, calls in p["restricted_clients"].items():
        if not name or not isinstance(calls, list) or not calls:
            module.fail_json(msg="restricted_clients: %r needs a list of calls such as [GET /_ping]" % name)
        for call in calls:
            if not isinstance(call, str) or not re.match(r"^(GET|HEAD|POST|PUT|DELETE) /[A-Za-z0-9_./-]*$", call):
                module.fail_json(msg="restricted_clients: %r of %s is not a call such as 'GET /_ping'" % (call, name))
    if not os.path.exists(p["dockerd"]):
        module.fail_json(msg="%s not found: install the Docker engine first (rax.carina.runtime_docker does)"
                         % p["dockerd"])


def wanted_files(p):
    """(path, content, mode) of every file the engine needs."""
    tls = p["tls_dir"]
    daemon = dict(p["daemon_options"])
    daemon.update(
        hosts=["unix:///var/run/docker.sock", "tcp://%s:%d" % (p["bind_address"], p["port"])],
        tls=True,
        tlsverify=True,
        tlscacert=os.path.join(tls, "ca.pem"),
        tlscert=os.path.join(tls, "server.pem"),
        tlskey=os.path.join(tls, "server-key.pem"),
        labels=sorted("%s=%s" % kv for kv in p["labels"].items()),
    )
    dropin = (
        "# Managed by rax.carina.engine_tls. The distribution's unit starts `dockerd -H fd://`,\n"
        "# which conflicts with \"hosts\" in daemon.json.\n"
    )
    if p["restricted_clients"]:
        daemon["authorization-plugins"] = [AUTHZ_NAME]
        dropin += "[Unit]\nRequires={0}.socket\nAfter={0}.socket\n".format(AUTHZ_UNIT)
    dropin += "[Service]\nExecStart=\nExecStart=%s --containerd=/run/containerd/containerd.sock\n" % p["dockerd"]
    files = [
        (os.path.join(tls, "ca.pem"), pem(p["ca_cert"]), 0o644),
        (os.path.join(tls, "server.pem"), pem(p["cert"]), 0o644),
        (os.path.join(tls, "server-key.pem"), pem(p["key"]), 0o600),
        (DAEMON_JSON, (json.dumps(daemon, indent=2, sort_keys=True) + "\n").encode(), 0o644),
        (DROPIN, dropin.encode(), 0o644),
    ]
    if p["restricted_clients"]:
        files += [
            (AUTHZ_PROGRAM, AUTHZ_SOURCE.encode(), 0o755),
            (AUTHZ_SPEC, ("unix://%s\n" % AUTHZ_SOCKET).encode(), 0o644),
            (AUTHZ_SOCKET_UNIT, AUTHZ_SOCKET_TEXT.encode(), 0o644),
            (AUTHZ_SERVICE_UNIT, authz_service_text(p["restricted_clients"]).encode(), 0o644),
        ]
    return files


def write_files(p, files, changed_files, mode_only):
    folders = {p["tls_dir"]: 0o700, os.path.dirname(DROPIN): 0o700}
    if p["restricted_clients"]:
        folders.update({os.path.dirname(AUTHZ_PROGRAM): 0o755, os.path.dirname(AUTHZ_SPEC): 0o755})
    for folder, mode in folders.items():
        os.makedirs(folder, mode=mode, exist_ok=True)
    for path, data, mode in files:
        if path in changed_files:
            write_atomic(path, data, mode)
        elif path in mode_only:
            os.chmod(path, mode)


def apply_authz(module, systemctl, changed_files, stale, start_authz):
    """systemd's side of the plug-in: its socket listening (before the engine restarts), a new program or
    policy taking effect, or an earlier run's plug-in gone."""
    unit = AUTHZ_UNIT
    units_changed = any(path in changed_files for path in (DROPIN, AUTHZ_SOCKET_UNIT, AUTHZ_SERVICE_UNIT))
    if stale:
        module.run_command([systemctl, "disable", "--now", unit + ".socket", unit + ".service"])
        for path in stale:
            os.unlink(path)
        units_changed = True
    if units_changed:
        module.run_command([systemctl, "daemon-reload"], check_rc=True)
    if not module.params["restricted_clients"]:
        return
    if start_authz or AUTHZ_SOCKET_UNIT in changed_files:
        module.run_command([systemctl, "stop", unit + ".service"], check_rc=True)
        module.run_command([systemctl, "enable", "--quiet", unit + ".socket"], check_rc=True)
        module.run_command([systemctl, "restart", unit + ".socket"], check_rc=True)
    elif AUTHZ_PROGRAM in changed_files or AUTHZ_SERVICE_UNIT in changed_files:
        module.run_command([systemctl, "try-restart", unit + ".service"], check_rc=True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_cert=dict(type="str", required=True),
            cert=dict(type="str", required=True),
            key=dict(type="str", required=True, no_log=True),
            port=dict(type="int", default=2376),
            bind_address=dict(type="str", default="0.0.0.0"),  # noqa: S104 - every address is the default
            tls_dir=dict(type="path", default="/etc/docker/tls"),
            labels=dict(type="dict", default={}),
            daemon_options=dict(type="dict", default={}),
            restricted_clients=dict(type="dict", default={}),
            dockerd=dict(type="path", default="/usr/sbin/dockerd"),
            wait_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    validate(module)
    files = wanted_files(p)
    changed_files = []
    mode_only = []
    for path, data, mode in files:
        if read_bytes(path) != data:
            changed_files.append(path)
        elif os.stat(path).st_mode & 0o777 != mode:
            mode_only.append(path)

    stale = [] if p["restricted_clients"] else [path for path in AUTHZ_FILES if os.path.lexists(path)]

    systemctl = module.get_bin_path("systemctl", required=True)
    rc, _out, _err = module.run_command([systemctl, "is-active", "--quiet", "docker.service"])
    running = rc == 0
    authz_socket = False
    if p["restricted_clients"]:
        rc, _out, _err = module.run_command([systemctl, "is-active", "--quiet", AUTHZ_UNIT + ".socket"])
        authz_socket = rc == 0
    # The engine restarts for its own files only: a new program or policy restarts the plug-in alone.
    engine_files = [path for path in changed_files if path not in (AUTHZ_PROGRAM, AUTHZ_SERVICE_UNIT)]
    restart = bool(engine_files or stale) or not running
    start_authz = bool(p["restricted_clients"]) and not authz_socket
    result = dict(changed=bool(changed_files or mode_only or restart or stale or start_authz),
                  changed_files=changed_files, removed_files=stale,
                  restarted=restart, endpoint="tcp://%s:%d" % (p["bind_address"], p["port"]))
    if module.check_mode:
        module.exit_json(**result)

    write_files(p, files, changed_files, mode_only)
    apply_authz(module, systemctl, changed_files, stale, start_authz)
    if restart:
        module.run_command([systemctl, "enable", "--quiet", "docker.service"], check_rc=False)
        rc, out, err = module.run_command([systemctl, "restart", "docker.service"])
        if rc != 0:
            _rc, journal, _e = module.run_command(["journalctl", "-u", "docker.service", "-n", "15", "--no-pager"])
            module.fail_json(msg="the Docker engine did not restart with TLS: %s %s" % (err or out, journal), **result)
    probe = "127.0.0.1" if p["bind_address"] in ("0.0.0.0", "") else p["bind_address"]  # noqa: S104 - the wildcard
    if not wait_for_port(probe, p["port"], p["wait_timeout"]):
        module.fail_json(msg="the Docker engine does not answer on port %d after %ds" % (p["port"], p["wait_timeout"]),
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
