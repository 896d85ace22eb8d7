# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ssh: waiting for sshd, against real sockets on the loopback."""

from __future__ import annotations

import itertools
import socket
import threading

import pytest

from ansible_collections.rax.carina.plugins.module_utils import ssh


@pytest.fixture
def server():
    """A listener on 127.0.0.1 that greets every connection with what `greeting` holds."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    state = {"greeting": b"SSH-2.0-OpenSSH_9.2\r\n", "accepted": 0}

    def serve():
        while True:
            try:
                conn, _peer = sock.accept()
            except OSError:
                return
            state["accepted"] += 1
            with conn:
                conn.sendall(state["greeting"])

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1], state
    sock.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_ssh_banner_answers(server):
    port, state = server
    assert ssh.sshd_answers("127.0.0.1", port=port) is True
    state["greeting"] = b"HTTP/1.1 400 Bad Request\r\n"
    assert ssh.sshd_answers("127.0.0.1", port=port) is False
    assert state["accepted"] == 2


def test_a_closed_port_does_not_answer():
    assert ssh.sshd_answers("127.0.0.1", port=free_port(), timeout=1) is False


def test_wait_returns_the_hosts_that_did_not_answer(monkeypatch):
    answers = {"a": iter([False, False, True]), "b": itertools.repeat(False)}
    monkeypatch.setattr(ssh, "sshd_answers", lambda address: next(answers[address]))
    monkeypatch.setattr(ssh.time, "sleep", lambda s: None)
    rounds = []
    pending = ssh.wait_for_sshd({"host-a": "a", "host-b": "b"}, timeout=0.2,
                                while_pending=lambda left: rounds.append(dict(left)))
    assert pending == {"host-b": "b"}
    assert rounds and rounds[0] == {"host-a": "a", "host-b": "b"}
    assert ssh.describe_pending({"y": "198.18.0.3", "x": "198.18.0.2"}) == "x (198.18.0.2), y (198.18.0.3)"


def test_wait_ends_at_once_when_all_answer(monkeypatch):
    monkeypatch.setattr(ssh, "sshd_answers", lambda address: True)
    monkeypatch.setattr(ssh.time, "sleep", lambda s: pytest.fail("slept although every host answered"))
    assert ssh.wait_for_sshd({"h": "a"}, timeout=60) == {}
