#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_state
short_description: Keep a cluster's state folder where the cluster lives, so a job with no state can go on with it
version_added: 0.1.0
description:
  - A cluster's state folder (its record, id, CA and client keys, SSH key pair and known hosts, credentials
    bundle) is kept as one archive in a store beside the cluster, so that a job that starts with an empty
    C(carina_home) - every AWX job does - can scale, repair, re-create or delete a cluster another job made.
  - "Stores: V(volume) (local provider), a Docker volume C(carina-state-<name>) on the cluster's engine, labelled
    with the cluster's name and id, read and written through a helper container that is never started;
    V(barbican) (OpenStack provider), Barbican secrets in the caller's project (the archive in pieces of at most
    6000 bytes, under Barbican's default size limit) grouped in a generic container
    C(carina-state-<name>-<id>), as Magnum keeps cluster certificates; V(none) keeps nothing (for static hosts,
    put the state folder on a mounted volume)."
  - V(auto) picks V(volume) for O(provider=local), V(barbican) for O(provider=openstack) when the cloud's catalog
    has a key manager (else V(none)), and V(none) for O(provider=static).
  - Runs on the controller (connection V(local)), where the state folder is.
author:
  - rax.carina developers (@rax-carina)
extends_documentation_fragment:
  - rax.carina.openstack
attributes:
  check_mode:
    support: full
    description: Reads the store and says what would change; writes nothing.
  diff_mode:
    support: none
    description: No diff is returned (the state holds keys).
  idempotent:
    support: full
    description: The same files store nothing again (a note in the state folder, C(.stored), says what was stored).
options:
  name:
    description: The cluster's name.
    type: str
    required: true
  home:
    description: The carina home; the state folder is C(<home>/clusters/<name>) unless O(state_dir) is given.
    type: path
    default: ~/.carina
  state_dir:
    description: The cluster's state folder.
    type: path
  cluster_id:
    description:
      - The cluster's id. Needed for V(pushed) and V(absent). For V(pulled), only the store of that id is used;
        left out, the store of the cluster's name, and a failure if stores of several ids carry that name.
    type: str
    default: ""
  provider:
    description: The cluster's provider, for O(store=auto).
    type: str
    choices: [local, openstack, static]
    default: local
  store:
    description: Where the state is kept.
    type: str
    choices: [auto, volume, barbican, none]
    default: auto
  state:
    description:
      - V(pulled) writes the stored state into the state folder when the folder holds another (or none); the store
        is the state of record for the runs that ask for it. Nothing is done when nothing is stored.
      - V(pushed) stores the state folder (all but its lock) when it differs from what was stored last, then
        removes the older copies.
      - V(absent) removes every stored copy of the cluster of O(cluster_id).
    type: str
    choices: [pulled, pushed, absent]
    default: pushed
  image:
    description: An image on the engine for the helper container of O(store=volume) (never started).
    type: str
    default: carina-host:bookworm-lb
  docker_host:
    description: The Docker engine of O(store=volume); defaults to E(DOCKER_HOST), else the local socket.
    type: str
"""

EXAMPLES = r"""
- name: A job with no state takes the cluster's from the store
  rax.carina.cluster_state:
    name: demo
    provider: openstack
    cloud: devstack
    state: pulled

- name: Keep the state where the cluster lives
  rax.carina.cluster_state:
    name: demo
    cluster_id: "{{ carina_cluster.id }}"
    provider: local
    state: pushed
"""

RETURN = r"""
state_dir:
  description: The state folder.
  returned: always
  type: str
  sample: /root/.carina/clusters/demo
store:
  description: Which store was used (V(volume), V(barbican) or V(none)).
  returned: always
  type: str
  sample: volume
location:
  description: Where the state is kept (the volume's name, the Barbican container's address); empty for none.
  returned: always
  type: str
  sample: carina-state-demo
id:
  description: The id of the cluster whose state was pulled, pushed or removed (empty when none).
  returned: always
  type: str
digest:
  description: SHA-256 of the stored archive (empty when nothing is stored).
  returned: always
  type: str
pulled:
  description: Files written into the state folder by V(pulled).
  returned: always
  type: list
  elements: str
