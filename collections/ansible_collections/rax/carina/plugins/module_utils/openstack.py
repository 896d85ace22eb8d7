# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Connection handling the OpenStack modules of rax.carina share (same options as openstack.cloud)."""

from __future__ import annotations

import re
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.rax.carina.plugins.module_utils import ssh
from ansible_collections.rax.carina.plugins.module_utils.openstack_spec import openstack_argument_spec

try:
    import openstack
    from openstack import exceptions as os_exc

    HAS_SDK = True
    SDK_IMPORT_ERROR = None
    Conflict = os_exc.ConflictException
except ImportError:
    HAS_SDK = False
    SDK_IMPORT_ERROR = traceback.format_exc()

    class Conflict(Exception):
        """Stands for openstacksdk's ConflictException when the SDK is missing (the module then fails early)."""

# Metadata keys every cloud object of a cluster carries, so that delete finds them from the cloud.
META_CLUSTER = "carina_cluster"
META_ROLE = "carina_role"
# The cluster's unique id (what rax.carina.cluster_lock makes), where the cloud keeps it.
META_CLUSTER_ID = "carina_cluster_id"
ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CarinaOpenStackModule:
    """Base of the OpenStack modules: builds the AnsibleModule, connects, turns SDK errors into fail_json."""

    def __init__(self, argument_spec, **module_kwargs):
        self.ansible = AnsibleModule(argument_spec=openstack_argument_spec(**argument_spec),
                                     supports_check_mode=True, **module_kwargs)
        self.params = self.ansible.params
        self.check_mode = self.ansible.check_mode
        self.result = {"changed": False}
        if not HAS_SDK:
            self.ansible.fail_json(msg=missing_required_lib("openstacksdk"), exception=SDK_IMPORT_ERROR)
        self.conn = None

    def check_cluster_id(self, cluster_id):
        if cluster_id and not ID_RE.match(cluster_id):
            self.fail("cluster_id %r: must be 1 to 64 letters, digits, '.', '_' or '-'" % cluster_id)

    def refuse_other_id(self, cluster, cluster_id, found, touched="Nothing was changed"):
        """Fail, before anything changes, when what carries the cluster's name carries another id
        (found: {id: what carries it}; '' for objects made before ids): a cluster of that name made
        from another state folder. With no id known (cluster_id ''), any id is another."""
        others = sorted(set(found) - {"", cluster_id})
        if others and not cluster_id:
            self.fail("cluster %s on the cloud has id %s (%s carries it), and this run knows no id (its state folder "
                      "has none). %s. If that cluster is yours and its state is lost, give its id: "
                      "-e carina_cluster_id=%s (or take the state the cluster keeps in Barbican: "
                      "-e carina_state_from_store=true)" % (cluster, others[0], found[others[0]], touched, others[0]),
                      other_id=others[0])
        if others:
            self.fail("cluster %s on the cloud has id %s (%s carries it), not this state's %s: it was made from "
                      "another state folder. %s. Choose another name, or delete it from the state folder that "
                      "made it" % (cluster, others[0], found[others[0]], cluster_id, touched), other_id=others[0])

    def connect(self, conn=None):
        """Connect (or use the connection given, for tests); fail with what to check."""
        self.conn = conn if conn is not None else open_connection(self.params, self.fail)
        return self.conn

    def fail(self, msg, **extra):
        self.ansible.fail_json(msg=msg, **dict(self.result, **extra))

    def exit(self, **extra):
        self.ansible.exit_json(**dict(self.result, **extra))

    def wait_for(self, what, probe, timeout=None, delay=1.0):
        """Call probe() until it returns something true; fail with `what` after the timeout."""
        deadline = time.time() + (timeout or self.params["timeout"])
        while True:
            value = probe()
            if value:
                return value
            if time.time() > deadline:
                self.fail("timed out after %ss waiting for %s" % (timeout or self.params["timeout"], what))
            time.sleep(delay)

    def wait_for_sshd(self, kind, hosts, state, unreachable):
        """With O(wait) and O(wait_ssh), wait until the hosts this run made ({name: address}) answer SSH within
        O(timeout); else fail saying that those `kind` (servers, nodes) are in `state` (made, and kept for the
        next run) and may be `unreachable`."""
        p = self.params
        if not (p["wait"] and p["wait_ssh"] and hosts):
            return
        pending = ssh.wait_for_sshd(hosts, p["timeout"])
        if pending:
            self.fail("%s %s are %s but their sshd did not answer within %ss; they may still be booting (run again "
                      "to go on with them), or %s" % (kind, ssh.describe_pending(pending), state, p["timeout"],
                                                      unreachable))

    def run(self):
        """Connect, then reconcile: present() or absent() after O(state)."""
        self.connect()
        if self.params["state"] == "present":
            self.present()
        else:
            self.absent()

    def present(self):
        raise NotImplementedError

    def absent(self):
        raise NotImplementedError

    def __call__(self):
        try:
            self.run()
        except os_exc.SDKException as exc:
            self.fail(describe_sdk_error(exc), exception=traceback.format_exc())
        self.exit()


def open_connection(params, fail):
    """An authorized connection from the connection options (openstack_argument_spec); fail(msg) says what to
    check when it cannot authenticate."""
    cloud = params["cloud"]
    try:
        if isinstance(cloud, dict):
            conn = openstack.connect(**cloud)
        else:
            conn = openstack.connect(
                cloud=cloud, auth_type=params["auth_type"], auth=params["auth"], region_name=params["region_name"],
                verify=params["validate_certs"], cacert=params["ca_cert"], cert=params["client_cert"],
                key=params["client_key"], api_timeout=params["api_timeout"], interface=params["interface"],
            )
        conn.authorize()
    except os_exc.SDKException as exc:
        fail("cannot authenticate to the cloud %s: %s; check the cloud name, auth_url, user, password and project"
             % (cloud if isinstance(cloud, str) else "", exc))
    return conn


def describe_sdk_error(exc):
    """A one-line message from an SDK exception: the API's own message and what was asked."""
    details = getattr(exc, "details", None) or ""
    url = getattr(exc, "url", None) or ""
    status = getattr(exc, "status_code", None)
    parts = [str(getattr(exc, "message", None) or exc)]
    if details and details not in parts[0]:
        parts.append(str(details))
    if status or url:
        parts.append("(HTTP %s %s)" % (status or "", url))
    return " ".join(p for p in parts if p)


def server_addresses(server):
    """(fixed, floating) IPv4 addresses of a Nova server, from its `addresses`."""
    fixed, floating = "", ""
    for entries in (server.addresses or {}).values():
        for entry in entries:
            if entry.get("version", 4) != 4:
                continue
            if entry.get("OS-EXT-IPS:type") == "floating":
                floating = floating or entry["addr"]
            else:
                fixed = fixed or entry["addr"]
    return fixed, floating


def number_of(name):
    """N of a host named <cluster>-<role>-N (0 when it has none)."""
    tail = (name or "").rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0
