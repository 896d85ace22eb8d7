# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
name: coe_contracts
short_description: The contracts of the collection's COE drivers
version_added: 0.1.0
author:
  - rax.carina developers (@rax-carina)
description:
  - Reads C(roles/coe_<name>/meta/contract.yml) of every COE driver role of rax.carina and
    returns them as one mapping, by COE name, after checking each contract's shape.
  - Without terms it returns every contract; with terms, the contracts of the COEs named
    (an unknown name fails, listing the COEs there are).
options:
  _terms:
    description: COE names (optional).
    required: false
"""

EXAMPLES = r"""
- name: Every COE the collection drives
  ansible.builtin.debug:
    msg: "{{ lookup('rax.carina.coe_contracts') | list }}"

- name: The Swarm driver's listeners
  ansible.builtin.debug:
    msg: "{{ (lookup('rax.carina.coe_contracts', 'swarm')).swarm.listeners }}"
"""

RETURN = r"""
_raw:
  description: One mapping of COE name to its contract.
  type: list
  elements: dict
"""

import yaml

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible_collections.rax.carina.plugins.module_utils import contracts


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        try:
            found = contracts.load_all(yaml.safe_load)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise AnsibleLookupError(str(exc)) from exc
        if terms:
            unknown = [t for t in terms if t not in found]
            if unknown:
                raise AnsibleLookupError("coe %s is not supported; choose one of: %s"
                                         % (", ".join(map(str, unknown)), ", ".join(found)))
            found = dict((t, found[t]) for t in terms)
        return [found]
