"""The test cloud's data plane on a Docker engine: Neutron networks become bridge networks with the
same subnet, servers / bare-metal nodes / load balancers become containers at their Neutron
addresses. Used by the emulator (Nova servers) and by the agent (Ironic nodes, Octavia LBs).

Everything made here carries the label ``carina.testcloud=1`` (plus ``carina.testcloud.kind``,
``carina.testcloud.owner`` = the OpenStack id it stands for, and ``carina.testcloud.instance`` = the
test cloud it belongs to), so that it can be found and removed without any state. Several test
clouds may share one engine (the test cloud of `cloud.py up`, instance ``testcloud``, and the
emulators of test sessions): each sees and removes only its own containers and volumes; the bridge
of a network is shared by whoever needs that network (same id, same subnet)."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import os
import re
import socket
import tarfile
import threading
import time

import docker
from docker.errors import APIError, ImageNotFound, NotFound

LOG = logging.getLogger("testcloud.dataplane")

LABEL = "carina.testcloud"
LABEL_KIND = "carina.testcloud.kind"
LABEL_OWNER = "carina.testcloud.owner"
LABEL_NETWORK = "carina.testcloud.network"
LABEL_SPEC = "carina.testcloud.spec"
LABEL_INSTANCE = "carina.testcloud.instance"
DEFAULT_INSTANCE = "testcloud"  # the test cloud of testcloud/cloud.py
ALLOWED = ipaddress.ip_network("198.18.0.0/15")
ENGINE_DIR = "/var/lib/docker"
CONTAINERD_DIR = "/var/lib/containerd"

# What a container needs to boot systemd (and a nested Docker engine) without --privileged,
# which this sandbox refuses (it lacks CAP_SYS_RESOURCE).
HOST_CONFIG = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "tmpfs": {"/run": "rw,exec,mode=755", "/run/lock": "rw,mode=1777"},
    "cgroupns": "host",
}


class DataPlaneError(Exception):
    """A container or network could not be made; the message is fit for a Nova fault."""


def hostname_of(name: str) -> str:
    """A valid host name from a display name, the way Nova sanitises one."""
    host = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return host or "host"


def network_name(net_id: str, name: str, external: bool) -> str:
    """Docker name of a Neutron network. External networks sort after the others ('x' > 'n'):
    Docker gives a container its default route through the first network by name, and a
    floating IP's network must never take it."""
    clean = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name or "")[:24].strip("-.")
    return "testcloud-%s-%s%s" % ("x" if external else "n", clean + "-" if clean else "", net_id[:8])


