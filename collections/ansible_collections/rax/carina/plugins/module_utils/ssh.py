# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Waiting for new hosts' sshd from the controller, as Ansible will reach them.

A server Nova calls ACTIVE, or a node Ironic calls active, is still booting: its sshd answers later.
The host modules wait for it here, so that the first play does not find a made host unreachable.
"""

from __future__ import annotations

import socket
import time


def sshd_answers(address, port=22, timeout=2.0):
    """True when what listens at address:port speaks SSH (its banner starts with SSH-)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_sshd(addresses, timeout, poll=0.5, while_pending=None):
    """Wait until every host of {name: address} answers with an SSH banner, or timeout seconds pass.

    while_pending(pending) is called between rounds (it may fail early, for a host that stopped).
    Returns {name: address} of the hosts that did not answer (empty when all did)."""
    deadline = time.monotonic() + timeout
    pending = dict(addresses)
    while pending:
        for name, address in list(pending.items()):
            if sshd_answers(address):
                del pending[name]
        if not pending or time.monotonic() > deadline:
            break
        if while_pending is not None:
            while_pending(pending)
        time.sleep(poll)
    return pending


def describe_pending(pending):
    """'a (198.18.0.2), b (198.18.0.3)': the hosts that did not answer, for a failure message."""
    return ", ".join("%s (%s)" % item for item in sorted(pending.items()))
