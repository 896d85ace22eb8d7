"""The driver's options, in magnum.conf's [carina] section."""

from __future__ import annotations

from oslo_config import cfg

GROUP = "carina"

OPTS = [
    cfg.StrOpt("home", default="/var/lib/magnum/carina",
               help="carina's state folder (its database, the clusters' PKI, SSH keys and run folders) and the "
                    "driver's own files per cluster (Magnum's CA, the delegated cloud credentials), mode 0700. "
                    "It must survive restarts of magnum-conductor."),
    cfg.ListOpt("trust_roles", default=["member", "load-balancer_member"],
                help="The roles a cluster's trust delegates to Magnum's service user, out of those the user has in "
                     "the project: what making servers, networks and load balancers needs, nothing more."),
    cfg.StrOpt("ssh_cidr", default="0.0.0.0/0",
               help="Who may reach the hosts' SSH port, as a CIDR; magnum-conductor's address must be inside it."),
    cfg.StrOpt("region_name", default="",
               help="The region the clusters' servers and load balancers are made in (empty: the cloud's only one)."),
    cfg.StrOpt("interface", default="public", help="The endpoint interface the playbooks call the cloud's APIs on."),
    cfg.StrOpt("kubernetes_binaries", default="",
               help="Where the hosts get the Kubernetes binaries: empty for the official release downloads "
                    "(checked against their SHA-256), or a folder on the conductor's machine."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]
