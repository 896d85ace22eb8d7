# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A cluster's state folder as one archive, the same bytes for the same files, and back."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

# Never stored: the run's lock, and the note of what was stored last.
SKIPPED = frozenset(["lock", ".stored"])
MARKER = ".stored"


def pack(state_dir):
    """(archive bytes, sha256 hex) of the state folder's files, sorted, with no owner and no times, so the same
    files give the same digest. Only regular files and folders are taken."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder, dirs, files in os.walk(state_dir):
            dirs.sort()
            rel_dir = os.path.relpath(folder, state_dir)
            for name in sorted(files) + [d + "/" for d in dirs]:
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if rel_dir == "." and rel in SKIPPED:
                    continue
                path = os.path.join(state_dir, rel)
                st = os.lstat(path)
                info = tarfile.TarInfo(rel)
                info.mode = st.st_mode & 0o777
                info.mtime = 0
                if name.endswith("/"):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif tarfile.stat.S_ISREG(st.st_mode):
                    info.size = st.st_size
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
    data = raw.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    return gzip.compress(data, mtime=0), digest


def unpack(archive, digest, state_dir):
    """Write the archive's files into state_dir (made 0700), after checking its digest and every member: only
    files and folders, no absolute paths, nothing outside the folder. Returns the names written."""
    data = gzip.decompress(archive)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError("the stored state does not match its digest %s; it is damaged" % digest)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        members = tar.getmembers()
        for member in members:
            name = os.path.normpath(member.name)
            if os.path.isabs(name) or name.startswith("..") or not (member.isfile() or member.isdir()):
                raise ValueError("the stored state holds %r, which is not a file or folder inside the state folder"
                                 % member.name)
        if not os.path.isdir(state_dir):
            os.makedirs(state_dir, mode=0o700)
        written = []
        for member in members:
            path = os.path.join(state_dir, os.path.normpath(member.name))
            if member.isdir():
                if not os.path.isdir(path):
                    os.makedirs(path, mode=0o700)
                os.chmod(path, member.mode & 0o777)
                continue
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                os.makedirs(parent, mode=0o700)
            content = tar.extractfile(member).read()
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.chmod(path + ".tmp", member.mode & 0o777)
            os.replace(path + ".tmp", path)
            written.append(os.path.normpath(member.name))
    return written


def read_marker(state_dir):
    """What the last push stored ({store, digest}), or {}."""
    try:
        with open(os.path.join(state_dir, MARKER)) as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def write_marker(state_dir, store, digest):
    path = os.path.join(state_dir, MARKER)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"store": store, "digest": digest}, handle, sort_keys=True)
    os.replace(path + ".tmp", path)


def chunks(data, size):
    """data cut into pieces of at most size bytes (at least one piece)."""
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]
