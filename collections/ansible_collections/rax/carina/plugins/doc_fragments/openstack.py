# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The connection options of openstack.cloud modules, so that module_defaults and AWX's
    # OpenStack credential (a clouds.yaml with cloud "devstack") work the same way.
    DOCUMENTATION = r"""
options:
  cloud:
    description:
      - Named cloud of C(clouds.yaml), or a dict of connection settings.
      - Defaults to E(OS_CLOUD) and the other E(OS_*) variables, as openstacksdk reads them.
    type: raw
  auth:
    description:
      - Authentication settings (C(auth_url), C(username), C(password), C(project_name),
        C(user_domain_name), C(project_domain_name), ...), when O(cloud) does not name them.
    type: dict
  auth_type:
    description: Keystone authentication plugin, for example V(password) or V(v3applicationcredential).
    type: str
  region_name:
    description: Region of the cloud.
    type: str
  interface:
    description: Endpoint interface of the catalog to use.
    type: str
    choices: [admin, internal, public]
    default: public
    aliases: [endpoint_type]
  validate_certs:
    description: Verify the TLS certificates of the API endpoints.
    type: bool
    aliases: [verify]
  ca_cert:
    description: CA bundle to verify the API endpoints with.
    type: str
    aliases: [cacert]
  client_cert:
    description: Client certificate for the API endpoints.
    type: str
    aliases: [cert]
  client_key:
    description: Key of O(client_cert).
    type: str
    aliases: [key]
  api_timeout:
    description: Timeout of each API call, in seconds.
    type: int
  wait:
    description: Wait until the resources reach their final state.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the resources.
    type: int
    default: 600
requirements:
  - openstacksdk >= 1.0
"""
