# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""cluster_lock: one live holder at a time, dead holders taken over, the id made once and kept."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from ansible_collections.rax.carina.plugins.modules import cluster_lock

from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module


@pytest.fixture
def other():
    """A live process that is not this one: another run's ansible-playbook, as far as the lock can tell."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def lock(tmp_path, capsys, *, pid=None, check_mode=False, **more):
    args = {"name": "demo", "state_dir": str(tmp_path / "demo"), "holder_pid": pid or os.getpid(), **more}
    return run_module(cluster_lock.main, capsys, args, check_mode=check_mode)


def test_a_create_makes_the_id_once_and_takes_the_lock(tmp_path, capsys):
    first = lock(tmp_path, capsys)
    assert first["changed"] and len(first["id"]) == 32
    assert (tmp_path / "demo" / "id").read_text() == first["id"] + "\n"
    assert stat.S_IMODE((tmp_path / "demo").stat().st_mode) == 0o700
    assert json.loads((tmp_path / "demo" / "lock").read_text())["pid"] == os.getpid()
    again = lock(tmp_path, capsys, operation="scale")
    assert not again["changed"] and again["id"] == first["id"]
    released = lock(tmp_path, capsys, state="absent")
    assert not released["changed"] and released["id"] == first["id"]
    assert (tmp_path / "demo" / "lock").read_text() == ""


def test_a_live_holder_refuses_another_run_and_keeps_the_lock(tmp_path, capsys, other):
    lock(tmp_path, capsys, pid=other, operation="scale")
    before = (tmp_path / "demo" / "lock").read_text()
    refused = lock(tmp_path, capsys)
    assert refused["failed"] and refused["msg"].startswith(f"cluster demo is busy: a scale run (pid {other}")
    refused = lock(tmp_path, capsys, check_mode=True)
    assert refused["failed"] and "is busy" in refused["msg"]
    refused = lock(tmp_path, capsys, state="absent")
    assert refused["failed"] and "not by this run" in refused["msg"]
    assert (tmp_path / "demo" / "lock").read_text() == before


def test_a_dead_holder_s_lock_is_taken_over(tmp_path, capsys):
    proc = subprocess.Popen(["true"])
    proc.wait()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "lock").write_text(json.dumps({"pid": proc.pid, "start": "1", "operation": "create"}))
    taken = lock(tmp_path, capsys)
    assert not taken.get("failed") and taken["holder"]["pid"] == os.getpid()


def test_a_delete_makes_no_id_and_check_mode_writes_nothing(tmp_path, capsys):
    deleted = lock(tmp_path, capsys, operation="delete")
    assert deleted["id"] == "" and not deleted["changed"]
    assert not (tmp_path / "demo" / "id").exists()
    planned = lock(tmp_path / "dry", capsys, check_mode=True)
    assert planned["changed"] and len(planned["id"]) == 32
    assert not (tmp_path / "dry").exists()


def test_a_record_s_id_is_read_and_a_damaged_id_refused(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "cluster.json").write_text(json.dumps({"name": "demo", "id": "a" * 32}))
    assert lock(tmp_path, capsys, operation="delete")["id"] == "a" * 32
    (tmp_path / "demo" / "id").write_text("../../etc\n")
    refused = lock(tmp_path, capsys)
    assert refused["failed"] and "is not a cluster id" in refused["msg"]


def test_without_ansible_playbook_above_it_says_so(tmp_path, capsys):
    refused = run_module(cluster_lock.main, capsys, {"name": "demo", "state_dir": str(tmp_path / "demo")})
    assert refused["failed"] and "no ansible-playbook process" in refused["msg"]


def test_the_id_a_check_picked_is_the_one_kept(tmp_path, capsys):
    picked = lock(tmp_path, capsys, check_mode=True)["id"]
    assert not (tmp_path / "demo").exists()
    kept = lock(tmp_path, capsys, id=picked)
    assert kept["id"] == picked and (tmp_path / "demo" / "id").read_text() == picked + "\n"
    refused = lock(tmp_path, capsys, id="b" * 32)
    assert refused["failed"] and "another run made this state folder meanwhile" in refused["msg"]


def test_a_delete_with_its_state_lost_uses_the_id_given_and_keeps_nothing(tmp_path, capsys):
    deleted = lock(tmp_path, capsys, operation="delete", id="c" * 32)
    assert deleted["id"] == "c" * 32 and not deleted["changed"]
    assert not (tmp_path / "demo" / "id").exists()


def test_defer_new_takes_a_made_cluster_s_lock_and_writes_nothing_for_a_new_one(tmp_path, capsys, other):
    new = lock(tmp_path, capsys, defer_new=True)
    assert not new["taken"] and len(new["id"]) == 32 and new["holder"]["pid"] == os.getpid()
    assert not (tmp_path / "demo").exists()
    kept = lock(tmp_path, capsys, id=new["id"])
    assert kept["taken"] and (tmp_path / "demo" / "id").read_text() == new["id"] + "\n"
    lock(tmp_path, capsys, state="absent")

    made = lock(tmp_path, capsys, defer_new=True, operation="scale")
    assert made["taken"] and not made["changed"] and made["id"] == new["id"]
    assert json.loads((tmp_path / "demo" / "lock").read_text())["pid"] == os.getpid()
    lock(tmp_path, capsys, state="absent")

    lock(tmp_path, capsys, pid=other)
    refused = lock(tmp_path, capsys, defer_new=True)
    assert refused["failed"] and "is busy" in refused["msg"]
    assert json.loads((tmp_path / "demo" / "lock").read_text())["pid"] == other
    dry = lock(tmp_path / "dry", capsys, defer_new=True, check_mode=True, id="d" * 32)
    assert not dry["taken"] and dry["id"] == "d" * 32 and not (tmp_path / "dry").exists()
