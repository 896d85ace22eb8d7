# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""File helpers the modules share: read if present, parse a mode, write atomically with the final mode."""

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


def parse_mode(value, where, most=0o7777):
    """An octal file mode given as a string (`0644`, `600`), at most `most`; ValueError naming
    `where` otherwise."""
    try:
        mode = int(str(value), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= most:
        raise ValueError("%s: mode %r is not an octal file mode of at most %04o, such as 0644" % (where, value, most))
    return mode


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
