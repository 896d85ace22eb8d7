#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_lock
short_description: Take a cluster's lock for one run, and give the cluster its unique id
version_added: 0.1.0
description:
  - One lock per cluster, the file C(<state_dir>/lock), shared by every run that changes the cluster -
    plain C(ansible-playbook), the carina command and its Python API (which run the same playbooks)
    and AWX jobs. The lock lasts as long as the process that holds it (by default the
    C(ansible-playbook) run that calls the module); a run that died leaves a lock the next run takes
    over. A lock held by a live run is refused, naming the run's process, its operation and since when.
  - The cluster's id, C(<state_dir>/id), is made on the first run that is not a delete, before any
    host exists, and never changes. The providers carry it on everything the cluster leaves behind
    (container labels, Nova metadata, Ironic extra, load balancer tags) and never adopt nor delete
    what carries another id. A cluster made by a release without ids gets one on its next run.
  - Runs on the controller (connection V(local)), where the state folder is.
author:
  - rax.carina developers (@rax-carina)
attributes:
  check_mode:
    support: full
    description: Writes nothing; a busy lock still fails, a new cluster gets an id that is not kept.
  diff_mode:
    support: none
    description: No diff is returned.
  idempotent:
    support: full
    description: The id is made once; taking or giving back the lock is not a change of the cluster.
options:
  name:
    description: The cluster's name.
    type: str
    required: true
  state_dir:
    description: The cluster's state folder (what M(rax.carina.cluster_spec) returns as C(state_dir)).
    type: path
    required: true
  operation:
    description: What the run does; V(delete) never makes an id (an unknown id is returned as empty).
    type: str
    choices: [create, scale, delete]
    default: create
  state:
    description:
      - V(present) takes the lock, V(absent) gives it back (only its holder, or anyone when the holder is gone).
    type: str
    choices: [present, absent]
    default: present
  id:
    description:
      - The id to keep when the state folder has none yet (what an earlier call in check mode returned, so
        that the checks in between saw the id the cluster gets). Left out, a new one is made.
      - When the state folder already has another id, the module fails.
      - With O(operation=delete) and a state folder with no id (lost), the id of the cluster to delete.
    type: str
    default: ""
  defer_new:
    description:
      - V(true) takes the lock of a cluster whose state folder already carries an id (taking it makes
        nothing new), and for a new cluster writes nothing, as in check mode, and returns the id to keep -
        so a rerun of a made cluster takes its lock in one step, and a new one only after the provider's
        checks (with a second call that gives this id).
      - RV(taken) says which it was.
    type: bool
    default: false
    version_added: 0.1.0
  holder_pid:
    description:
      - The process whose life the lock lasts. Left out, the C(ansible-playbook) process that runs the module.
    type: int
"""

EXAMPLES = r"""
- name: Read the cluster's id (or pick one) and see that no other run holds the lock, writing nothing
  rax.carina.cluster_lock:
    name: "{{ carina_cluster.name }}"
    state_dir: "{{ carina_cluster.state_dir }}"
  check_mode: true
  register: carina_lock

- name: Once every check passed - keep that id and take the lock
  rax.carina.cluster_lock:
    name: "{{ carina_cluster.name }}"
    state_dir: "{{ carina_cluster.state_dir }}"
    id: "{{ carina_lock.id }}"

- name: Take a made cluster's lock now; for a new one only read the id it gets
  rax.carina.cluster_lock:
    name: "{{ carina_cluster.name }}"
    state_dir: "{{ carina_cluster.state_dir }}"
    defer_new: true
  register: carina_lock

- name: Give the lock back
  rax.carina.cluster_lock:
    name: "{{ carina_cluster.name }}"
    state_dir: "{{ carina_cluster.state_dir }}"
    state: absent
"""

RETURN = r"""
id:
  description: The cluster's unique id; empty for a delete whose state has none.
  returned: success
  type: str
  sample: 5f0c8f5e2a4b4f7e9c1d2e3f4a5b6c7d
lock:
  description: Path of the lock file.
  returned: success
  type: str
  sample: /root/.carina/clusters/demo/lock
taken:
  description:
    - Whether this run holds the lock now (false in check mode, after V(absent), and for a new cluster with
      O(defer_new)).
  returned: success
  type: bool
  version_added: 0.1.0
holder:
  description: Who holds the lock now (none after V(absent)).
  returned: success
  type: dict
  sample: {pid: 4242, start: "123456", operation: create, since: "2026-11-24T14:00:00Z"}
"""

import contextlib
import fcntl
import json
import os
import re
import time
import uuid

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rax.carina.plugins.module_utils.files import read_bytes, write_atomic

ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def process_start(pid):
    """Field 22 of /proc/PID/stat (the start time), empty when the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def parent_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def playbook_process():
    """The ansible-playbook process above this one (the topmost: its task workers are forks of it), or None."""
    pid, found = os.getppid(), None
    while pid > 1:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            break
        if any(os.path.basename(arg) == b"ansible-playbook" for arg in argv[:2]):
            found = pid
        elif found:
            break
        pid = parent_of(pid)
    return found


