# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""File helpers the modules share: read if present, write atomically with the final mode."""

from __future__ import annotations

import os
import tempfile


def read_bytes(path):
    """The file's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path, data, mode, durable=False):
    """The one atomic writer: write through a temporary file in the same folder, created with `mode`
    from the start (no window with looser rights for key files), then rename it over `path`.

    `durable` also fsyncs the data before the rename (for files whose loss costs more than a
    rewrite, like a CA); without it, many files are written fast.
    """
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".carina-")
    try:
        # mkstemp makes 0600; set the mode exactly before anything is written.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
