#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: credentials_bundle
short_description: The credentials bundle of a cluster, for the COE's own client
version_added: 0.1.0
description:
  - Writes a cluster's credentials bundle into one folder, as Carina handed it out - C(ca.pem),
    C(cert.pem), C(key.pem) (mode 0600) and one snippet per shell, C(<basename>.env) (sh, bash,
    zsh), C(<basename>.fish), C(<basename>.ps1) (PowerShell) and C(<basename>.cmd) (cmd.exe), each
    setting the environment O(env) names (the COE contract's C(credentials.env)) and
    C(CARINA_CLUSTER_NAME).
  - Runs where the bundle should be (usually the controller); reads the certificates from files
    there. Only files whose content or mode differ are written.
author:
  - rax.carina developers (@rax-carina)
attributes:
  check_mode:
    support: full
    description: Reports which files would be written.
  diff_mode:
    support: none
    description: No diff; the bundle holds a private key.
  idempotent:
    support: full
    description: A second run with the same input writes nothing.
  platform:
    support: full
    platforms: posix
    description: Any POSIX host.
options:
  path:
    description: Folder of the bundle (created with mode 0700).
    type: path
    required: true
  cluster_name:
    description: Name of the cluster (C(CARINA_CLUSTER_NAME)).
    type: str
    required: true
  endpoint:
    description: Address or name of the cluster endpoint (load balancer).
    type: str
    required: true
  env:
    description:
      - The environment the snippets set, by variable name; in the values C({endpoint}) becomes
        O(endpoint) and C({path}) the bundle's folder.
    type: dict
    required: true
  basename:
    description: Name of the snippets without their extension (the COE contract's C(credentials.basename)).
    type: str
    required: true
  ca_file:
    description: Path of the CA certificate to copy.
    type: path
    required: true
  cert_file:
    description: Path of the client certificate to copy.
    type: path
    required: true
  key_file:
    description: Path of the client key to copy.
    type: path
    required: true
  extra_files:
    description:
      - More files of the bundle, written like the others (only when they differ), for example a
        kubeconfig that embeds the client key.
    type: list
    elements: dict
    default: []
    version_added: 0.1.0
    suboptions:
      name:
        description: Plain file name inside the bundle's folder.
        type: str
        required: true
      content:
        description: The whole content of the file.
        type: str
        required: true
      mode:
        description: Mode of the file, in octal; the default fits a file that holds a key.
        type: str
        default: "0600"
"""

EXAMPLES = r"""
- name: Write the bundle of cluster demo
  rax.carina.credentials_bundle:
    path: ~/.carina/clusters/demo
    cluster_name: demo
    endpoint: 198.18.10.3
    basename: docker
    env:
      DOCKER_HOST: "tcp://{endpoint}:2376"
      DOCKER_TLS_VERIFY: "1"
      DOCKER_CERT_PATH: "{path}"
    ca_file: ~/.carina/clusters/demo/pki/ca.pem
    cert_file: ~/.carina/clusters/demo/pki/client-admin.pem
    key_file: ~/.carina/clusters/demo/pki/client-admin-key.pem
"""

RETURN = r"""
files:
  description: Every file of the bundle.
  returned: always
  type: list
  elements: str
written:
  description: Files written (or that would be in check mode).
  returned: always
  type: list
  elements: str
env:
  description: The environment the snippets set (but C(CARINA_CLUSTER_NAME)).
  returned: always
  type: dict
  sample: {DOCKER_HOST: "tcp://198.18.10.3:2376", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: /root/.carina/clusters/demo}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rax.carina.plugins.module_utils.contracts import SHELL_SUFFIXES
from ansible_collections.rax.carina.plugins.module_utils.files import parse_mode, read_bytes, write_atomic


def sh_quote(value):
    return "'" + value.replace("'", "'\"'\"'") + "'"


def snippets(name, basename, env):
    env = dict(env, CARINA_CLUSTER_NAME=name)
    sh = ["# Cluster %s: source this file (sh, bash, zsh), then use the cluster's client as usual." % name]
    sh += ["export %s=%s" % (k, sh_quote(v)) for k, v in env.items()]
    fish = ["# Cluster %s: source this file in fish, then use the cluster's client as usual." % name]
    fish += ["set -gx %s %s" % (k, sh_quote(v)) for k, v in env.items()]
    ps1 = ["# Cluster %s: dot-source this file in PowerShell, then use the cluster's client as usual." % name]
    ps1 += ["$env:%s = '%s'" % (k, v.replace("'", "''")) for k, v in env.items()]
    cmd = ["@echo off", "REM Cluster %s: run this file in cmd.exe, then use the cluster's client as usual." % name]
    cmd += ['set "%s=%s"' % (k, v) for k, v in env.items()]
    return {
        basename + SHELL_SUFFIXES["bash"]: ("\n".join(sh) + "\n").encode(),
        basename + SHELL_SUFFIXES["fish"]: ("\n".join(fish) + "\n").encode(),
        basename + SHELL_SUFFIXES["powershell"]: ("\r\n".join(ps1) + "\r\n").encode(),
        basename + SHELL_SUFFIXES["cmd"]: ("\r\n".join(cmd) + "\r\n").encode(),
    }


def read_sources(p):
    """The CA, certificate and key the bundle copies, by their name in it; ValueError when one is not right."""
    sources = {}
    for option, dest, marker in (("ca_file", "ca.pem", b"CERTIFICATE"), ("cert_file", "cert.pem", b"CERTIFICATE"),
                                 ("key_file", "key.pem", b"PRIVATE KEY")):
        data = read_bytes(p[option])
        if data is None:
            raise ValueError("%s %s does not exist; issue the certificates first (rax.carina.pki)"
                             % (option, p[option]))
        if marker not in data:
            raise ValueError("%s %s is not a PEM file" % (option, p[option]))
        sources[dest] = data
    return sources


def extra_entries(extra_files, taken):
    """(name, bytes, mode) of each extra file; ValueError for a name or mode that cannot be."""
    entries = []
    for index, extra in enumerate(extra_files):
        name = extra["name"]
        if not name or "/" in name or name.startswith(".") or name in taken:
            raise ValueError("extra_files[%d]: name %r must be a plain file name not already in the bundle"
                             % (index, name))
        mode = parse_mode(extra["mode"], "extra_files[%d]" % index, most=0o777)
        entries.append((name, extra["content"].encode("utf-8"), mode))
        taken = taken | {name}
    return entries


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            cluster_name=dict(type="str", required=True),
            endpoint=dict(type="str", required=True),
            env=dict(type="dict", required=True),
            basename=dict(type="str", required=True),
            ca_file=dict(type="path", required=True),
            cert_file=dict(type="path", required=True),
            key_file=dict(type="path", required=True),
            extra_files=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                content=dict(type="str", required=True, no_log=True),
                mode=dict(type="str", default="0600"),
            )),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["endpoint"]:
        module.fail_json(msg="endpoint is empty: the cluster has no load balancer address yet")
    try:
        sources = read_sources(p)
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    folder = p["path"]
    if not p["basename"] or "/" in p["basename"] or p["basename"].startswith("."):
        module.fail_json(msg="basename %r must be a plain file name" % p["basename"])
    try:
        env = dict((key, str(value).format(endpoint=p["endpoint"], path=folder)) for key, value in p["env"].items())
    except (KeyError, IndexError, ValueError) as exc:
        module.fail_json(msg="env values may hold {endpoint} and {path} only (%s)" % exc)
    wanted = [
        ("ca.pem", sources["ca.pem"], 0o644),
        ("cert.pem", sources["cert.pem"], 0o644),
        ("key.pem", sources["key.pem"], 0o600),
    ]
    wanted += [(name, data, 0o644) for name, data in snippets(p["cluster_name"], p["basename"], env).items()]
    try:
        wanted += extra_entries(p["extra_files"], {w[0] for w in wanted})
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    written = []
    for name, data, mode in wanted:
        path = os.path.join(folder, name)
        if read_bytes(path) != data or os.stat(path).st_mode & 0o777 != mode:
            written.append(path)
    folder_new = not os.path.isdir(folder)
    result = dict(changed=bool(written) or folder_new, written=written, env=env,
                  files=[os.path.join(folder, name) for name, _d, _m in wanted])
    if not module.check_mode:
        if folder_new:
            os.makedirs(folder, mode=0o700)
        for name, data, mode in wanted:
            path = os.path.join(folder, name)
            if path in written:
                write_atomic(path, data, mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
