# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils.state: the state folder as one archive (same files, same bytes) and back, refusing what is not
a file or folder inside the folder."""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
import tarfile

import pytest

from ansible_collections.rax.carina.plugins.module_utils import state


def folder(root):
    root.mkdir(mode=0o700)
    (root / "pki").mkdir(mode=0o700)
    (root / "pki" / "ca-key.pem").write_text("KEY\n")
    (root / "pki" / "ca-key.pem").chmod(0o600)
    (root / "pki" / "ca.pem").write_text("CERT\n")
    (root / "pki" / "ca.pem").chmod(0o644)
    (root / "cluster.json").write_text('{"name": "demo"}\n')
    (root / "lock").write_text('{"pid": 1}\n')
    (root / ".stored").write_text("{}")
    return root


def test_the_same_files_give_the_same_bytes_and_the_lock_is_not_kept(tmp_path):
    one, digest = state.pack(folder(tmp_path / "one"))
    two, again = state.pack(folder(tmp_path / "two"))
    assert one == two and digest == again == hashlib.sha256(gzip.decompress(one)).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(one))) as tar:
        assert tar.getnames() == ["cluster.json", "pki", "pki/ca-key.pem", "pki/ca.pem"]
        assert {m.name: (m.mode, m.mtime, m.uid) for m in tar.getmembers()}["pki/ca-key.pem"] == (0o600, 0, 0)
    (tmp_path / "two" / "pki" / "ca.pem").write_text("OTHER\n")
    assert state.pack(tmp_path / "two")[1] != digest


def test_unpack_writes_the_files_with_their_modes_into_a_private_folder(tmp_path):
    data, digest = state.pack(folder(tmp_path / "src"))
    written = state.unpack(data, digest, str(tmp_path / "dst"))
    assert sorted(written) == ["cluster.json", "pki/ca-key.pem", "pki/ca.pem"]
    assert (tmp_path / "dst" / "pki" / "ca-key.pem").read_text() == "KEY\n"
    assert stat.S_IMODE((tmp_path / "dst").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "dst" / "pki" / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "dst" / "pki" / "ca.pem").stat().st_mode) == 0o644
    assert not (tmp_path / "dst" / "lock").exists()
    assert state.pack(tmp_path / "dst")[1] == digest


def test_a_damaged_archive_is_refused_before_anything_is_written(tmp_path):
    data = state.pack(folder(tmp_path / "src"))[0]
    with pytest.raises(ValueError, match="does not match its digest"):
        state.unpack(data, "0" * 64, str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("name, kind", [("../escape", tarfile.REGTYPE), ("/etc/passwd", tarfile.REGTYPE),
                                        ("link", tarfile.SYMTYPE)])
def test_members_outside_the_folder_or_not_files_are_refused(tmp_path, name, kind):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
        tar.addfile(info, io.BytesIO(b""))
    data = raw.getvalue()
    with pytest.raises(ValueError, match="not a file or folder inside the state folder"):
        state.unpack(gzip.compress(data), hashlib.sha256(data).hexdigest(), str(tmp_path / "dst"))
    assert not (tmp_path / "dst").exists()


def test_the_marker_and_the_pieces(tmp_path):
    assert state.read_marker(str(tmp_path)) == {}
    state.write_marker(str(tmp_path), "volume:carina-state-demo", "ab" * 32)
    assert state.read_marker(str(tmp_path)) == {"store": "volume:carina-state-demo", "digest": "ab" * 32}
    assert stat.S_IMODE((tmp_path / ".stored").stat().st_mode) == 0o600
    assert state.chunks(b"abcdefg", 3) == [b"abc", b"def", b"g"] and state.chunks(b"", 3) == [b""]
