# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""cluster_spec's check of a CA to import (ca_import): refused before anything is made, carried in the plan."""

from __future__ import annotations

import datetime
import json

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.rax.carina.plugins.module_utils import contracts
from ansible_collections.rax.carina.plugins.modules import cluster_spec

from ansible_collections.rax.carina.tests.unit.plugins.modules.module_runner import run_module


def write_ca(folder, is_ca=True):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'outside')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir()
    (folder / 'ca.pem').write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / 'ca-key.pem').write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return {'cert': str(folder / 'ca.pem'), 'key': str(folder / 'ca-key.pem')}


def spec_args(home, **more):
    return dict({'name': 'imp', 'coe': 'kubernetes', 'contracts': contracts.load_all(yaml.safe_load),
                 'masters': 1, 'nodes': 1, 'home': str(home)}, **more)


def test_a_ca_to_import_is_checked_and_planned(tmp_path, capsys):
    good = write_ca(tmp_path / 'good')
    result = run_module(cluster_spec.main, capsys, spec_args(tmp_path / 'home', ca_import=good))
    assert 'failed' not in result, result
    assert result['cluster']['ca_import'] == good
    result = run_module(cluster_spec.main, capsys, spec_args(tmp_path / 'home'))
    assert result['cluster']['ca_import'] == {}


def test_a_bad_ca_to_import_is_refused_before_anything(tmp_path, capsys):
    leaf = write_ca(tmp_path / 'leaf', is_ca=False)
    result = run_module(cluster_spec.main, capsys, spec_args(tmp_path / 'home', ca_import=leaf))
    assert result['failed'] is True
    assert result['msg'] == ("cluster spec of 'imp' is not valid: ca_import: cert %s is not a CA certificate "
                             "(basicConstraints CA:TRUE)" % leaf['cert'])
    missing = dict(leaf, key=str(tmp_path / 'nothing.pem'))
    result = run_module(cluster_spec.main, capsys, spec_args(tmp_path / 'home', ca_import=missing))
    assert 'key %s does not exist' % missing['key'] in result['msg']
    assert not (tmp_path / 'home').exists()


KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHv1D5pS6Gk0c3zQ8QmZ6hJqP0nKXo7l1C9Ukz1Bq2u5 alice@laptop'


def test_users_keys_are_checked_and_kept_by_the_record(tmp_path, capsys):
    result = run_module(cluster_spec.main, capsys, spec_args(tmp_path / 'home', authorized_keys=[KEY]))
    assert result['cluster']['authorized_keys'] == [KEY]
    two = KEY + '\nssh-rsa x'
    bad = run_module(cluster_spec.main, capsys, spec_args(tmp_path / 'home', authorized_keys=[KEY, two]))
    assert bad['failed'] is True and 'authorized_keys[1] is not one SSH public key' in bad['msg']
    state = tmp_path / 'home' / 'clusters' / 'imp'
    state.mkdir(parents=True)
    (state / 'cluster.json').write_text(json.dumps({'schema_version': 1, 'name': 'imp', 'coe': 'kubernetes',
                                                    'provider': 'local', 'masters': 1, 'nodes': 1,
                                                    'authorized_keys': [KEY]}))
    result = run_module(cluster_spec.main, capsys, spec_args(tmp_path / 'home', operation='scale', nodes=2))
    assert 'failed' not in result, result
    assert result['cluster']['authorized_keys'] == [KEY]
