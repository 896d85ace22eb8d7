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
"""

RETURN = r"""
changed_files:
  description: Files written (or that would be written in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/docker/daemon.json]
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

import json
import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rax.carina.plugins.module_utils.files import read_bytes, write_atomic

DAEMON_JSON = "/etc/docker/daemon.json"
DROPIN = "/etc/systemd/system/docker.service.d/carina.conf"


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
        "[Service]\nExecStart=\nExecStart=%s --containerd=/run/containerd/containerd.sock\n" % p["dockerd"]
    )
    return [
        (os.path.join(tls, "ca.pem"), pem(p["ca_cert"]), 0o644),
        (os.path.join(tls, "server.pem"), pem(p["cert"]), 0o644),
        (os.path.join(tls, "server-key.pem"), pem(p["key"]), 0o600),
        (DAEMON_JSON, (json.dumps(daemon, indent=2, sort_keys=True) + "\n").encode(), 0o644),
        (DROPIN, dropin.encode(), 0o644),
    ]


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
            dockerd=dict(type="path", default="/usr/sbin/dockerd"),
            wait_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    p = module.params
    validate(module)
    tls = p["tls_dir"]
    files = wanted_files(p)
    changed_files = []
    mode_only = []
    for path, data, mode in files:
        if read_bytes(path) != data:
            changed_files.append(path)
        elif os.stat(path).st_mode & 0o777 != mode:
            mode_only.append(path)

    systemctl = module.get_bin_path("systemctl", required=True)
    rc, _out, _err = module.run_command([systemctl, "is-active", "--quiet", "docker.service"])
    running = rc == 0
    restart = bool(changed_files) or not running
    result = dict(changed=bool(changed_files or mode_only or restart), changed_files=changed_files,
                  restarted=restart, endpoint="tcp://%s:%d" % (p["bind_address"], p["port"]))
    if module.check_mode:
        module.exit_json(**result)

    for folder in (tls, os.path.dirname(DROPIN)):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    for path, data, mode in files:
        if path in changed_files:
            write_atomic(path, data, mode)
        elif path in mode_only:
            os.chmod(path, mode)
    if restart:
        if DROPIN in changed_files:
            module.run_command([systemctl, "daemon-reload"], check_rc=True)
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
