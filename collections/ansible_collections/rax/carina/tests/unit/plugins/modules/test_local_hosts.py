# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""local_hosts: the inotify room check, on a /proc laid out in a temporary folder."""

from __future__ import annotations

import os

from ansible_collections.rax.carina.plugins.modules import local_hosts

UID = os.getuid()


def fake_proc(tmp_path, processes):
    """A /proc whose processes (pid: descriptor targets) all belong to this user."""
    proc = tmp_path / "proc"
    for pid, targets in processes.items():
        fds = proc / str(pid) / "fd"
        fds.mkdir(parents=True)
        for number, target in enumerate(targets):
            (fds / str(number)).symlink_to(target)
    (proc / "self").mkdir(parents=True)  # not a pid: skipped
    return proc


def socket_and_limit(tmp_path, limit):
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    path = tmp_path / "max_user_instances"
    path.write_text("%d\n" % limit)
    return "unix://%s" % sock, str(path)


def test_only_inotify_descriptors_of_the_user_are_counted(tmp_path):
    proc = fake_proc(tmp_path, {1: ["anon_inode:inotify", "anon_inode:inotify", "socket:[12]"],
                                22: ["anon_inode:[eventpoll]", "anon_inode:inotify"], 333: ["/dev/null"]})
    assert local_hosts.inotify_in_use(UID, str(proc)) == 3
    assert local_hosts.inotify_in_use(UID + 1, str(proc)) == 0


def test_a_shortfall_is_limit_in_use_and_needed(tmp_path):
    proc = fake_proc(tmp_path, {7: ["anon_inode:inotify"] * 100})
    url, limit = socket_and_limit(tmp_path, 128)
    # 28 free: two hosts at 14 fit, a third does not.
    assert local_hosts.inotify_shortfall(url, 28, limit, str(proc)) is None
    assert local_hosts.inotify_shortfall(url, 42, limit, str(proc)) == (128, 100, 42)


def test_no_check_without_a_need_a_local_socket_or_a_readable_limit(tmp_path):
    proc = fake_proc(tmp_path, {7: ["anon_inode:inotify"] * 128})
    url, limit = socket_and_limit(tmp_path, 128)
    assert local_hosts.inotify_shortfall(url, 8, limit, str(proc)) == (128, 128, 8)
    assert local_hosts.inotify_shortfall(url, 0, limit, str(proc)) is None
    assert local_hosts.inotify_shortfall("tcp://198.19.0.1:2376", 8, limit, str(proc)) is None
    assert local_hosts.inotify_shortfall("unix://%s/missing.sock" % tmp_path, 8, limit, str(proc)) is None
    assert local_hosts.inotify_shortfall(url, 8, str(tmp_path / "missing"), str(proc)) is None
