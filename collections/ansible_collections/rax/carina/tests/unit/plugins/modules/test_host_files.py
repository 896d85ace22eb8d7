# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""host_files: many files in one step, each written only when it differs, modes exact, nothing leaked."""

from __future__ import annotations

import os
import stat

from ansible_collections.rax.carina.plugins.modules import host_files

from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

SECRET = "-----BEGIN PRIVATE KEY-----\nsecret-material\n-----END PRIVATE KEY-----\n"  # noqa: S105 - a stand-in, not a key


def args(tmp_path):
    pki = tmp_path / "etc" / "pki"
    return {
        "directories": [{"path": str(tmp_path / "etc"), "mode": "0700"}, {"path": str(pki), "mode": "0700"}],
        "files": [
            {"path": str(pki / "ca.pem"), "content": "ca\n", "tags": ["kubelet", "kube-proxy"]},
            {"path": str(pki / "key.pem"), "content": SECRET, "mode": "0600", "tags": ["kubelet"]},
            {"path": str(tmp_path / "etc" / "unit"), "content": "[Unit]\n", "mode": "0644", "tags": ["etcd"]},
        ],
    }


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_everything_once_then_nothing(tmp_path, capsys):
    first = run_module(host_files.main, capsys, args(tmp_path))
    assert first["changed"] and first["changed_tags"] == ["etcd", "kube-proxy", "kubelet"]
    assert first["made"] == [str(tmp_path / "etc"), str(tmp_path / "etc" / "pki")]
    assert (tmp_path / "etc" / "pki" / "key.pem").read_text() == SECRET
    assert mode(tmp_path / "etc" / "pki" / "key.pem") == 0o600 and mode(tmp_path / "etc" / "pki") == 0o700
    assert mode(tmp_path / "etc" / "pki" / "ca.pem") == 0o644
    second = run_module(host_files.main, capsys, args(tmp_path))
    assert not second["changed"] and second["written"] == [] and second["changed_tags"] == []
    # No content, least of all a key, in what the module returns.
    assert "secret-material" not in str(first) + str(second)


def test_only_what_differs_is_written_and_tagged(tmp_path, capsys):
    run_module(host_files.main, capsys, args(tmp_path))
    changed = args(tmp_path)
    changed["files"][2]["content"] = "[Unit]\nDescription=x\n"
    os.chmod(tmp_path / "etc" / "pki" / "key.pem", 0o644)
    result = run_module(host_files.main, capsys, changed)
    assert result["written"] == [str(tmp_path / "etc" / "unit")]
    assert result["modes_fixed"] == [str(tmp_path / "etc" / "pki" / "key.pem")]
    assert result["changed_tags"] == ["etcd", "kubelet"]
    assert mode(tmp_path / "etc" / "pki" / "key.pem") == 0o600


def test_check_mode_writes_nothing(tmp_path, capsys):
    result = run_module(host_files.main, capsys, args(tmp_path), check_mode=True)
    assert result["changed"] and len(result["written"]) == 3
    assert not (tmp_path / "etc").exists()


def test_bad_input_fails_before_writing(tmp_path, capsys):
    bad = args(tmp_path)
    bad["files"].append({"path": str(tmp_path / "nowhere" / "x"), "content": "a payload of its own"})
    result = run_module(host_files.main, capsys, bad)
    assert result["failed"] and "folder %s does not exist" % (tmp_path / "nowhere") in result["msg"]
    assert not (tmp_path / "etc").exists()
    bad = args(tmp_path)
    bad["files"][0]["mode"] = "rw-r--r--"
    result = run_module(host_files.main, capsys, bad)
    assert result["failed"] and "is not an octal file mode" in result["msg"]
    (tmp_path / "link").symlink_to(tmp_path / "target")
    bad = {"files": [{"path": str(tmp_path / "link"), "content": "a payload of its own"}]}
    result = run_module(host_files.main, capsys, bad)
    assert result["failed"] and "is not a regular file" in result["msg"]
    assert not (tmp_path / "target").exists()


def test_validate_checks_new_content_in_order_and_a_failed_check_stops_the_writes(tmp_path, capsys):
    conf = tmp_path / "etc" / "service.cfg"
    # The check relies on a file listed before it (as HAProxy's on its CA file).
    check = "sh -c 'grep -q \"^ca $(cat %s/ca)$\" \"$0\"' %%s" % (tmp_path / "etc")
    good = args(tmp_path)
    good["files"].insert(0, {"path": str(tmp_path / "etc" / "ca"), "content": "1\n"})
    good["files"].append({"path": str(conf), "content": "ca 1\n", "validate": check, "tags": ["svc"]})
    result = run_module(host_files.main, capsys, good)
    assert result["changed"] and conf.read_text() == "ca 1\n"
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["ca", "pki", "service.cfg", "unit"]  # no temp left
    assert not run_module(host_files.main, capsys, good)["changed"]
    bad = args(tmp_path)
    bad["files"].insert(0, {"path": str(tmp_path / "etc" / "ca"), "content": "1\n"})
    bad["files"].append({"path": str(conf), "content": "ca 2\n", "validate": check})
    bad["files"].append({"path": str(tmp_path / "etc" / "after"), "content": "x\n"})
    result = run_module(host_files.main, capsys, bad)
    assert result["failed"] and "%s: the new content fails its check" % conf in result["msg"]
    assert result["written"] == []
    # Neither the failing file nor the one after it was written; no temporary file is left.
    assert conf.read_text() == "ca 1\n" and not (tmp_path / "etc" / "after").exists()
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["ca", "pki", "service.cfg", "unit"]
    no_place = args(tmp_path)
    no_place["files"].append({"path": str(conf), "content": "listen 1\n", "validate": "true"})
    result = run_module(host_files.main, capsys, no_place)
    assert result["failed"] and "validate must contain %s" in result["msg"]
