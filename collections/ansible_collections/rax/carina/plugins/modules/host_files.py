#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_files
short_description: Many small files on a host in one step, each written only when it differs
version_added: 0.1.0
description:
  - Makes the listed folders and writes the listed files (certificates, keys, configuration) in one
    module run, so that a node's whole configuration costs one round trip instead of one per file.
  - A file is rewritten (atomically, through a temporary file created with its final mode) only when
    its content differs; a file whose content is right but whose mode is not gets its mode fixed.
  - Contents are never returned, logged or shown in a diff; the task should still use C(no_log) when
    they hold keys, since the module's arguments carry them.
author:
  - rax.carina developers (@rax-carina)
attributes:
  check_mode:
    support: full
    description: Reports what would be written or fixed and writes nothing.
  diff_mode:
    support: none
    description: Contents may be keys; no diff is given.
  platform:
    support: full
    platforms: posix
    description: Runs on the host whose files it writes.
  idempotent:
    support: full
    description: The same input writes nothing.
options:
  directories:
    description: Folders made first (with their parents) when missing; an existing folder gets its mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the folder.
        type: path
        required: true
      mode:
        description: Mode of the folder, in octal.
        type: str
        default: "0755"
  files:
    description: The files to write.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file; its folder must exist or be listed in O(directories).
        type: path
        required: true
      content:
        description: The whole content of the file.
        type: str
        required: true
      mode:
        description: Mode of the file, in octal.
        type: str
        default: "0644"
      tags:
        description: Free words returned in RV(changed_tags) when this file changes, for example the services
          that must restart.
        type: list
        elements: str
        default: []
      validate:
        description:
          - A command that checks the new content before anything is written, with V(%s) standing for a
            temporary file that holds it (in the file's folder, with the file's mode), for example
            V(haproxy -c -q -f %s).
          - Files are written in the order given, so the check may rely on the files listed before this one
            (a certificate its configuration names). If the check fails, neither this file nor any after it is
            written, and the task fails with the command's output. Not run in check mode.
        type: str
        version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Install a node's certificate, key and configuration
  rax.carina.host_files:
    directories:
      - {path: /etc/kubernetes/pki, mode: "0700"}
    files:
      - {path: /etc/kubernetes/pki/ca.pem, content: "{{ lookup('file', 'pki/ca.pem') }}", tags: [kubelet]}
      - {path: /etc/kubernetes/pki/kubelet-key.pem, content: "{{ lookup('file', 'pki/kubelet-key.pem') }}",
         mode: "0600", tags: [kubelet]}
  no_log: true
  register: node_files

- name: Configure a service and check the configuration before it is written
  rax.carina.host_files:
    files:
      - {path: /etc/haproxy/haproxy.cfg, content: "{{ lookup('template', 'haproxy.cfg.j2') }}",
         validate: "haproxy -c -q -f %s", tags: [haproxy]}
  register: lb_files
"""

RETURN = r"""
written:
  description: Files written (or that would be), in the order given.
  returned: always
  type: list
  elements: str
  sample: [/etc/kubernetes/pki/ca.pem]
modes_fixed:
  description: Files and folders whose mode was (or would be) set.
  returned: always
  type: list
  elements: str
made:
  description: Folders made (or that would be).
  returned: always
  type: list
  elements: str
changed_tags:
  description: The tags of every file written or fixed, each once, sorted.
  returned: always
  type: list
  elements: str
  sample: [kubelet]
"""

import os
import shlex
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rax.carina.plugins.module_utils.files import parse_mode, read_bytes, write_atomic


def plan(directories, files):
    """(folders to make, modes to fix, files to write, tags) without touching anything."""
    make, fix, write, tags = [], [], [], set()
    for index, entry in enumerate(directories):
        path, mode = entry["path"], parse_mode(entry["mode"], "directories[%d]" % index)
        if not os.path.isabs(path):
            raise ValueError("directories[%d]: %s is not an absolute path" % (index, path))
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ValueError("directories[%d]: %s exists and is not a folder" % (index, path))
        if not os.path.isdir(path):
            make.append((path, mode))
        elif stat.S_IMODE(os.stat(path).st_mode) != mode:
            fix.append((path, mode))
    made = {item[0] for item in make}
    for index, entry in enumerate(files):
        path, mode = entry["path"], parse_mode(entry["mode"], "files[%d]" % index)
        if not os.path.isabs(path):
            raise ValueError("files[%d]: %s is not an absolute path" % (index, path))
        folder = os.path.dirname(path)
        if not os.path.isdir(folder) and folder not in made:
            raise ValueError("files[%d]: folder %s does not exist; list it in directories" % (index, folder))
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            raise ValueError("files[%d]: %s exists and is not a regular file" % (index, path))
        data = entry["content"].encode("utf-8")
        if read_bytes(path) != data:
            write.append((path, data, mode, entry.get("validate")))
            tags.update(entry["tags"] or [])
        elif stat.S_IMODE(os.stat(path).st_mode) != mode:
            fix.append((path, mode))
            tags.update(entry["tags"] or [])
    return make, fix, write, tags


def check(path, data, mode, command, run_command):
    """Run `command` on a temporary copy of the new content; a message when it fails, else None."""
    if "%s" not in command:
        return "%s: validate must contain %%s, the place of the file to check: %s" % (path, command)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".carina-check-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        rc, out, err = run_command([word.replace("%s", tmp) for word in shlex.split(command)])
    finally:
        os.unlink(tmp)
    if rc == 0:
        return None
    return "%s: the new content fails its check (%s, rc=%d): %s" % (
        path, command, rc, (err or out).strip().replace(tmp, path) or "no output")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                mode=dict(type="str", default="0755"),
            )),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True, no_log=True),
                mode=dict(type="str", default="0644"),
                tags=dict(type="list", elements="str", default=[]),
                validate=dict(type="str"),
            )),
        ),
        supports_check_mode=True,
    )
    try:
        make, fix, write, tags = plan(module.params["directories"], module.params["files"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = dict(
        changed=bool(make or fix or write), made=[item[0] for item in make], modes_fixed=[item[0] for item in fix],
        written=[item[0] for item in write], changed_tags=sorted(tags),
    )
    if not module.check_mode:
        written = []
        try:
            for path, mode in make:
                os.makedirs(path, exist_ok=True)
                os.chmod(path, mode)
            for path, mode in fix:
                os.chmod(path, mode)
            for path, data, mode, command in write:
                failure = command and check(path, data, mode, command, module.run_command)
                if failure:
                    result.update(changed=True, written=written)
                    module.fail_json(msg=failure, **result)
                write_atomic(path, data, mode)
                written.append(path)
        except OSError as exc:
            result.update(written=written)
            module.fail_json(msg="cannot write %s: %s" % (exc.filename or "a file", exc.strerror or exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
