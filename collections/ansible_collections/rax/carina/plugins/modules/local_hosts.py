#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: local_hosts
short_description: Host containers of a cluster on this machine's Docker engine
version_added: 0.1.0
description:
  - Reconciles the host containers of one cluster for the C(local) provider and for molecule,
    the way a cloud reconciles servers. Each host is a container running systemd as PID 1 and
    sshd, started from a carina host image on a per-cluster network with a fixed subnet, so it
    behaves like a small VM; Ansible reaches it over SSH with the cluster's key pair.
  - Containers, volumes and the network carry the labels C(carina.cluster) and C(carina.role),
    so that a later run (or O(state=absent)) finds them even when local state is gone.
  - Hosts are created in parallel; the module waits until sshd answers on every host.
  - Runs on the controller; needs the Python C(docker) SDK and a Docker engine.
author:
  - rax.carina developers (@rax-carina)
attributes:
  check_mode:
    support: full
    description: Reports what would be created, started or removed, and changes nothing.
  diff_mode:
    support: none
    description: No diff is returned.
  idempotent:
    support: full
    description: A second run with the same hosts reports no change.
options:
  cluster:
    description:
      - Name of the cluster. Containers are named after their O(hosts[].name); every object the
        module makes is labelled C(carina.cluster=<cluster>).
    type: str
    required: true
  cluster_id:
    description:
      - The cluster's unique id (what M(rax.carina.cluster_lock) returns). Every object the module makes
        is labelled C(carina.cluster-id=<id>) too.
      - Objects labelled with the cluster's name but another id belong to another cluster of that name,
        made from another state folder. With O(state=present) the module then fails before it changes
        anything; with O(state=absent) it leaves them alone. Objects with no id (made by a release
        without ids) are taken as the cluster's.
      - Empty (an unknown id, for example a delete whose state is gone) takes only objects with no id
        (made by a release without ids); objects with an id are refused, or left alone by O(state=absent).
    type: str
    default: ""
    version_added: 0.1.0
  state:
    description:
      - V(present) makes the listed hosts exist and run (and removes surplus hosts when
        O(prune=true)).
      - V(absent) removes every container, volume and the network labelled with the cluster,
        whatever O(hosts) says, but those that carry another O(cluster_id) (reported as RV(kept), with a warning).
    type: str
    choices: [present, absent]
    default: present
  network:
    description:
      - Name of the cluster's Docker network. Defaults to C(carina-<cluster>).
    type: str
  subnet:
    description:
      - IPv4 subnet of the network in CIDR form, used when the network is created. Keep test
        networks inside 198.18.0.0/15.
      - When omitted and the network does not exist yet, the first /24 of O(subnet_pool) that no
        Docker network uses is taken. If the network exists with another subnet, or another network
        already uses an overlapping subnet, the module fails before creating anything.
    type: str
  subnet_pool:
    description:
      - Where a free /24 is looked for when O(subnet) is omitted.
    type: str
    default: 198.18.0.0/16
  image:
    description:
      - Default image for hosts that do not name their own.
    type: str
    default: carina-host:bookworm-engine
  public_key:
    description:
      - OpenSSH public key installed as root's authorized key at first boot (the image reads it
        from the container's environment, as cloud-init reads a Nova key pair).
      - Required when a host is created, unless O(ssh_key) gives the key pair.
    type: str
  ssh_key:
    description:
      - Private key file of the cluster's SSH key pair, with its public key next to it (C(.pub)).
        When the file is missing, an ed25519 key pair is made (the private key mode 0600, its
        folder 0700), as a cloud makes a key pair; an existing key is kept and its public key is
        installed on new hosts instead of O(public_key).
      - Nothing is written in check mode.
    type: path
    version_added: 0.1.0
  hosts:
    description:
      - The hosts the cluster should have.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Container and host name; must be unique on the engine.
        type: str
        required: true
      role:
        description: Role label (for example V(manager), V(worker), V(lb)).
        type: str
        required: true
      image:
        description: Image of this host; defaults to O(image).
        type: str
      address:
        description: Fixed IPv4 address inside O(subnet); the engine picks one when omitted.
        type: str
      engine_volume:
        description: Keep C(/var/lib/docker) on a labelled volume (needed when the host runs its own
          Docker engine; overlay on overlay fails otherwise). The volume is C(<name>-engine).
        type: bool
        default: true
      volumes:
        description:
          - More folders kept on labelled volumes, for example C(/var/lib/containerd). Each volume is
            C(<name>-<last part of the folder>) and goes with the host.
        type: list
        elements: str
        default: []
        version_added: 0.1.0
      devices:
        description:
          - Devices of the machine the host sees, read-write, for example C(/dev/kmsg) for kubelet.
        type: list
        elements: str
        default: []
        version_added: 0.1.0
      inotify:
        description:
          - Inotify instances this host takes from the machine's limit (see O(inotify_per_host), the
            figure used when this one is not given).
        type: int
  prune:
    description:
      - Remove host containers of the cluster (with their volumes) that are not listed in O(hosts).
    type: bool
    default: false
  wait:
    description: Wait until sshd answers on every host.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for sshd on all hosts.
    type: int
    default: 120
  known_hosts:
    description:
      - An OpenSSH C(known_hosts) file this module keeps, with the host key of every host (read
        from the host through the engine, as a cloud's console shows it), for SSH with strict host
        key checking. A host's key is read again only when the host is new (another container
        under its name); entries of hosts no longer listed go.
      - Requires O(wait); nothing is written in check mode.
    type: path
    version_added: 0.1.0
  docker_host:
    description:
      - Docker engine to use. Defaults to the E(DOCKER_HOST) environment variable, then
        C(unix:///var/run/docker.sock).
    type: str
  inotify_per_host:
    description:
      - Inotify instances a host to create or start takes from the engine machine's per-user limit
        C(fs.inotify.max_user_instances), for hosts whose O(hosts[].inotify) is not given. Systemd and
        the container engine in a host open them; about 8 were counted in a Swarm or load balancer
        host, 13 to 14 in a Kubernetes host (its kubelet watches too).
      - When the limit leaves less room than the hosts need, nothing is created and the module says
        how to raise the limit (a kubelet that cannot open one dies with "too many open files").
      - Checked only when the engine listens on a local unix socket; the instances counted are those
        of the socket's owner (the user the containers run as). V(0) here and in every host skips the
        check.
    type: int
    default: 8
requirements:
  - docker (Python SDK) >= 7.0
notes:
  - The containers need neither C(--privileged) nor a registry; they get the capabilities,
    security options, C(/sys/fs/cgroup) mount and tmpfs mounts systemd and a nested Docker
    engine need.
seealso:
  - module: rax.carina.nova_hosts
    description: The same hosts as Nova servers.
"""

EXAMPLES = r"""
- name: Three hosts for cluster demo on 198.18.10.0/24
  rax.carina.local_hosts:
    cluster: demo
    subnet: 198.18.10.0/24
    public_key: "{{ lookup('ansible.builtin.file', '~/.carina/clusters/demo/id_ed25519.pub') }}"
    hosts:
      - {name: demo-manager-1, role: manager}
      - {name: demo-manager-2, role: manager}
      - {name: demo-worker-1, role: worker}
  register: demo_hosts

- name: Remove everything of cluster demo
  rax.carina.local_hosts:
    cluster: demo
    state: absent
"""

RETURN = r"""
hosts:
  description: The cluster's host containers after the run, in the order of O(hosts).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container and host name.
      type: str
      sample: demo-manager-1
    role:
      description: Role label.
      type: str
      sample: manager
    address:
      description: IPv4 address on the cluster network (empty in check mode for a new host).
      type: str
      sample: 198.18.10.2
    id:
      description: Container id (empty in check mode for a new host).
      type: str
    image:
      description: Image of the container.
      type: str
    status:
      description: Container status after the run.
      type: str
      sample: running
network:
  description: The cluster network.
  returned: always
  type: dict
  contains:
    name:
      description: Network name.
      type: str
      sample: carina-demo
    subnet:
      description: Its IPv4 subnet.
      type: str
      sample: 198.18.10.0/24
    gateway:
      description: The gateway address on the engine's side.
      type: str
      sample: 198.18.10.1
created:
  description: Names of the containers created.
  returned: always
  type: list
  elements: str
started:
  description: Names of stopped containers that were started.
  returned: always
  type: list
  elements: str
removed:
  description: Names of the containers, volumes and networks removed.
  returned: always
  type: list
  elements: str
kept:
  description: With O(state=absent), names of the objects left alone because they carry another cluster's id.
  returned: when state is absent
  type: list
  elements: str
known_hosts:
  description: The known_hosts file kept, when O(known_hosts) is set.
  returned: when O(known_hosts) is set and not in check mode
  type: str
  sample: /root/.carina/clusters/demo/known_hosts
  version_added: 0.1.0
public_key:
  description: The OpenSSH public key of O(ssh_key).
  returned: when O(ssh_key) is set and the key exists (always, but in check mode before it is made)
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... carina-demo
  version_added: 0.1.0
"""

import contextlib
import ipaddress
import os
import re
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.rax.carina.plugins.module_utils.files import read_bytes, write_atomic
from ansible_collections.rax.carina.plugins.module_utils.ssh import describe_pending, wait_for_sshd

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound

    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

LABEL_CLUSTER = "carina.cluster"
LABEL_ROLE = "carina.role"
LABEL_KIND = "carina.kind"
LABEL_ID = "carina.cluster-id"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ENGINE_DIR = "/var/lib/docker"

# What a container needs to boot systemd and run a nested Docker engine without --privileged
# (which this sandbox refuses: it lacks CAP_SYS_RESOURCE).
HOST_CONFIG = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "tmpfs": {"/run": "rw,exec,mode=755", "/run/lock": "rw,mode=1777"},
    "cgroupns": "host",
}


INOTIFY_LIMIT = "/proc/sys/fs/inotify/max_user_instances"


def inotify_in_use(uid, proc="/proc"):
    """Inotify instances open by the processes of `uid` (each one is a descriptor on anon_inode:inotify)."""
    count = 0
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            if os.stat(os.path.join(proc, pid)).st_uid != uid:
                continue
            fds = os.path.join(proc, pid, "fd")
            count += sum(1 for fd in os.listdir(fds) if os.readlink(os.path.join(fds, fd)) == "anon_inode:inotify")
        except OSError:  # the process ended meanwhile, or its descriptors are not ours to read
            continue
    return count


def inotify_shortfall(base_url, needed, limit_path=INOTIFY_LIMIT, proc="/proc"):
    """None, or (limit, in use, needed) when new hosts that need `needed` inotify instances in all would
    not fit in the limit of the user of the engine at `base_url`. Only a local unix socket's engine is
    looked at."""
    if needed <= 0 or not base_url.startswith("unix://"):
        return None
    try:
        owner = os.stat(base_url[len("unix://"):]).st_uid
        with open(limit_path) as handle:
            limit = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    used = inotify_in_use(owner, proc)
    return (limit, used, needed) if limit - used < needed else None


class LocalHosts:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.cluster = self.params["cluster"]
        self.cluster_id = self.params["cluster_id"]
        self.network_name = self.params["network"] or "carina-%s" % self.cluster
        base_url = self.params["docker_host"] or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.base_url = base_url
        try:
            self.api = docker.APIClient(base_url=base_url, version="auto", timeout=120)
            self.api.ping()
        except DockerException as exc:
            module.fail_json(msg="Cannot reach the Docker engine at %s: %s" % (base_url, exc))
        self.result = {"changed": False, "hosts": [], "network": {}, "created": [], "started": [], "removed": []}

    # -- reading --------------------------------------------------------------------------
    def cluster_filter(self, **extra):
        labels = ["%s=%s" % (LABEL_CLUSTER, self.cluster)]
        labels.extend("%s=%s" % kv for kv in extra.items())
        return {"label": labels}

    def existing_containers(self):
        found = {}
        for summary in self.api.containers(all=True, filters=self.cluster_filter()):
            name = summary["Names"][0].lstrip("/")
            found[name] = summary
        return found

    def network(self):
        try:
            return self.api.inspect_network(self.network_name)
        except NotFound:
            return None

    @staticmethod
    def network_subnet(net):
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                return cfg["Subnet"], cfg.get("Gateway", "")
        return "", ""

    def labels(self, **more):
        """The labels of everything the module makes."""
        labels = {LABEL_CLUSTER: self.cluster}
        if self.cluster_id:
            labels[LABEL_ID] = self.cluster_id
        labels.update(more)
        return labels

    # -- validation (before anything is created) ------------------------------------------
    def check_owner(self):
        """Fail when what carries the cluster's name carries another cluster's id (any id, when none is known)."""
        found = {}
        for summary in self.api.containers(all=True, filters=self.cluster_filter()):
            found.setdefault((summary.get("Labels") or {}).get(LABEL_ID) or "", summary["Names"][0].lstrip("/"))
        for net in self.api.networks(filters=self.cluster_filter()):
            found.setdefault((net.get("Labels") or {}).get(LABEL_ID) or "", net["Name"])
        for vol in (self.api.volumes(filters=self.cluster_filter()) or {}).get("Volumes") or []:
            found.setdefault((vol.get("Labels") or {}).get(LABEL_ID) or "", vol["Name"])
        others = sorted(set(found) - {"", self.cluster_id})
        if others:
            self.module.fail_json(
                msg="cluster %s on the engine at %s has id %s (%s carries it), not this state's %s: it was made "
                "from another state folder. Nothing was changed. Choose another name, or delete it from the state "
                "folder that made it" % (self.cluster, self.base_url, others[0], found[others[0]], self.cluster_id),
                other_id=others[0], **self.result)

    def validate(self, existing):
        """Check every input against the engine; fail before anything is created."""
        self.validate_names()
        subnet = self.validate_network()
        for host in self.params["hosts"]:
            self.validate_host(host, subnet, host["name"] in existing)
        return subnet

    def validate_names(self):
        names = [h["name"] for h in self.params["hosts"]]
        if not NAME_RE.match(self.cluster):
            self.module.fail_json(
                msg="cluster %r is not a valid name: use 1-63 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit" % self.cluster
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            self.module.fail_json(msg="host names must be unique; repeated: %s" % ", ".join(dupes))
        for name in names:
            if not NAME_RE.match(name):
                self.module.fail_json(
                    msg="host name %r is not a valid hostname (lower-case letters, digits, '-')" % name)

    def parse_subnet(self, subnet):
        try:
            wanted = ipaddress.ip_network(subnet, strict=True)
        except ValueError as exc:
            self.module.fail_json(msg="subnet %r is not a valid IPv4 network in CIDR form: %s" % (subnet, exc))
        if wanted.version != 4 or wanted.num_addresses < 8:
            self.module.fail_json(msg="subnet %s must be an IPv4 network of /29 or larger" % subnet)
        return wanted

    def validate_network(self):
        """Return the subnet to use: the existing network's, or a free one asked for."""
        net = self.network()
        subnet = self.params["subnet"]
        wanted = self.parse_subnet(subnet) if subnet else None
        if net is not None:
            owner = (net.get("Labels") or {}).get(LABEL_CLUSTER)
            if owner != self.cluster:
                self.module.fail_json(
                    msg="network %s already exists and does not belong to cluster %s (label %s=%s); "
                    "choose another cluster name or network" % (self.network_name, self.cluster, LABEL_CLUSTER, owner)
                )
            have, _gw = self.network_subnet(net)
            if wanted and have and ipaddress.ip_network(have) != wanted:
                self.module.fail_json(
                    msg="network %s exists with subnet %s, not %s; delete the cluster first or keep "
                    "subnet %s" % (self.network_name, have, subnet, have)
                )
            return subnet or have
        if self.params["state"] == "present":
            used = self.used_subnets()
            if not subnet:
                return self.free_subnet(used)
            for other_name, other_subnet in used:
                if other_subnet.overlaps(wanted):
                    self.module.fail_json(
                        msg="subnet %s is already in use by Docker network %s (%s); choose a free subnet "
                        "inside 198.18.0.0/15" % (subnet, other_name, other_subnet)
                    )
        return subnet

    def used_subnets(self):
        used = []
        for other in self.api.networks():
            other_subnet, _gw = self.network_subnet(self.api.inspect_network(other["Id"]))
            if other_subnet:
                used.append((other["Name"], ipaddress.ip_network(other_subnet, strict=False)))
        return used

    def free_subnet(self, used):
        pool = self.parse_subnet(self.params["subnet_pool"])
        if pool.prefixlen > 24:
            self.module.fail_json(msg="subnet_pool %s must be a /24 or larger" % pool)
        for candidate in pool.subnets(new_prefix=24):
            if not any(candidate.overlaps(net) for _name, net in used):
                return str(candidate)
        self.module.fail_json(msg="no free /24 left in subnet_pool %s; delete clusters or name a subnet" % pool)
        return None

    def validate_host(self, host, subnet, exists):
        name = host["name"]
        if host["address"]:
            net = ipaddress.ip_network(subnet)
            gateway = next(net.hosts())
            try:
                addr = ipaddress.ip_address(host["address"])
            except ValueError:
                self.module.fail_json(msg="address %r of host %s is not an IPv4 address" % (host["address"], name))
            if addr not in net or addr in (net.network_address, net.broadcast_address, gateway):
                self.module.fail_json(
                    msg="address %s of host %s must be a host address inside %s other than the gateway %s"
                    % (addr, name, net, gateway)
                )
        for folder in host["volumes"] or []:
            if not folder.startswith("/") or not os.path.basename(folder.rstrip("/")):
                self.module.fail_json(
                    msg="volume folder %r of host %s must be an absolute path below /" % (folder, name))
        for device in host["devices"] or []:
            if not device.startswith("/dev/") or ".." in device.split("/"):
                self.module.fail_json(msg="device %r of host %s must be a path under /dev/" % (device, name))
        if exists:
            return
        # A container of that name that is not ours would make the create fail half-way.
        try:
            other = self.api.inspect_container(name)
        except NotFound:
            other = None
        if other is not None:
            self.module.fail_json(
                msg="a container named %s already exists and is not part of cluster %s (labels %s); "
                "choose another cluster name" % (name, self.cluster, other["Config"].get("Labels"))
            )
        if not self.params["public_key"] and not self.params["ssh_key"]:
            self.module.fail_json(msg="public_key or ssh_key is required to create host %s" % name)
        image = host["image"] or self.params["image"]
        try:
            self.api.inspect_image(image)
        except NotFound:
            self.module.fail_json(
                msg="image %s is not on the engine at %s; build it with `make images` "
                "(scripts/image.sh build)" % (image, self.base_url)
            )

    # -- changing -------------------------------------------------------------------------
    def ensure_network(self, subnet):
        net = self.network()
        if net is None:
            self.result["changed"] = True
            if self.module.check_mode:
                gw = str(next(ipaddress.ip_network(subnet).hosts()))
                return {"name": self.network_name, "subnet": subnet, "gateway": gw}
            for attempt in range(8):
                gw = str(next(ipaddress.ip_network(subnet).hosts()))
                ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet, gateway=gw)])
                try:
                    self.api.create_network(
                        self.network_name, driver="bridge", ipam=ipam, check_duplicate=True,
                        labels=self.labels(**{LABEL_KIND: "network"}),
                    )
                    break
                except APIError as exc:
                    # A /24 this module picked (no subnet given) may have been taken meanwhile by another
                    # create on the same engine: the engine refuses overlapping pools; pick again.
                    if self.params["subnet"] or "overlap" not in str(exc).lower() or attempt == 7:
                        raise
                    subnet = self.free_subnet(self.used_subnets())
            net = self.network()
        have, gw = self.network_subnet(net)
        return {"name": self.network_name, "subnet": have, "gateway": gw}

    def pin_addresses(self, hosts, leaving):
        """The hosts, each with a fixed address: given ones kept, the others the lowest free ones.

        A container created with its address keeps it when it is stopped and started again; one the
        engine picks may come back with another, and the cluster's certificates and peers name it.
        """
        net = ipaddress.ip_network(self.result["network"]["subnet"])
        taken = {self.result["network"]["gateway"]} | {h["address"] for h in hosts if h["address"]}
        info = self.api.inspect_network(self.network_name)
        for endpoint in (info.get("Containers") or {}).values():
            if endpoint.get("Name") not in leaving:
                taken.add(endpoint.get("IPv4Address", "").split("/")[0])
        for container in self.existing_containers().values():  # stopped ones hold theirs too
            config = ((container.get("NetworkSettings") or {}).get("Networks") or {}).get(self.network_name) or {}
            taken.add((config.get("IPAMConfig") or {}).get("IPv4Address") or "")
        free = (str(addr) for addr in net.hosts() if str(addr) not in taken)
        out = []
        for host in hosts:
            address = host["address"] or next(free, None)
            if address is None:
                self.module.fail_json(msg="subnet %s has no free address left for %s" % (net, host["name"]),
                                      **self.result)
            out.append(dict(host, address=address))
        return out

    def create_host(self, host):
        """Create and start one host container (runs in a worker thread)."""
        api = docker.APIClient(base_url=self.base_url, version="auto", timeout=120)
        name = host["name"]
        image = host["image"] or self.params["image"]
        labels = self.labels(**{LABEL_ROLE: host["role"], LABEL_KIND: "host"})
        binds = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}
        for volume, folder in self.volumes_of(host).items():
            api.create_volume(name=volume, labels=labels)
            binds[volume] = {"bind": folder, "mode": "rw"}
        devices = ["%s:%s:rwm" % (device, device) for device in host["devices"] or []]
        host_config = api.create_host_config(binds=binds, devices=devices or None, **HOST_CONFIG)
        # `--security-opt systempaths=unconfined`: nothing masked or read-only under /proc, /sys.
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])
        endpoint = api.create_endpoint_config(ipv4_address=host["address"] or None)
        api.create_container(
            image,
            name=name,
            hostname=name,
            detach=True,
            labels=labels,
            environment={"CARINA_AUTHORIZED_KEY": self.params["public_key"], "container": "docker"},
            stop_signal="SIGRTMIN+3",
            host_config=host_config,
            networking_config=api.create_networking_config({self.network_name: endpoint}),
        )
        api.start(name)
        return name

    @staticmethod
    def volumes_of(host):
        """{volume name: folder} of a host."""
        out = {"%s-engine" % host["name"]: ENGINE_DIR} if host.get("engine_volume", True) else {}
        for folder in host.get("volumes") or []:
            # /var/lib/docker keeps the volume name of the engine_volume option.
            stem = "engine" if folder.rstrip("/") == ENGINE_DIR else os.path.basename(folder.rstrip("/"))
            out["%s-%s" % (host["name"], stem)] = folder
        return out

    def remove_container(self, name):
        api = docker.APIClient(base_url=self.base_url, version="auto", timeout=120)
        with contextlib.suppress(NotFound):
            api.remove_container(name, force=True, v=True)
        return name

    def remove_volumes(self, names=None):
        removed = []
        for vol in (self.api.volumes(filters=self.cluster_filter()) or {}).get("Volumes") or []:
            if names is not None and vol["Name"] not in names:
                continue
            if not self.module.check_mode:
                with contextlib.suppress(NotFound):
                    self.api.remove_volume(vol["Name"], force=True)
            removed.append(vol["Name"])
        return removed

    def remove_network(self, net, timeout=30):
        """Remove the cluster's network. The engine may still list the endpoint of a container it has just
        removed for a moment: wait for those; a container of anyone else still attached is named instead."""
        deadline = time.time() + timeout
        while True:
            try:
                self.api.remove_network(net["Id"])
                return
            except NotFound:
                return
            except APIError:
                try:
                    attached = self.api.inspect_network(net["Id"]).get("Containers") or {}
                except NotFound:
                    return
                names = sorted(c.get("Name", cid[:12]) for cid, c in attached.items())
                if time.time() > deadline or not names:
                    raise
                for cid in attached:
                    with contextlib.suppress(NotFound):
                        info = self.api.inspect_container(cid)
                        if (info["Config"].get("Labels") or {}).get(LABEL_CLUSTER) != self.cluster:
                            self.module.fail_json(
                                msg="network %s of cluster %s cannot go: %s, which is not the cluster's, is "
                                    "still attached to it (docker network disconnect %s %s, then run again)"
                                % (net["Name"], self.cluster, info["Name"].lstrip("/"), net["Name"],
                                   info["Name"].lstrip("/")), **self.result)
                time.sleep(0.5)

    def fail_if_stopped(self, names):
        for name in names:
            state = self.api.inspect_container(name)["State"]
            if state["Status"] != "running":
                logs = self.api.logs(name, tail=5).decode("utf-8", "replace").strip()
                self.module.fail_json(
                    msg="host container %s is %s (exit code %s) instead of running; its last lines: %s"
                    % (name, state["Status"], state.get("ExitCode"), logs or "(none)"),
                    **self.result
                )

    def wait_for_ssh(self, addresses):
        pending = wait_for_sshd(addresses, self.params["wait_timeout"], poll=0.3, while_pending=self.fail_if_stopped)
        if pending:
            self.module.fail_json(
                msg="sshd did not answer within %ss on %s; check `docker logs` of those containers"
                % (self.params["wait_timeout"], describe_pending(pending)),
                **self.result
            )

    def describe(self, wanted_names):
        hosts = []
        existing = self.existing_containers()
        for host in self.params["hosts"]:
            if host["name"] not in wanted_names:
                continue
            item = {"name": host["name"], "role": host["role"], "address": "", "id": "",
                    "image": host["image"] or self.params["image"], "status": "absent"}
            summary = existing.get(host["name"])
            if summary:
                info = self.api.inspect_container(summary["Id"])
                endpoint = info["NetworkSettings"]["Networks"].get(self.network_name) or {}
                item.update(address=endpoint.get("IPAddress", ""), id=info["Id"],
                            image=info["Config"]["Image"], status=info["State"]["Status"])
            hosts.append(item)
        return hosts

    def ensure_key_pair(self, path):
        """The public key of the key pair at `path` (made when missing; the .pub file follows the
        private key), or "" in check mode when there is no key yet."""
        data = read_bytes(path)
        if data is None:
            self.result["changed"] = True
            if self.module.check_mode:
                return ""
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            key = ed25519.Ed25519PrivateKey.generate()
            data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                     serialization.NoEncryption())
            write_atomic(path, data, 0o600, durable=True)
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            self.module.fail_json(msg="%s is not an unencrypted OpenSSH private key: %s" % (path, exc))
        if os.stat(path).st_mode & 0o077:
            self.module.fail_json(msg="%s is readable by others than its owner: make it mode 0600" % path)
        public = "%s carina-%s" % (key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode(), self.cluster)
        pub_path = path + ".pub"
        have = (read_bytes(pub_path) or b"").decode(errors="replace").split()
        if have[:2] != public.split()[:2]:
            self.result["changed"] = True
            if not self.module.check_mode:
                write_atomic(pub_path, (public + "\n").encode(), 0o644)
        self.result["public_key"] = public
        return public

    def present(self):
        self.check_owner()
        existing = self.existing_containers()
        subnet = self.validate(existing)
        wanted = {h["name"]: h for h in self.params["hosts"]}
        to_create = [h for h in self.params["hosts"] if h["name"] not in existing]
        to_start = [n for n in wanted if n in existing and existing[n]["State"] != "running"]
        self.check_inotify_room(to_create + [wanted[n] for n in to_start])
        if self.params["ssh_key"]:
            self.params["public_key"] = self.ensure_key_pair(self.params["ssh_key"])
        self.result["network"] = self.ensure_network(subnet)

        to_remove = []
        if self.params["prune"]:
            to_remove = sorted(n for n, c in existing.items()
                               if n not in wanted and (c.get("Labels") or {}).get(LABEL_KIND) == "host")
        if to_create or to_start or to_remove:
            self.result["changed"] = True
        self.result["created"] = [h["name"] for h in to_create]
        self.result["started"] = to_start
        if self.module.check_mode:
            self.result["removed"] = to_remove
            self.result["hosts"] = self.describe(set(wanted))
            return

        to_create = self.pin_addresses(to_create, set(to_remove))
        workers = max(1, min(8, len(to_create) + len(to_remove)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                list(pool.map(self.remove_container, to_remove))
                list(pool.map(self.create_host, to_create))
            except (APIError, DockerException) as exc:
                self.module.fail_json(
                    msg="creating host containers of cluster %s failed: %s" % (self.cluster, exc), **self.result)
        for name in to_start:
            self.api.start(name)
        if to_remove:
            # A removed host's volumes: its own name, a dash, one folder's name.
            self.result["removed"] = to_remove + self.remove_volumes(
                {v["Name"] for v in (self.api.volumes(filters=self.cluster_filter()) or {}).get("Volumes") or []
                 if any(v["Name"].startswith(n + "-") and "-" not in v["Name"][len(n) + 1:] for n in to_remove)})
        self.result["hosts"] = self.describe(set(wanted))
        if self.params["wait"]:
            self.wait_for_ssh({h["name"]: h["address"] for h in self.result["hosts"]})
        if self.params["known_hosts"]:
            self.keep_known_hosts(self.params["known_hosts"], self.result["hosts"])

    def check_inotify_room(self, hosts):
        """Refuse, before anything is made, hosts to create or start that the machine's inotify limit has
        no room for."""
        default = self.params["inotify_per_host"]
        needs = sum(default if h["inotify"] is None else h["inotify"] for h in hosts)
        short = inotify_shortfall(self.base_url, needs)
        if short:
            limit, used, needed = short
            self.module.fail_json(
                msg="this machine's inotify limit has no room for %d more host(s) of cluster %s: "
                    "fs.inotify.max_user_instances is %d, %d are in use, the hosts need about %d (a kubelet "
                    "that cannot open one dies with 'too many open files'). Raise it, for example: "
                    "sysctl -w fs.inotify.max_user_instances=%d"
                    % (len(hosts), self.cluster, limit, used, needed, max(1024, 2 * (used + needed))))

    def host_key(self, name):
        """The host's ed25519 public key (type and key), read through the engine; the image makes it at
        first boot, before sshd starts."""
        deadline = time.time() + self.params["wait_timeout"]
        while True:
            run = self.api.exec_create(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], stdout=True, stderr=False)
            fields = self.api.exec_start(run["Id"]).decode("utf-8", "replace").split()
            if self.api.exec_inspect(run["Id"]).get("ExitCode") == 0 and fields[:1] == ["ssh-ed25519"] \
                    and len(fields) >= 2:
                return "%s %s" % (fields[0], fields[1])
            if time.time() > deadline:
                self.module.fail_json(msg="host %s has no SSH host key (/etc/ssh/ssh_host_ed25519_key.pub) after "
                                          "%ss" % (name, self.params["wait_timeout"]), **self.result)
            time.sleep(0.3)

    def keep_known_hosts(self, path, hosts):
        """Write the known_hosts file: per host a comment with its container id, then its entry."""
        old = read_bytes(path)
        recorded = known_hosts_entries(old.decode("utf-8", "replace") if old else "")
        lines = ["# carina cluster %s: host keys, written by rax.carina.local_hosts" % self.cluster]
        for host in sorted(hosts, key=lambda h: h["name"]):
            if not host["id"] or not host["address"]:
                continue
            entry = recorded.get((host["name"], host["id"]))
            if not entry or not entry.startswith("%s,%s " % (host["name"], host["address"])):
                entry = "%s,%s %s" % (host["name"], host["address"], self.host_key(host["name"]))
            lines += ["# host %s %s" % (host["name"], host["id"]), entry]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        self.result["known_hosts"] = path
        if data != old:
            self.result["changed"] = True
            write_atomic(path, data, 0o644)

    def ours(self, labels):
        """Whether an object labelled with the cluster's name is this cluster's (not another state folder's)."""
        other = (labels or {}).get(LABEL_ID) or ""
        return not other or other == self.cluster_id

    def absent(self):
        """Remove the cluster's objects; those with another cluster's id stay, and are reported as kept."""
        kept, names, kept_ids = [], [], set()
        for name, summary in sorted(self.existing_containers().items()):
            (names if self.ours(summary.get("Labels")) else kept).append(name)
            if not self.ours(summary.get("Labels")):
                kept_ids.add(summary["Labels"][LABEL_ID])
        removed = list(names)
        if not self.module.check_mode:
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
                list(pool.map(self.remove_container, names))
        volumes = (self.api.volumes(filters=self.cluster_filter()) or {}).get("Volumes") or []
        kept += [v["Name"] for v in volumes if not self.ours(v.get("Labels"))]
        kept_ids.update(v["Labels"][LABEL_ID] for v in volumes if not self.ours(v.get("Labels")))
        removed.extend(self.remove_volumes({v["Name"] for v in volumes if self.ours(v.get("Labels"))}))
        for net in self.api.networks(filters=self.cluster_filter()):
            if not self.ours(net.get("Labels")):
                kept.append(net["Name"])
                kept_ids.add(net["Labels"][LABEL_ID])
                continue
            if not self.module.check_mode:
                self.remove_network(net)
            removed.append(net["Name"])
        self.result["removed"] = removed
        self.result["kept"] = kept
        self.result["changed"] = bool(removed)
        if kept and self.cluster_id:
            self.module.warn("left %s alone: they carry another id than this state's %s, so they belong to another "
                             "cluster named %s (made from another state folder)"
                             % (", ".join(kept), self.cluster_id, self.cluster))
        elif kept:
            self.module.warn("left %s alone: they carry a cluster id and this run knows none (its state folder has "
                             "none). If cluster %s is yours and its state is lost, give its id: "
                             "-e carina_cluster_id=%s (or take the state the cluster keeps: "
                             "-e carina_state_from_store=true)"
                             % (", ".join(kept), self.cluster, " or ".join(sorted(kept_ids))))


def known_hosts_entries(text):
    """{(name, container id): entry} of a known_hosts file keep_known_hosts wrote."""
    entries, owner = {}, None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "host"]:
            owner = (parts[2], parts[3])
        elif owner and parts and not line.startswith("#"):
            entries[owner], owner = line, None
    return entries


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cluster=dict(type="str", required=True),
            cluster_id=dict(type="str", default=""),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            network=dict(type="str"),
            subnet=dict(type="str"),
            subnet_pool=dict(type="str", default="198.18.0.0/16"),
            image=dict(type="str", default="carina-host:bookworm-engine"),
            public_key=dict(type="str", no_log=False),
            hosts=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    role=dict(type="str", required=True),
                    image=dict(type="str"),
                    address=dict(type="str"),
                    engine_volume=dict(type="bool", default=True),
                    volumes=dict(type="list", elements="str", default=[]),
                    devices=dict(type="list", elements="str", default=[]),
                    inotify=dict(type="int"),
                ),
            ),
            prune=dict(type="bool", default=False),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=120),
            known_hosts=dict(type="path"),
            ssh_key=dict(type="path", no_log=False),
            docker_host=dict(type="str"),
            inotify_per_host=dict(type="int", default=8),
        ),
        supports_check_mode=True,
    )
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker"), exception=DOCKER_IMPORT_ERROR)

    if module.params["ssh_key"] and not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    if module.params["known_hosts"] and not module.params["wait"]:
        module.fail_json(msg="known_hosts needs wait: host keys are read once sshd answers")
    hosts = LocalHosts(module)
    try:
        if module.params["state"] == "present":
            hosts.present()
        else:
            hosts.absent()
    except (APIError, DockerException) as exc:
        module.fail_json(msg="Docker engine error for cluster %s: %s" % (module.params["cluster"], exc),
                         exception=traceback.format_exc(), **hosts.result)
    module.exit_json(**hosts.result)


if __name__ == "__main__":
    main()