def alive(holder):
    return bool(holder.get("pid")) and process_start(int(holder["pid"])) == holder.get("start")


def describe(holder):
    return "a %s run (pid %s, since %s)" % (holder.get("operation", "?"), holder.get("pid"), holder.get("since", "?"))


def read_id(state_dir):
    """The id the state folder carries: its id file, else the record's; '' when none."""
    data = read_bytes(os.path.join(state_dir, "id"))
    if data is not None:
        return data.decode(errors="replace").strip()
    with contextlib.suppress(OSError, ValueError, AttributeError), \
            open(os.path.join(state_dir, "cluster.json")) as handle:
        return str(json.load(handle).get("id") or "")
    return ""


def same(holder, me):
    return (holder.get("pid"), holder.get("start")) == (me["pid"], me["start"])


def release(module, path, me, result):
    """Empty the lock (never remove it: a run waiting on this file keeps the same file)."""
    if not os.path.exists(path) or module.check_mode:
        return
    with open(path, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        holder = parse(handle.read())
        if holder and alive(holder) and not same(holder, me):
            module.fail_json(msg="cluster %s's lock is held by %s, not by this run; left as it is"
                             % (module.params["name"], describe(holder)), **dict(result, holder=holder))
        handle.seek(0)
        handle.truncate()


def acquire(module, path, me, result, dry):
    """Take the lock (only look at it when dry), or fail naming its live holder; the holder after."""
    name, state_dir = module.params["name"], module.params["state_dir"]
    if dry:
        holder = parse((read_bytes(path) or b"").decode(errors="replace"))
        if holder and alive(holder) and not same(holder, me):
            module.fail_json(msg=busy(name, holder, path), **dict(result, holder=holder))
        return me
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        holder = parse(handle.read())
        if holder and alive(holder) and not same(holder, me):
            module.fail_json(msg=busy(name, holder, path), **dict(result, holder=holder))
        if holder and same(holder, me):
            return holder  # taken earlier in the same run
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(me, sort_keys=True) + "\n")
    return me


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state_dir=dict(type="path", required=True),
            operation=dict(type="str", choices=["create", "scale", "delete"], default="create"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            id=dict(type="str", default=""),
            defer_new=dict(type="bool", default=False),
            holder_pid=dict(type="int"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    state_dir = p["state_dir"]
    path = os.path.join(state_dir, "lock")
    pid = p["holder_pid"] or playbook_process()
    if not pid:
        module.fail_json(msg="cluster_lock found no ansible-playbook process above it; run it on the controller "
                         "(connection: local) from ansible-playbook, or give holder_pid")
    me = dict(pid=pid, start=process_start(pid), operation=p["operation"],
              since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if not me["start"]:
        module.fail_json(msg="process %s (the lock's holder) is not running" % pid)
    result = dict(changed=False, lock=path, holder={}, taken=False)

    if p["state"] == "absent":
        release(module, path, me, result)
        module.exit_json(id=read_id(state_dir), **result)

    cluster_id = read_id(state_dir)
    if cluster_id and not ID_PATTERN.match(cluster_id):
        module.fail_json(msg="%s holds %r, which is not a cluster id (32 hexadecimal digits); put the right id "
                         "back or remove the file" % (os.path.join(state_dir, "id"), cluster_id[:64]), **result)
    if p["id"] and not ID_PATTERN.match(p["id"]):
        module.fail_json(msg="id %r is not a cluster id (32 hexadecimal digits)" % p["id"][:64], **result)
    if cluster_id and p["id"] and p["id"] != cluster_id:
        module.fail_json(msg="%s holds id %s, not %s: another run made this state folder meanwhile; run again"
                         % (os.path.join(state_dir, "id"), cluster_id, p["id"]), **result)
    if not cluster_id and p["operation"] == "delete":
        cluster_id = p["id"]  # a delete whose state is lost names the id it deletes; nothing is kept
    new_id = not cluster_id and p["operation"] != "delete"
    if new_id:
        cluster_id = p["id"] or uuid.uuid4().hex
        result["changed"] = True
    dry = module.check_mode or (p["defer_new"] and new_id)
    result["holder"] = acquire(module, path, me, result, dry)
    result["taken"] = not dry
    if new_id and not dry:
        # Kept before any host exists, so that a run that dies later leaves hosts this state knows.
        write_atomic(os.path.join(state_dir, "id"), (cluster_id + "\n").encode(), 0o644, durable=True)
    module.exit_json(id=cluster_id, **result)


def parse(text):
    try:
        holder = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def busy(name, holder, path):
    return ("cluster %s is busy: %s is changing it (lock %s); wait for it to end, or stop that process"
            % (name, describe(holder), path))


if __name__ == "__main__":
    main()
