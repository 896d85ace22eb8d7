# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""owner_refusal: the one message both COE drivers give for a host another cluster of the same name owns."""

from __future__ import annotations

from ansible_collections.rax.carina.plugins.filter.cluster import owner_refusal


def test_a_host_without_an_id_or_with_the_runs_own_is_not_refused():
    assert owner_refusal("", "web-master-1", "web", "c0ffee") == ""
    assert owner_refusal(None, "web-master-1", "web", "") == ""
    assert owner_refusal("c0ffee", "web-master-1", "web", "c0ffee") == ""


def test_another_states_host_is_refused_naming_both_ids():
    said = owner_refusal("beef01", "web-master-1", "web", "c0ffee")
    assert said.startswith("web-master-1 is a node of cluster web with id beef01, not this state's c0ffee:")
    assert "Nothing was changed on it." in said


def test_a_run_that_knows_no_id_is_told_the_one_to_give():
    said = owner_refusal("beef01", "web-master-1", "web", "")
    assert "this run knows no id" in said
    assert said.endswith("give its id: -e carina_cluster_id=beef01.")
