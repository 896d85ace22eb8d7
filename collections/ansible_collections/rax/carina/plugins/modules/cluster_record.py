#!/usr/bin/python
# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_record
short_description: Write a cluster's record, the one file that says what the cluster is
version_added: 0.1.0
description:
  - Writes C(<state_dir>/cluster.json) from the planned spec (what M(rax.carina.cluster_spec)
    returns) and what the provider made - the endpoint, the network, the hosts. The record carries
    a schema version, the COE and its contract version, and the API URL from the contract.
  - It is the only writer of the record; the playbooks, M(rax.carina.cluster_spec) and the carina
    command read it (older schemas through their migration).
  - Written atomically with mode 0600; rewritten only when its content changes.
author:
  - rax.carina developers (@rax-carina)
attributes:
  check_mode:
    support: full
    description: Reports whether the record would change.
  diff_mode:
    support: full
    description: Shows the record before and after.
  idempotent:
    support: full
    description: The same input writes nothing.
options:
  cluster:
    description: The planned spec, as M(rax.carina.cluster_spec) returns it.
    type: dict
    required: true
  endpoint:
    description: Address of the cluster's endpoint (the load balancer).
    type: str
    default: ""
  subnet:
    description: Network the hosts are on.
    type: str
    default: ""
  settled:
    description:
      - V(true) once the hosts a scale removes are gone - the record then lists no leaving hosts.
      - V(false) records them, so that an interrupted scale resumes.
    type: bool
    default: false
  provider_data:
    description: What the provider needs to find the cluster again (for example the static hosts' addresses).
    type: dict
    default: {}
  addresses:
    description:
      - The address clients reach each host of the cluster at, by host name (its floating IP, else its own).
      - Left out, the addresses of the record already there are kept, for the hosts it still lists.
    type: dict
    version_added: 0.1.0
"""

EXAMPLES = r"""
- name: Record the cluster
  rax.carina.cluster_record:
    cluster: "{{ carina_cluster }}"
    endpoint: 198.18.10.3
    subnet: 198.18.10.0/24
    addresses:
      demo-master-1: 198.18.10.4
      demo-worker-1: 198.18.10.5
"""

RETURN = r"""
record:
  description: The record as written.
  returned: success
  type: dict
  sample:
    schema_version: 1
    name: demo
    id: 5f0c8f5e2a4b4f7e9c1d2e3f4a5b6c7d
    coe: kubernetes
    contract_version: 1
    api_url: https://198.18.10.3:6443
path:
  description: Path of the record.
  returned: success
  type: str
  sample: /root/.carina/clusters/demo/cluster.json
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rax.carina.plugins.module_utils import spec as rules
from ansible_collections.rax.carina.plugins.module_utils.files import read_bytes, write_atomic


def build(cluster, endpoint, subnet, settled, provider_data, *, addresses):
    contract = cluster.get("contract") or {}
    hosts = set(cluster.get("master_hosts") or []) | set(cluster.get("worker_hosts") or [])
    return dict(
        schema_version=rules.RECORD_SCHEMA,
        name=cluster["name"],
        id=cluster.get("id", ""),
        coe=cluster["coe"],
        contract_version=contract.get("version", 0),
        provider=cluster["provider"],
        masters=cluster["masters"],
        nodes=cluster["nodes"],
        master_hosts=list(cluster.get("master_hosts") or []),
        worker_hosts=list(cluster.get("worker_hosts") or []),
        removing_masters=[] if settled else list(cluster.get("removing_masters") or []),
        removing_workers=[] if settled else list(cluster.get("removing_workers") or []),
        lb=cluster.get("lb", ""),
        subnet=subnet or cluster.get("subnet", ""),
        endpoint=endpoint,
        api_url=rules.api_url(contract, endpoint) if contract else "",
        extra_sans=list(cluster.get("extra_sans") or []),
        authorized_keys=list(cluster.get("authorized_keys") or []),
        openstack=dict(cluster.get("openstack") or {}),
        static=dict(cluster.get("static") or {}),
        coe_options=dict(cluster.get("coe_options") or {}),
        provider_data=dict(provider_data or {}),
        addresses=dict((name, str(address)) for name, address in (addresses or {}).items()
                       if name in hosts and address),
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cluster=dict(type="dict", required=True),
            endpoint=dict(type="str", default=""),
            subnet=dict(type="str", default=""),
            settled=dict(type="bool", default=False),
            provider_data=dict(type="dict", default={}),
            addresses=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    cluster = p["cluster"]
    missing = [key for key in ("name", "coe", "provider", "masters", "nodes", "state_dir") if key not in cluster]
    if missing:
        module.fail_json(msg="cluster lacks %s: pass what rax.carina.cluster_spec returns" % ", ".join(missing))
    if rules.name_problems(cluster["name"]):
        module.fail_json(msg="cluster name %r is not valid" % cluster["name"])
    path = os.path.join(cluster["state_dir"], "cluster.json")
    before = read_bytes(path)
    addresses = p["addresses"]
    if addresses is None:
        try:
            addresses = json.loads(before or b"{}").get("addresses") or {}
        except (ValueError, AttributeError):
            addresses = {}
    record = build(cluster, p["endpoint"], p["subnet"], p["settled"], p["provider_data"], addresses=addresses)
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    changed = before != data
    result = dict(changed=changed, record=record, path=path)
    if module._diff:
        result["diff"] = dict(before=(before or b"").decode(), after=data.decode(),
                              before_header=path, after_header=path)
    if changed and not module.check_mode:
        if not os.path.isdir(cluster["state_dir"]):
            os.makedirs(cluster["state_dir"], mode=0o700)
        write_atomic(path, data, 0o600)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