"""

import base64
import contextlib
import io
import os
import re
import tarfile
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.rax.carina.plugins.module_utils import state as archive
from ansible_collections.rax.carina.plugins.module_utils.openstack_spec import openstack_argument_spec

# The Docker SDK and openstacksdk are imported when a store needs them (open_store): a run whose state is stored
# as it is calls no store and needs neither (openstacksdk alone takes a third of a second to import).
docker = NotFound = os_exc = None

LABEL_CLUSTER = "carina.cluster"
LABEL_ID = "carina.cluster-id"
LABEL_KIND = "carina.kind"
ID_RE = re.compile(r"^[0-9a-f]{32}$")
# Barbican refuses secrets over 10000 bytes by default; base64 makes 6000 bytes 8000 characters.
PIECE = 6000
OPAQUE = "opaque"  # Barbican's secret type for bytes of no known kind


class VolumeStore:
    """The state as /state/state.tgz and /state/digest in a Docker volume, through a container never started."""

    name = "volume"

    def __init__(self, module, cluster):
        self.module = module
        self.cluster = cluster
        self.volume = "carina-state-%s" % cluster
        base_url = module.params["docker_host"] or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        try:
            self.api = docker.APIClient(base_url=base_url, version="auto", timeout=120)
            self.api.ping()
        except docker.errors.DockerException as exc:
            module.fail_json(msg="Cannot reach the Docker engine at %s: %s" % (base_url, exc))

    def find(self):
        """[(id, location)] of the stored copies of the cluster (one volume at most)."""
        try:
            info = self.api.inspect_volume(self.volume)
        except NotFound:
            return []
        labels = info.get("Labels") or {}
        if labels.get(LABEL_KIND) != "state" or labels.get(LABEL_CLUSTER) != self.cluster:
            self.module.fail_json(msg="volume %s is not a carina state volume of cluster %s (its labels: %s); "
                                  "remove or rename it" % (self.volume, self.cluster, labels))
        return [(labels.get(LABEL_ID, ""), self.volume)]

    def _helper(self, writable):
        image = self.module.params["image"]
        try:
            self.api.inspect_image(image)
        except NotFound:
            self.module.fail_json(msg="image %s, for the helper container that reads and writes the state volume, "
                                  "is not on the engine; give one that is with image" % image)
        binds = {self.volume: {"bind": "/state", "mode": "rw" if writable else "ro"}}
        created = self.api.create_container(
            image, command=["true"], network_disabled=True,
            labels={LABEL_CLUSTER: self.cluster, LABEL_KIND: "state-helper"},
            host_config=self.api.create_host_config(binds=binds))
        return created["Id"]

    def _file(self, container, path):
        stream = self.api.get_archive(container, path)[0]
        data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.getmembers()[0]
            return tar.extractfile(member).read()

    def read(self, location, digest_only=False):
        container = self._helper(writable=False)
        try:
            digest = self._file(container, "/state/digest").decode().strip()
            data = None if digest_only else self._file(container, "/state/state.tgz")
        except NotFound:
            return "", None
        finally:
            self.api.remove_container(container, force=True)
        return digest, data

    def write(self, cluster_id, data, digest):
        self.api.create_volume(self.volume, labels={LABEL_CLUSTER: self.cluster, LABEL_ID: cluster_id,
                                                    LABEL_KIND: "state"})
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as tar:
            for name, content, mode in (("state.tgz", data, 0o600), ("digest", (digest + "\n").encode(), 0o600)):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), mode
                tar.addfile(info, io.BytesIO(content))
        container = self._helper(writable=True)
        try:
            self.api.put_archive(container, "/state", payload.getvalue())
        finally:
            self.api.remove_container(container, force=True)
        return self.volume

    def remove(self, location):
        self.api.remove_volume(location, force=True)


class BarbicanStore:
    """The state in Barbican: the archive's base64 in pieces (secrets), grouped by a generic container whose name
    carries the cluster's name and id and whose secret names carry the digest and the piece's number."""

    name = "barbican"

    def __init__(self, module, cluster, conn):
        self.module = module
        self.cluster = cluster
        self.conn = conn
        self.prefix = "carina-state-%s-" % cluster

    def _containers(self):
        return [c for c in self.conn.key_manager.containers()
                if (c.name or "").startswith(self.prefix) and ID_RE.match(c.name[len(self.prefix):])]

    def find(self):
        found = {}
        for container in sorted(self._containers(), key=lambda c: c.created_at or ""):
            found[container.name[len(self.prefix):]] = container  # the newest of an id last
        self._found = found
        return [(cid, found[cid].container_ref) for cid in sorted(found)]

    @staticmethod
    def _pieces(container):
        """[(number, digest, secret address)] of a container, in order."""
        pieces = []
        for ref in container.secret_refs or []:
            parts = (ref.get("name") or "").rpartition("-")
            digest, number = parts[0], parts[2]
            if number.isdigit():
                pieces.append((int(number), digest, ref["secret_ref"]))
        return sorted(pieces)

    def read(self, location, digest_only=False):
        container = next(c for c in self._found.values() if c.container_ref == location)
        pieces = self._pieces(container)
        digests = {piece[1] for piece in pieces}
        if len(digests) != 1:
            self.module.fail_json(msg="Barbican container %s holds no whole carina state; remove it" % location)
        digest = digests.pop()
        if digest_only:
            return digest, None
        text = "".join(self.conn.key_manager.get_secret(piece[2].rstrip("/").rsplit("/", 1)[-1]).payload
                       for piece in pieces)
        return digest, base64.b64decode(text)

    def write(self, cluster_id, data, digest):
        name = self.prefix + cluster_id
        older = [c for c in self._containers() if c.name == name]
        refs = []
        try:
            for number, piece in enumerate(archive.chunks(data, PIECE)):
                secret = self.conn.key_manager.create_secret(
                    name="%s-%s-%d" % (name, digest[:16], number), secret_type=OPAQUE,
                    payload=base64.b64encode(piece).decode(), payload_content_type="text/plain")
                refs.append({"name": "%s-%d" % (digest, number), "secret_ref": secret.secret_ref})
            container = self.conn.key_manager.create_container(name=name, type="generic", secret_refs=refs)
        except os_exc.SDKException:
            for ref in refs:  # a half-written copy is not left behind
                self._delete_secret(ref["secret_ref"])
            raise
        for old in older:
            self.remove(old.container_ref, old)
        return container.container_ref

    def _delete_secret(self, ref):
        with contextlib.suppress(os_exc.SDKException):  # a secret left over is named after the cluster
            self.conn.key_manager.delete_secret(ref.rstrip("/").rsplit("/", 1)[-1], ignore_missing=True)

    def remove(self, location, container=None):
        container = container or next(c for c in self._found.values() if c.container_ref == location)
        self.conn.key_manager.delete_container(container.container_ref.rstrip("/").rsplit("/", 1)[-1],
                                               ignore_missing=True)
        for piece in self._pieces(container):
            self._delete_secret(piece[2])

    def remove_all(self, cluster_id):
        for container in self._containers():
            if not cluster_id or container.name == self.prefix + cluster_id:
                self.remove(container.container_ref, container)


def has_key_manager(conn):
    return any(service.get("type") == "key-manager" for service in conn.service_catalog or [])


def open_store(module, cluster):
    """The store to use (None for none), after O(store) and O(provider)."""
    p = module.params
    global docker, NotFound, os_exc  # noqa: PLW0603 - imported on first use (see the imports)
    store = store_name(p)
    if store == "none":
        return None
    if store == "volume":
        try:
            import docker  # noqa: PLC0415 - see the imports
            from docker.errors import NotFound  # noqa: PLC0415
        except ImportError:
            module.fail_json(msg=missing_required_lib("docker"), exception=traceback.format_exc())
        return VolumeStore(module, cluster)
    from ansible_collections.rax.carina.plugins.module_utils import openstack as sdk  # noqa: PLC0415

    if not sdk.HAS_SDK:
        module.fail_json(msg=missing_required_lib("openstacksdk"), exception=sdk.SDK_IMPORT_ERROR)
    from openstack import exceptions as os_exc  # noqa: PLC0415

    conn = sdk.open_connection(module.params, lambda msg: module.fail_json(msg=msg))
    if not has_key_manager(conn):
        if p["store"] == "auto":
            return None
        module.fail_json(msg="the cloud's catalog has no key manager (Barbican) to keep the state of cluster %s in; "
                         "use store none and keep the state folder on a volume" % cluster)
    return BarbicanStore(module, cluster, conn)


def main():
    module = AnsibleModule(
        argument_spec=openstack_argument_spec(
            name=dict(type="str", required=True),
            home=dict(type="path", default="~/.carina"),
            state_dir=dict(type="path"),
            cluster_id=dict(type="str", default=""),
            provider=dict(type="str", choices=["local", "openstack", "static"], default="local"),
            store=dict(type="str", choices=["auto", "volume", "barbican", "none"], default="auto"),
            state=dict(type="str", choices=["pulled", "pushed", "absent"], default="pushed"),
            image=dict(type="str", default="carina-host:bookworm-lb"),
            docker_host=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    state_dir = p["state_dir"] or os.path.join(p["home"], "clusters", p["name"])
    result = dict(changed=False, state_dir=state_dir, store="none", location="", id="", digest="", pulled=[])
    check_params(module, state_dir, result)
    packed = None
    if p["state"] == "pushed":
        packed = archive.pack(state_dir)
        marker = archive.read_marker(state_dir)
        if marker.get("digest") == packed[1] and marker.get("store", "").startswith("%s:" % store_name(p)):
            # Stored as it is: no call to the store at all (a rerun that changed nothing).
            result.update(store=store_name(p), location=marker["store"].split(":", 1)[1], id=p["cluster_id"],
                          digest=packed[1])
            module.exit_json(**result)
    try:
        store = open_store(module, p["name"])
        if store is not None:
            result["store"] = store.name
            reconcile(module, store, state_dir, packed, result)
    except Exception as exc:  # the store's own errors, said with the cluster's name; others raised
        if docker is not None and isinstance(exc, docker.errors.DockerException):
            module.fail_json(msg="Docker engine error while keeping the state of cluster %s: %s" % (p["name"], exc),
                             **result)
        if os_exc is not None and isinstance(exc, os_exc.SDKException):
            from ansible_collections.rax.carina.plugins.module_utils.openstack import (  # noqa: PLC0415
                describe_sdk_error,
            )

            module.fail_json(msg="Barbican error while keeping the state of cluster %s: %s"
                             % (p["name"], describe_sdk_error(exc)), **result)
        if isinstance(exc, ValueError):
            module.fail_json(msg="state of cluster %s: %s" % (p["name"], exc), **result)
        raise
    module.exit_json(**result)


def check_params(module, state_dir, result):
    p = module.params
    cluster_id = p["cluster_id"]
    if cluster_id and not ID_RE.match(cluster_id):
        module.fail_json(msg="cluster_id %r is not a cluster id (32 hexadecimal digits)" % cluster_id[:64], **result)
    if p["state"] != "pulled" and not cluster_id:
        module.fail_json(msg="%s the state of cluster %s needs its cluster_id"
                         % ("storing" if p["state"] == "pushed" else "removing", p["name"]), **result)
    if p["state"] == "pushed" and not os.path.isfile(os.path.join(state_dir, "cluster.json")):
        module.fail_json(msg="%s holds no record of cluster %s: there is nothing to store" % (state_dir, p["name"]),
                         **result)


def store_name(params):
    store = params["store"]
    if store == "auto":
        store = {"local": "volume", "openstack": "barbican", "static": "none"}[params["provider"]]
    return store


def reconcile(module, store, state_dir, packed, result):
    p = module.params
    name, cluster_id = p["name"], p["cluster_id"]
    stored = store.find()
    found = [(cid, where) for cid, where in stored if not cluster_id or cid == cluster_id]
    if p["state"] == "pulled":
        pull(module, store, found, state_dir, result)
    elif p["state"] == "pushed":
        others = sorted({entry[0] for entry in stored} - {cluster_id})
        if store.name == "volume" and others:
            module.fail_json(msg="volume %s keeps the state of another cluster named %s (id %s), not of this one "
                             "(id %s); nothing was stored. Delete that cluster, or choose another name"
                             % (store.volume, name, others[0], cluster_id), **result)
        push(module, store, found, state_dir=state_dir, packed=packed, result=result)
    else:
        for cid, where in found:
            result.update(changed=True, id=cid, location=where)
            if not module.check_mode:
                store.remove(where)


def pull(module, store, found, state_dir, result):
    ids = sorted({entry[0] for entry in found})
    if not found:
        return
    if len(ids) > 1:
        module.fail_json(msg="%s stores of cluster %s carry the ids %s: give the one to use with cluster_id"
                         % (store.name, module.params["name"], ", ".join(ids)), **result)
    cid, where = found[-1]
    digest = store.read(where, digest_only=True)[0]
    if not digest:
        return
    result.update(id=cid, location=where, digest=digest)
    if os.path.isfile(os.path.join(state_dir, "cluster.json")) and archive.pack(state_dir)[1] == digest:
        return  # the folder holds what is stored
    result["changed"] = True
    if not module.check_mode:
        digest, data = store.read(where)
        result["pulled"] = archive.unpack(data, digest, state_dir)
        archive.write_marker(state_dir, "%s:%s" % (store.name, where), digest)


def push(module, store, found, *, state_dir, packed, result):
    data, digest = packed
    cluster_id = module.params["cluster_id"]
    result.update(id=cluster_id, digest=digest)
    mine = [where for cid, where in found if cid == cluster_id]
    if mine:
        stored = store.read(mine[-1], digest_only=True)[0]
        if stored == digest:
            result["location"] = mine[-1]
            if not module.check_mode:
                archive.write_marker(state_dir, "%s:%s" % (store.name, mine[-1]), digest)
            return
    result["changed"] = True
    if module.check_mode:
        return
    result["location"] = store.write(cluster_id, data, digest)
    archive.write_marker(state_dir, "%s:%s" % (store.name, result["location"]), digest)


if __name__ == "__main__":
    main()