class DockerPlane:
    def __init__(self, base_url: str | None = None, instance: str | None = None):
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.instance = instance or DEFAULT_INSTANCE
        self._local = threading.local()
        self._net_lock = threading.Lock()
        self.api.ping()

    @property
    def api(self) -> docker.APIClient:
        """One client per thread (a client is a requests session, not meant to be shared)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = docker.APIClient(base_url=self.base_url, version="auto", timeout=120)
            self._local.client = client
        return client

    # -- networks ------------------------------------------------------------------------
    def find_network(self, net_id: str) -> dict | None:
        found = self.api.networks(filters={"label": ["%s=%s" % (LABEL_NETWORK, net_id)]})
        return found[0] if found else None

    def ensure_network(self, net_id: str, name: str, subnets: list[tuple[str, str | None]],
                       external: bool = False) -> str:
        """The bridge network of Neutron network ``net_id`` with its IPv4 subnets
        [(cidr, gateway_ip)]; made on first use. Returns its Docker name."""
        with self._net_lock:
            have = self.find_network(net_id)
            if have:
                return have["Name"]
            pools = []
            for cidr, gateway in subnets:
                net = ipaddress.ip_network(cidr, strict=False)
                if net.version != 4:
                    continue
                if not net.subnet_of(ALLOWED):
                    raise DataPlaneError("subnet %s is outside 198.18.0.0/15, which the test cloud never routes" % cidr)
                pools.append(docker.types.IPAMPool(subnet=str(net), gateway=gateway or None))
            if not pools:
                raise DataPlaneError("network %s has no IPv4 subnet to build a Docker network from" % net_id)
            dname = network_name(net_id, name, external)
            try:
                self.api.create_network(
                    dname, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=pools), check_duplicate=True,
                    labels={LABEL: "1", LABEL_KIND: "network", LABEL_NETWORK: net_id, LABEL_INSTANCE: self.instance})
            except APIError as exc:
                raise DataPlaneError("cannot create Docker network %s for %s: %s" % (
                    dname, ", ".join(c for c, _ in subnets), exc.explanation or exc)) from exc
            LOG.info("created Docker network %s", dname)
            return dname

    def used_addresses(self, net_id: str) -> set[str]:
        """IPv4 addresses taken on the network's bridge (by any container, ours or not)."""
        have = self.find_network(net_id)
        if not have:
            return set()
        info = self.api.inspect_network(have["Id"])
        return {c["IPv4Address"].split("/")[0] for c in (info.get("Containers") or {}).values() if c.get("IPv4Address")}

    def remove_network(self, net_id: str) -> None:
        with self._net_lock:
            have = self.find_network(net_id)
            if have:
                with contextlib.suppress(NotFound, APIError):
                    self.api.remove_network(have["Id"])

    # -- containers ----------------------------------------------------------------------
    def containers(self, kind: str | None = None) -> list[dict]:
        """This instance's containers (of one kind)."""
        labels = ["%s=1" % LABEL] + (["%s=%s" % (LABEL_KIND, kind)] if kind else [])
        return [c for c in self.api.containers(all=True, filters={"label": labels}) if self.mine(c["Labels"])]

    def mine(self, labels: dict | None) -> bool:
        """Made by this instance (objects without the label predate it: the default instance's)."""
        return (labels or {}).get(LABEL_INSTANCE, DEFAULT_INSTANCE) == self.instance

    def inspect(self, name: str) -> dict | None:
        try:
            return self.api.inspect_container(name)
        except NotFound:
            return None

    def run_host(self, name: str, *, hostname: str, image: str, networks: list[tuple[str, str]],
                 kind: str, owner: str, public_key: str | None = None, command: list[str] | None = None,
                 engine_volume: bool = True, spec: str = "", files: dict[str, str] | None = None,
                 stop_signal: str = "SIGRTMIN+3") -> str:
        """Create and start a host container on ``networks`` [(docker network, ipv4)]; the first
        one gives the default route. ``files`` {path: text} are written before it starts."""
        try:
            self.api.inspect_image(image)
        except (ImageNotFound, NotFound) as exc:
            raise DataPlaneError("image %s is not on the Docker engine (build it with `make images`)" % image) from exc
        self.remove_host(name)
        labels = {LABEL: "1", LABEL_KIND: kind, LABEL_OWNER: owner, LABEL_SPEC: spec, LABEL_INSTANCE: self.instance}
        binds = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}
        devices = None
        if engine_volume:
            # A server's disk: the runtimes' data (Docker's or containerd's) cannot live on overlay;
            # and the kernel log a VM has (kubelet reads /dev/kmsg).
            for stem, folder in (("docker", ENGINE_DIR), ("containerd", CONTAINERD_DIR)):
                volume = "%s-%s" % (name, stem)
                self.api.create_volume(name=volume, labels=labels)
                binds[volume] = {"bind": folder, "mode": "rw"}
            devices = ["/dev/kmsg:/dev/kmsg:rwm"]
        host_config = self.api.create_host_config(binds=binds, devices=devices, **HOST_CONFIG)
        host_config.update(MaskedPaths=[], ReadonlyPaths=[])  # --security-opt systempaths=unconfined
        env = {"container": "docker"}
        if public_key:
            env["CARINA_AUTHORIZED_KEY"] = public_key.strip()
        first, rest = (networks[0], networks[1:]) if networks else (None, [])
        netcfg = None
        if first:
            netcfg = self.api.create_networking_config(
                {first[0]: self.api.create_endpoint_config(ipv4_address=first[1])})
        else:
            host_config["NetworkMode"] = "none"
        try:
            self.api.create_container(
                image, name=name, hostname=hostname, detach=True, labels=labels, environment=env,
                command=command, stop_signal=stop_signal, host_config=host_config, networking_config=netcfg)
            for net, addr in rest:
                self.api.connect_container_to_network(name, net, ipv4_address=addr)
            for path, text in (files or {}).items():
                self.put_file(name, path, text)
            self.api.start(name)
        except APIError as exc:
            self.remove_host(name)
            raise DataPlaneError("container %s did not start: %s" % (name, exc.explanation or exc)) from exc
        LOG.info("started %s (%s) at %s", name, image, ", ".join(a for _, a in networks) or "no network")
        return name

    def put_file(self, name: str, path: str, text: str) -> None:
        data = text.encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        self.api.put_archive(name, os.path.dirname(path), buf.getvalue())

    def remove_host(self, name: str) -> bool:
        """Remove a container and its disk volumes; True if there was one."""
        found = False
        with contextlib.suppress(NotFound):
            self.api.remove_container(name, force=True, v=True)
            found = True
        for stem in ("docker", "containerd"):
            with contextlib.suppress(NotFound):
                self.api.remove_volume("%s-%s" % (name, stem), force=True)
        if found:
            LOG.info("removed %s", name)
        return found

    def wait_ssh(self, name: str, address: str, timeout: float = 120, cancelled=lambda: False) -> None:
        """Until sshd on ``address`` sends its banner; fails early if the container stops."""
        deadline = time.monotonic() + timeout
        while not cancelled():
            try:
                with socket.create_connection((address, 22), timeout=2) as sock:
                    sock.settimeout(3)
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            info = self.inspect(name)
            if info is None:
                raise DataPlaneError("container %s disappeared while booting" % name)
            if info["State"]["Status"] != "running":
                logs = self.api.logs(name, tail=5).decode("utf-8", "replace").strip()
                raise DataPlaneError("container %s is %s (exit code %s): %s" % (
                    name, info["State"]["Status"], info["State"].get("ExitCode"), logs or "no output"))
            if time.monotonic() > deadline:
                raise DataPlaneError("sshd on %s did not answer within %ds" % (address, timeout))
            time.sleep(0.25)

    def attached(self, name: str) -> dict[str, str]:
        """{docker network: ipv4} the container is on now."""
        info = self.inspect(name)
        if info is None:
            return {}
        nets = info["NetworkSettings"]["Networks"] or {}
        return {net: (ep.get("IPAMConfig") or {}).get("IPv4Address") or ep.get("IPAddress", "")
                for net, ep in nets.items()}

    def sync_networks(self, name: str, wanted: dict[str, str]) -> None:
        """Connect / disconnect so that the container is on exactly ``wanted`` {network: ipv4}
        (used for floating IPs, which come and go while the container runs)."""
        have = self.attached(name)
        if not have and self.inspect(name) is None:
            return
        for net, addr in have.items():
            if net != "none" and wanted.get(net) != addr:
                with contextlib.suppress(NotFound, APIError):
                    self.api.disconnect_container_from_network(name, net, force=True)
        for net, addr in wanted.items():
            if have.get(net) != addr:
                try:
                    self.api.connect_container_to_network(name, net, ipv4_address=addr)
                except APIError as exc:
                    LOG.warning("cannot put %s on %s at %s: %s", name, net, addr, exc.explanation or exc)

    def signal(self, name: str, sig: str) -> None:
        self.api.kill(name, signal=sig)

    def exec(self, name: str, cmd: list[str]) -> tuple[int, str]:
        exe = self.api.exec_create(name, cmd)
        out = self.api.exec_start(exe["Id"]).decode("utf-8", "replace")
        return self.api.exec_inspect(exe["Id"])["ExitCode"], out

    def stop(self, name: str) -> None:
        self.api.stop(name, timeout=10)

    def start(self, name: str) -> None:
        self.api.start(name)

    def restart(self, name: str) -> None:
        self.api.restart(name, timeout=10)

    # -- clean-up ------------------------------------------------------------------------
    def purge(self) -> list[str]:
        """Remove every container, volume and network of this instance (labelled carina.testcloud=1);
        a bridge that another instance's containers still use stays."""
        removed = []
        for cont in self.containers():
            name = cont["Names"][0].lstrip("/")
            self.remove_host(name)
            removed.append(name)
        for vol in (self.api.volumes(filters={"label": "%s=1" % LABEL}) or {}).get("Volumes") or []:
            if self.mine(vol.get("Labels")):
                with contextlib.suppress(NotFound, APIError):
                    self.api.remove_volume(vol["Name"], force=True)
                    removed.append(vol["Name"])
        for net in self.api.networks(filters={"label": "%s=1" % LABEL}):
            if self.mine(net.get("Labels")):
                with contextlib.suppress(NotFound, APIError):
                    self.api.remove_network(net["Id"])
                    removed.append(net["Name"])
        return removed
