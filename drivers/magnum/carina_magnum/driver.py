"""The Magnum driver: Kubernetes clusters made, resized and deleted by the rax.carina collection.

Magnum's conductor calls create/resize/update/delete; each starts one of carina's runs (ansible-runner in a worker
process of its own session, recorded in carina's database under [carina] home) and returns at once. The
conductor's periodic status sync then calls update_cluster_status, which reads carina's record and moves the
cluster to *_COMPLETE or *_FAILED with carina's reason (the failing task). A restarted conductor loses nothing:
the runs go on in their own processes and their outcome is in carina's database.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import shutil
from pathlib import Path

import magnum.conf
import openstack
import openstack.config
import openstack.connection
from cryptography.hazmat.primitives import serialization
from keystoneauth1 import loading as ka_loading
from magnum.common import clients, exception
from magnum.conductor.handlers.common import cert_manager
from magnum.drivers.common import driver
from oslo_log import log as logging

from carina import paths, planning
from carina.api import Client
from carina.coes import Health
from carina.errors import CarinaError
from carina.service.magnum import internal_name, write_private
from carina_magnum import conf as carina_conf
from carina_magnum import translate
from carina_magnum.delegation import Delegation

CONF = magnum.conf.CONF
carina_conf.register(CONF)
LOG = logging.getLogger(__name__)

OS_DISTRO = "debian"  # the os_distro of carina's host images (Debian bookworm with containerd)


def _text(value) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Driver(driver.Driver):
    """rax.carina's Kubernetes, on Nova servers (vm) or Ironic nodes (bm), the API behind Octavia."""

    @property
    def provides(self):
        return [{"server_type": server_type, "os": OS_DISTRO, "coe": translate.COE} for server_type in ("vm", "bm")]

    # -- the driver's state ------------------------------------------------------------------
    @staticmethod
    def _client() -> Client:
        home = Path(CONF.carina.home)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Client(home)

    @staticmethod
    def _folder(cluster) -> Path:
        """The driver's own files of one cluster: Magnum's CA, the trust and its clouds.yaml."""
        return Path(CONF.carina.home) / "magnum" / cluster.uuid

    @staticmethod
    def _delegation() -> Delegation:
        ka_loading.load_auth_from_conf_options(CONF, "keystone_auth")  # registers the plugin's options
        group = CONF.keystone_auth
        service = {key: getattr(group, key, None) for key in (
            "auth_url", "username", "password", "user_domain_name", "user_domain_id", "project_name",
            "project_domain_name", "project_domain_id")}
        service["region_name"] = CONF.carina.region_name
        service["interface"] = CONF.carina.interface
        return Delegation(service, CONF.carina.trust_roles)

    def _find(self, client: Client, cluster):
        try:
            return client.find(translate.hex_id(cluster.uuid))
        except CarinaError:
            return None

    # -- create ------------------------------------------------------------------------------
    def create_cluster(self, context, cluster, cluster_create_timeout):
        client = self._client()
        template = cluster.cluster_template
        request = translate.create_request(
            {key: getattr(cluster, key) for key in (
                "labels", "flavor_id", "master_flavor_id", "fixed_network", "fixed_subnet", "floating_ip_enabled",
                "master_count", "node_count")},
            {key: getattr(template, key) for key in (
                "coe", "labels", "image_id", "flavor_id", "master_flavor_id", "fixed_network", "fixed_subnet",
                "external_network_id", "floating_ip_enabled", "server_type", "network_driver", "tls_disabled")},
            ssh_cidr=CONF.carina.ssh_cidr, binaries=CONF.carina.kubernetes_binaries)
        folder = self._folder(cluster)
        delegation = self._delegation()
        trust = delegation.delegate(context.auth_token, context.user_id, context.project_id, list(context.roles))
        try:
            write_private(folder / "trust.json", json.dumps(trust))
            write_private(folder / "clouds.yaml", delegation.clouds_yaml(trust["trust_id"], translate.CLOUD))
            ca = self._write_ca(context, cluster, folder)
            cluster_id = translate.hex_id(cluster.uuid)
            name = internal_name(client, cluster.name, cluster_id)
            client.create(name, cluster_id=cluster_id, project=cluster.project_id, ca_import=ca,
                          authorized_keys=self._user_keys(context, cluster),
                          run_env={"OS_CLIENT_CONFIG_FILE": str(folder / "clouds.yaml")},
                          extra={"magnum_uuid": cluster.uuid, "timeout_minutes": cluster_create_timeout},
                          timeout=int(cluster_create_timeout) * 60 if cluster_create_timeout else None, **request)
        except Exception:
            self._forget(cluster)
            raise
        LOG.info("cluster %s: carina cluster %s is being created", cluster.uuid, name)

    @staticmethod
    def _user_keys(context, cluster) -> list[str]:
        """The public key of the Nova key pair the user named (cluster, else template): every host lets it in."""
        if not cluster.keypair:
            return []
        compute = clients.OpenStackClients(context).nova()  # openstacksdk's compute proxy, with the user's token
        return [compute.get_keypair(cluster.keypair).public_key.strip()]

    @staticmethod
    def _write_ca(context, cluster, folder: Path) -> dict:
        """Magnum's CA of the cluster (the one `coe cluster config` signs client certificates with), its key
        decrypted, for carina to make the cluster on: so the cluster trusts the certificates Magnum signs."""
        ca = cert_manager.get_cluster_ca_certificate(cluster, context=context)
        passphrase = ca.get_private_key_passphrase()
        key = serialization.load_pem_private_key(_text(ca.get_private_key()),
                                                 password=_text(passphrase) if passphrase else None)
        write_private(folder / "ca-key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
        write_private(folder / "ca.pem", _text(ca.get_certificate()).decode())
        return {"cert": str(folder / "ca.pem"), "key": str(folder / "ca-key.pem")}

    # -- status --------------------------------------------------------------------------------
    def update_cluster_status(self, context, cluster, use_admin_ctx=False):
        client = self._client()
        found = self._find(client, cluster)
        created = cluster.created_at
        if created is not None and created.tzinfo is None:
            created = created.replace(tzinfo=datetime.UTC)
        age = (datetime.datetime.now(datetime.UTC) - created).total_seconds() if created else translate.STARTING
        change = translate.magnum_status(found, cluster.status, age)
        if change is None:
            return
        status, reason = change
        if found is not None and status.endswith(("_COMPLETE", "_FAILED")):
            self._sync_nodes(client, cluster, found, status)
        if status == "DELETE_COMPLETE":
            self._forget(cluster)
        cluster.status = status
        cluster.status_reason = reason or None
        cluster.save()
        LOG.info("cluster %s: %s %s", cluster.uuid, status, reason)

    @staticmethod
    def _sync_nodes(client: Client, cluster, found, status: str) -> None:
        """api_address, the node groups' addresses and counts, from carina's record of the cluster."""
        try:
            record = planning.read_record(paths.state_dir(client.home, found.name))
        except (OSError, ValueError):
            record = {}
        masters, workers = translate.addresses(record)
        if found.api_url:
            cluster.api_address = found.api_url
        version = (record.get("coe_options") or {}).get("kubernetes_version") or found.coe_options.get(
            "kubernetes_version")
        if version:
            cluster.coe_version = f"v{str(version).lstrip('v')}"
        for group, addresses, count in ((cluster.default_ng_master, masters, found.masters),
                                        (cluster.default_ng_worker, workers, found.nodes)):
            if group is None:
                continue
            if status.endswith("_COMPLETE"):
                group.node_addresses = addresses
                group.node_count = count
            group.status = status
            group.save()

    def _forget(self, cluster) -> None:
        """The cluster is gone (or was never made): its trust and the driver's files go with it."""
        folder = self._folder(cluster)
        try:
            trust = json.loads((folder / "trust.json").read_text())
        except (OSError, ValueError):
            trust = {}
        if trust.get("trust_id"):
            try:
                self._delegation().revoke(trust["trust_id"])
            except Exception as exc:  # the cluster is gone whatever Keystone says; the trust is logged to clean up
                LOG.warning("cluster %s: its trust %s could not be deleted: %s", cluster.uuid, trust["trust_id"], exc)
        shutil.rmtree(folder, ignore_errors=True)

    # -- health ----------------------------------------------------------------------------------
    def get_monitor(self, context, cluster):
        return Monitor(self, cluster)

    # -- delete ----------------------------------------------------------------------------------
    def delete_cluster(self, context, cluster):
        client = self._client()
        found = self._find(client, cluster)
        if found is None:
            return  # nothing was made (the status sync says DELETE_COMPLETE)
        if found.status in translate.IN_PROGRESS and found.current_run:
            # Magnum deletes clusters that are still being made or changed: the run stops first.
            with contextlib.suppress(CarinaError):  # it may have ended meanwhile
                client.cancel(found.current_run)
            client.wait(found.current_run, timeout=120)
        client.delete(found.name)

    # -- resize and update ---------------------------------------------------------------------
    def validate_master_resize(self, node_count):
        self.validate_master_size(node_count)  # odd counts, one master at a time is carina's to check

    def resize_cluster(self, context, cluster, resize_manager, node_count, nodes_to_remove,  # noqa: PLR0917
                       nodegroup=None):  # (Magnum's driver interface)
        client = self._client()
        found = self._find(client, cluster)
        if found is None:
            raise exception.NotSupported(operation="resizing a cluster carina has no record of")
        if nodegroup is not None and nodegroup.role == "master":
            if nodes_to_remove:
                raise exception.NotSupported(operation="removing named masters")
            client.resize(found.name, masters=node_count)
            return
        if nodegroup is not None and not nodegroup.is_default:
            raise exception.NotSupported(operation="resizing node groups other than the default ones")
        remove = []
        if nodes_to_remove:
            record = planning.read_record(paths.state_dir(client.home, found.name))
            remove = translate.removal_names(record, list(nodes_to_remove), self._server_names(cluster))
        client.resize(found.name, nodes=node_count, remove=remove)

    def update_cluster(self, context, cluster, scale_manager=None, rollback=False):
        client = self._client()
        found = self._find(client, cluster)
        if found is None:
            raise exception.NotSupported(operation="updating a cluster carina has no record of")
        client.resize(found.name, nodes=cluster.default_ng_worker.node_count)

    def _server_names(self, cluster) -> dict[str, str]:
        """The cluster's servers in the user's project (with its trust): id -> name."""
        config = openstack.config.OpenStackConfig(config_files=[str(self._folder(cluster) / "clouds.yaml")])
        conn = openstack.connection.Connection(config=config.get_one(cloud=translate.CLOUD))
        try:
            wanted = translate.hex_id(cluster.uuid)
            return {server.id: server.name for server in conn.compute.servers()
                    if (server.metadata or {}).get("carina_cluster_id") == wanted}
        finally:
            conn.close()

    # -- not supported ---------------------------------------------------------------------------
    def upgrade_cluster(self, context, cluster, cluster_template, max_batch_size,  # noqa: PLR0917
                        nodegroup, scale_manager=None, rollback=False):  # (Magnum's driver interface)
        raise exception.NotSupported(operation="upgrading a carina cluster (make a new one with the new kube_tag)")

    def create_federation(self, context, federation):
        raise exception.NotSupported(operation="federations")

    def update_federation(self, context, federation):
        raise exception.NotSupported(operation="federations")

    def delete_federation(self, context, federation):
        raise exception.NotSupported(operation="federations")

    def create_nodegroup(self, context, cluster, nodegroup):
        raise exception.NotSupported(operation="node groups other than the default ones")

    def update_nodegroup(self, context, cluster, nodegroup):
        raise exception.NotSupported(operation="node groups other than the default ones")

    def delete_nodegroup(self, context, cluster, nodegroup):
        raise exception.NotSupported(operation="node groups other than the default ones")


class Monitor:
    """Magnum's health poll: carina's probe of the cluster (the API's /readyz and the nodes' conditions)."""

    def __init__(self, owner: Driver, cluster):
        self.owner = owner
        self.cluster = cluster
        self.data = {}

    def poll_health_status(self) -> None:
        client = self.owner._client()
        found = self.owner._find(client, self.cluster)
        health = client.health(found.name) if found is not None else Health("UNKNOWN", "carina has no such cluster")
        self.data = {"health_status": health.status, "health_status_reason": {"carina": health.reason}}
