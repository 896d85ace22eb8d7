# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""cluster_state without a store to call: its input checks, the providers that keep nothing, a cloud whose
catalog has no key manager, and an unchanged state that calls no store at all. (The stores themselves run
for real in the integration tests: a Docker volume in test_awx_jobs, Barbican in test_openstack_cluster.)"""

from __future__ import annotations

import pytest

from ansible_collections.rax.carina.plugins.module_utils import openstack as sdk
from ansible_collections.rax.carina.plugins.module_utils import state as archive
from ansible_collections.rax.carina.plugins.modules import cluster_state

from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

ID = "a" * 32


class Cloud:
    """A connection whose catalog has the services named."""

    def __init__(self, *types):
        self.service_catalog = [{"type": t} for t in types]


@pytest.fixture
def folder(tmp_path):
    state_dir = tmp_path / "demo"
    (state_dir / "pki").mkdir(parents=True)
    (state_dir / "pki" / "ca-key.pem").write_text("KEY\n")
    (state_dir / "cluster.json").write_text('{"name": "demo"}\n')
    return state_dir


def state(capsys, folder, **more):
    return run_module(cluster_state.main, capsys, {"name": "demo", "state_dir": str(folder), **more})


@pytest.mark.parametrize("args, said", [
    ({"state": "pushed"}, "storing the state of cluster demo needs its cluster_id"),
    ({"state": "absent"}, "removing the state of cluster demo needs its cluster_id"),
    ({"state": "pulled", "cluster_id": "not-an-id"}, "is not a cluster id"),
])
def test_input_is_checked_before_any_store_is_called(capsys, folder, args, said):
    refused = state(capsys, folder, provider="local", docker_host="unix:///nonexistent.sock", **args)
    assert refused["failed"] and said in refused["msg"]


def test_nothing_is_stored_without_a_record(capsys, tmp_path):
    refused = state(capsys, tmp_path / "empty", cluster_id=ID, provider="static")
    assert refused["failed"] and "holds no record of cluster demo" in refused["msg"]


def test_static_hosts_keep_nothing_beside_the_cluster(capsys, folder):
    kept = state(capsys, folder, cluster_id=ID, provider="static")
    assert (kept["changed"], kept["store"], kept["location"]) == (False, "none", "")
    assert not (folder / ".stored").exists()


def test_a_cloud_without_a_key_manager_keeps_nothing_unless_barbican_is_asked_for(capsys, folder, monkeypatch):
    pytest.importorskip("openstack")
    monkeypatch.setattr(sdk, "open_connection", lambda params, fail: Cloud("compute", "network", "identity"))
    kept = state(capsys, folder, cluster_id=ID, provider="openstack", cloud="devstack")
    assert (kept["changed"], kept["store"]) == (False, "none") and not kept.get("failed")
    refused = state(capsys, folder, cluster_id=ID, provider="openstack", cloud="devstack", store="barbican")
    assert refused["failed"] and "no key manager (Barbican)" in refused["msg"]


def test_an_unchanged_state_calls_no_store(capsys, folder, monkeypatch):
    """What the marker says was stored, with the same files: no connection is even opened."""
    pytest.importorskip("openstack")
    archive.write_marker(str(folder), "barbican:http://kms/v1/containers/c1", archive.pack(str(folder))[1])
    monkeypatch.setattr(sdk, "open_connection", lambda params, fail: pytest.fail("a store was called"))
    kept = state(capsys, folder, cluster_id=ID, provider="openstack", cloud="devstack")
    assert (kept["changed"], kept["store"], kept["location"]) == (False, "barbican", "http://kms/v1/containers/c1")
    (folder / "pki" / "ca-key.pem").write_text("OTHER\n")
    with pytest.raises(pytest.fail.Exception, match="a store was called"):
        state(capsys, folder, cluster_id=ID, provider="openstack", cloud="devstack")
