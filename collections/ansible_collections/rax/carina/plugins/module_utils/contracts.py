# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""COE contracts: found by name in the collection's roles (coe_<name>/meta/contract.yml), checked
for shape, read by the lookup rax.carina.coe_contracts and by the carina command alike."""

from __future__ import annotations

import os

CONTRACT_FILE = os.path.join("meta", "contract.yml")
ROLE_PREFIX = "coe_"
GENERIC_ROLES = ("master", "worker")
REACH = ("clients", "cluster")
PROTOCOLS = ("tcp", "udp")
CHECK_TYPES = ("tcp", "http", "https")
OPTION_TYPES = ("str", "int", "bool", "cidr")
# The credentials bundle's file per shell: <credentials.basename><suffix> (written by credentials_bundle,
# read by the carina command).
SHELL_SUFFIXES = {"bash": ".env", "sh": ".env", "zsh": ".env", "fish": ".fish", "powershell": ".ps1", "cmd": ".cmd"}
REQUIRED = ("name", "version", "title", "roles", "masters", "workers", "runtime", "ports", "listeners", "pki",
            "credentials", "api_url", "operations")


def collection_root():
    """The collection this file belongs to (plugins/module_utils/ is two levels down)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def contract_paths(root=None):
    """{coe name: contract file} of every COE driver role in the collection."""
    roles = os.path.join(root or collection_root(), "roles")
    found = {}
    for entry in sorted(os.listdir(roles)) if os.path.isdir(roles) else []:
        path = os.path.join(roles, entry, CONTRACT_FILE)
        if entry.startswith(ROLE_PREFIX) and os.path.isfile(path):
            found[entry[len(ROLE_PREFIX):]] = path
    return found


def _mapping(value):
    return value if isinstance(value, dict) else {}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _port_ok(port):
    port = _mapping(port)
    roles = port.get("roles")
    return (_is_int(port.get("port")) and port.get("protocol") in PROTOCOLS and port.get("from") in REACH
            and isinstance(roles, list) and bool(roles) and all(role in GENERIC_ROLES for role in roles))


def _listener_ok(listener):
    listener = _mapping(listener)
    return (bool(listener.get("name")) and _is_int(listener.get("port")) and listener.get("protocol") == "tcp"
            and _mapping(listener.get("check")).get("type") in CHECK_TYPES)


def _list_problems(contract, key, entry_ok, need):
    if not isinstance(contract[key], list):
        return ["%s must be a list" % key]
    return ["%s[%d] needs %s" % (key, index, need) for index, entry in enumerate(contract[key]) if not entry_ok(entry)]


def problems(contract, name=None):
    """What is wrong with a contract's shape, so that a driver author learns it at once.

    A field of the wrong type is reported like a missing one, never raised: a broken contract must
    fail with its problems listed, not with a traceback.
    """
    if not isinstance(contract, dict):
        return ["the contract is not a mapping"]
    out = ["missing field %r" % key for key in REQUIRED if key not in contract]
    if out:
        return out
    if name is not None and contract["name"] != name:
        out.append("name %r differs from its role's name %r" % (contract["name"], name))
    for role in GENERIC_ROLES:
        words = _mapping(_mapping(contract["roles"]).get(role))
        if not words.get("word") or not words.get("plural"):
            out.append("roles.%s needs word and plural" % role)
    for key in ("masters", "workers"):
        rule = contract[key]
        if not isinstance(rule, dict) or not all(_is_int(rule[k]) for k in ("min", "max", "default") if k in rule):
            out.append("%s must be a mapping of min, max and default (int)" % key)
    out += _list_problems(contract, "ports", _port_ok, "port (int), protocol (%s), roles (%s) and from (%s)" % (
        "/".join(PROTOCOLS), "/".join(GENERIC_ROLES), "/".join(REACH)))
    out += _list_problems(contract, "listeners", _listener_ok,
                          "name, port (int), protocol tcp and check.type (%s)" % "/".join(CHECK_TYPES))
    if not isinstance(contract["api_url"], str) or "{endpoint}" not in contract["api_url"]:
        out.append("api_url must hold {endpoint}")
    creds = _mapping(contract["credentials"])
    if not creds.get("basename") or not isinstance(creds.get("env"), dict) or not creds.get("files"):
        out.append("credentials needs basename, env and files")
    if not isinstance(contract["operations"], list):
        out.append("operations must be a list")
    out += option_problems(contract.get("options", {}))
    return out


def option_problems(options):
    """The COE's own options (optional): a mapping of name to a rule with a known type."""
    if not isinstance(options, dict):
        return ["options must be a mapping of option name to its rule"]
    return ["options.%s needs a type (%s)" % (key, "/".join(OPTION_TYPES)) for key, rule in sorted(options.items())
            if not isinstance(rule, dict) or rule.get("type", "str") not in OPTION_TYPES]


def load(path, loader):
    """One contract from its file, with `loader` the YAML loader the caller has (yaml.safe_load)."""
    with open(path) as handle:
        return loader(handle.read())


def load_all(loader, root=None):
    """{coe name: contract} of every driver; raises ValueError naming a broken contract."""
    contracts = {}
    for name, path in contract_paths(root).items():
        contract = load(path, loader)
        broken = problems(contract, name)
        if broken:
            raise ValueError("contract of coe %s (%s) is not valid: %s" % (name, path, "; ".join(broken)))
        contracts[name] = contract
    return contracts
