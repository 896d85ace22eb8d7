# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""credentials_bundle: the bundle's files, extra files such as a kubeconfig, written only when they differ."""

from __future__ import annotations

import os
import stat

from ansible_collections.rax.carina.plugins.modules import credentials_bundle

from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module

CERT = "-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nclient-secret\n-----END PRIVATE KEY-----\n"


def args(tmp_path, **extra):
    pki = tmp_path / "pki"
    pki.mkdir(exist_ok=True)
    (pki / "ca.pem").write_text(CERT.replace("stand-in", "ca"))
    (pki / "admin.pem").write_text(CERT)
    (pki / "admin-key.pem").write_text(KEY)
    return {
        "path": str(tmp_path / "bundle"), "cluster_name": "k1", "endpoint": "198.18.0.10",
        "env": {"KUBECONFIG": "{path}/kubeconfig"}, "basename": "kubectl",
        "ca_file": str(pki / "ca.pem"), "cert_file": str(pki / "admin.pem"), "key_file": str(pki / "admin-key.pem"),
        "extra_files": [{"name": "kubeconfig", "content": "server: https://198.18.0.10:6443\nkey: " + KEY}],
        **extra,
    }


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_extra_files_are_written_private_by_default_and_once(tmp_path, capsys):
    first = run_module(credentials_bundle.main, capsys, args(tmp_path))
    bundle = tmp_path / "bundle"
    assert first["changed"] and str(bundle / "kubeconfig") in first["written"]
    assert mode(bundle / "kubeconfig") == 0o600 and mode(bundle / "key.pem") == 0o600 and mode(bundle) == 0o700
    assert "198.18.0.10:6443" in (bundle / "kubeconfig").read_text()
    assert (bundle / "kubectl.env").read_text().count(f"{bundle}/kubeconfig") == 1
    second = run_module(credentials_bundle.main, capsys, args(tmp_path))
    assert not second["changed"] and second["written"] == []
    assert "client-secret" not in str(first) + str(second)


def test_a_changed_extra_file_or_mode_is_rewritten_alone(tmp_path, capsys):
    run_module(credentials_bundle.main, capsys, args(tmp_path))
    changed = args(tmp_path, extra_files=[{"name": "kubeconfig", "content": "other\n", "mode": "0640"}])
    checked = run_module(credentials_bundle.main, capsys, changed, check_mode=True)
    assert checked["changed"] and checked["written"] == [str(tmp_path / "bundle" / "kubeconfig")]
    assert "other" not in (tmp_path / "bundle" / "kubeconfig").read_text()
    done = run_module(credentials_bundle.main, capsys, changed)
    assert done["written"] == [str(tmp_path / "bundle" / "kubeconfig")]
    assert mode(tmp_path / "bundle" / "kubeconfig") == 0o640


def test_bad_extra_files_fail_before_anything_is_written(tmp_path, capsys):
    for bad, words in (
        ({"name": "../escape", "content": "x"}, "plain file name"),
        ({"name": "key.pem", "content": "x"}, "plain file name"),
        ({"name": ".hidden", "content": "x"}, "plain file name"),
        ({"name": "kubeconfig", "content": "x", "mode": "4755"}, "at most 0777"),
        ({"name": "kubeconfig", "content": "x", "mode": "rw"}, "octal file mode"),
    ):
        result = run_module(credentials_bundle.main, capsys, args(tmp_path, extra_files=[bad]))
        assert result.get("failed") and words in result["msg"], (bad, result)
        assert not (tmp_path / "bundle").exists()
