# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filters that turn a COE contract into the OpenStack modules' input."""

from __future__ import annotations

from ansible_collections.rax.carina.plugins.filter.openstack import role_ports

PORTS = [
    {"port": 6443, "protocol": "tcp", "roles": ["master"], "from": "clients"},
    {"port": 2379, "protocol": "tcp", "roles": ["master"], "from": "cluster"},
    {"port": 10250, "protocol": "tcp", "roles": ["master", "worker"], "from": "cluster"},
]


def test_ports_for_clients_open_to_anywhere_by_default():
    assert role_ports(PORTS, "master") == [
        {"port": "6443", "protocol": "tcp", "from": "clients", "remote_ip_prefix": "0.0.0.0/0"},
        {"port": "2379", "protocol": "tcp", "from": "cluster"},
        {"port": "10250", "protocol": "tcp", "from": "cluster"},
    ]
    assert role_ports(PORTS, "worker") == [{"port": "10250", "protocol": "tcp", "from": "cluster"}]


def test_ports_for_clients_open_to_each_client_range_once():
    clients = ["198.19.200.0/24", "198.18.100.0/24", "198.19.200.0/24"]
    assert [(p["port"], p.get("remote_ip_prefix")) for p in role_ports(PORTS, "master", clients)] == [
        ("6443", "198.19.200.0/24"), ("6443", "198.18.100.0/24"), ("2379", None), ("10250", None)]
    assert role_ports(PORTS, "master", "198.19.200.0/24")[0]["remote_ip_prefix"] == "198.19.200.0/24"
