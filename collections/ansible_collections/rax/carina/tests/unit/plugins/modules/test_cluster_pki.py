# Copyright: rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Tests of the cluster_pki module through AnsibleModule (argument spec, check and diff mode, output)."""

from __future__ import annotations

import datetime
import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ansible_collections.rax.carina.plugins.module_utils import pki
from ansible_collections.rax.carina.plugins.modules import cluster_pki


def run_module(capsys, args, check_mode=False, diff=False):
    """Run the module's main() with ``args``; return (parsed JSON result, raw stdout)."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        cluster_pki.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def module_args(path, **overrides):
    args = {
        'path': str(path),
        'cluster_name': 'demo',
        'servers': [
            {'name': 'node-1', 'sans': ['198.18.0.11', 'node-1.example.com']},
            {'name': 'node-2', 'sans': ['198.18.0.12']},
        ],
        'extra_sans': ['127.0.0.1'],
    }
    args.update(overrides)
    return args


def listing(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def test_first_and_second_run(tmp_path, capsys):
    path = tmp_path / 'pki'
    result, out = run_module(capsys, module_args(path))
    assert result['changed'] is True
    assert 'failed' not in result
    assert result['issued'] == ['ca', 'server:node-1', 'server:node-2', 'client:admin']
    assert result['path'] == str(path)
    assert result['servers']['node-1']['sans'] == ['127.0.0.1', '198.18.0.11', 'node-1.example.com']
    assert result['servers']['node-2']['key'] == str(path / 'server-node-2-key.pem')
    assert result['clients']['admin']['cert'] == str(path / 'client-admin.pem')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert 'PRIVATE KEY' not in out

    cert = x509.load_pem_x509_certificate((path / 'client-admin.pem').read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == 'admin'

    before = listing(path)
    mtimes = {name: os.stat(path / name).st_mtime_ns for name in before}
    again, _out = run_module(capsys, module_args(path))
    assert again['changed'] is False
    assert again['issued'] == []
    assert listing(path) == before
    assert {name: os.stat(path / name).st_mtime_ns for name in before} == mtimes


def test_check_mode_writes_nothing(tmp_path, capsys):
    path = tmp_path / 'pki'
    result, _out = run_module(capsys, module_args(path), check_mode=True)
    assert result['changed'] is True
    assert result['issued'] == ['ca', 'server:node-1', 'server:node-2', 'client:admin']
    assert result['ca']['issued'] is True
    assert not path.exists()


def test_diff_mode(tmp_path, capsys):
    path = tmp_path / 'pki'
    result, out = run_module(capsys, module_args(path), diff=True)
    assert result['diff']['before'] == ''
    after = result['diff']['after'].splitlines()
    assert after[0].startswith('ca: CN=demo CA, O=carina, not_after=')
    assert after[1].startswith('server:node-1: CN=node-1, SANs=127.0.0.1,198.18.0.11,node-1.example.com, not_after=')
    assert after[3].startswith('client:admin: CN=admin, not_after=')
    assert 'PRIVATE KEY' not in out

    args = module_args(path)
    args['servers'][1]['sans'] = ['198.18.0.13']
    result, _out = run_module(capsys, args, diff=True, check_mode=True)
    assert result['issued'] == ['server:node-2']
    assert 'SANs=127.0.0.1,198.18.0.12,' in result['diff']['before']
    assert 'SANs=127.0.0.1,198.18.0.13,' in result['diff']['after']

    result, _out = run_module(capsys, module_args(path))
    assert 'diff' not in result


def test_clients_option(tmp_path, capsys):
    path = tmp_path / 'pki'
    clients = [{'name': 'admin'}, {'name': 'kube', 'common_name': 'kubernetes-admin',
                                   'organization': ['system:masters']}]
    result, _out = run_module(capsys, module_args(path, clients=clients, servers=[]))
    assert result['issued'] == ['ca', 'client:admin', 'client:kube']
    cert = x509.load_pem_x509_certificate((path / 'client-kube.pem').read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == 'system:masters'
    assert result['servers'] == {}


def test_rsa_and_prune_and_absent(tmp_path, capsys):
    path = tmp_path / 'pki'
    run_module(capsys, module_args(path, key_type='rsa', rsa_key_size=2048))
    args = module_args(path, key_type='rsa', prune=True)
    args['servers'] = args['servers'][:1]
    result, _out = run_module(capsys, args)
    assert result['removed'] == [str(path / 'server-node-2-key.pem'), str(path / 'server-node-2.pem')]
    assert result['issued'] == []

    result, _out = run_module(capsys, module_args(path, state='absent'))
    assert result['changed'] is True
    assert not path.exists()
    result, _out = run_module(capsys, module_args(path, state='absent'))
    assert result['changed'] is False


@pytest.mark.parametrize(('overrides', 'message'), [
    ({'servers': [{'name': 'node 1'}]}, "servers[0].name 'node 1' is invalid"),
    ({'servers': [{'name': 'a'}, {'name': 'a'}]}, "servers[1].name 'a' is a duplicate of servers[0].name"),
    ({'extra_sans': ['not..valid']}, "extra_sans[0] 'not..valid' is invalid"),
    ({'cert_valid_days': 10, 'renew_before_days': 10}, 'renew_before_days (10) must be smaller than cert_valid_days'),
    ({'ca_valid_days': 0}, 'ca_valid_days is 0; it must be at least 1'),
])
def test_invalid_input(tmp_path, capsys, overrides, message):
    path = tmp_path / 'pki'
    result, _out = run_module(capsys, module_args(path, **overrides))
    assert result['failed'] is True
    assert message in result['msg']
    assert os.listdir(tmp_path) == []


def test_argument_spec_rejects_bad_choice(tmp_path, capsys):
    result, _out = run_module(capsys, module_args(tmp_path / 'pki', key_type='dsa'))
    assert result['failed'] is True
    assert 'key_type' in result['msg']
    assert os.listdir(tmp_path) == []


def test_missing_cryptography(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pki, 'HAS_CRYPTOGRAPHY', False)
    monkeypatch.setattr(pki, 'CRYPTOGRAPHY_IMPORT_ERROR', ImportError('No module named cryptography'))
    result, _out = run_module(capsys, module_args(tmp_path / 'pki'))
    assert result['failed'] is True
    assert 'cryptography' in result['msg']
    assert os.listdir(tmp_path) == []


def test_os_error_is_reported(tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    result, _out = run_module(capsys, module_args(blocker / 'pki'))
    assert result['failed'] is True
    assert 'cannot update the PKI in %s' % (blocker / 'pki') in result['msg']


def test_documentation_matches_argument_spec():
    """The documented options are exactly the argument spec (ansible-test validates the details)."""
    doc = yaml.safe_load(cluster_pki.DOCUMENTATION)
    spec = cluster_pki.argument_spec()
    assert set(doc['options']) == set(spec)
    for name, option in spec.items():
        assert doc['options'][name]['type'] == option['type'], name
        assert doc['options'][name].get('default') == option.get('default'), name
        assert doc['options'][name].get('choices') == option.get('choices'), name
        if 'options' in option:
            assert set(doc['options'][name]['suboptions']) == set(option['options']), name
    yaml.safe_load(cluster_pki.EXAMPLES)
    yaml.safe_load(cluster_pki.RETURN)


def test_authorities_in_one_run(tmp_path, capsys):
    """More CAs of one cluster in one run: each in its own folder, signed by its own CA, pruned alike."""
    path = tmp_path / 'pki'
    authorities = [
        {'path': str(path / 'etcd'), 'cluster_name': 'demo etcd',
         'servers': [{'name': 'node-1', 'sans': ['198.18.0.11'], 'usage': 'peer'}],
         'clients': [{'name': 'apiserver-client', 'common_name': 'kube-apiserver-etcd-client'}]},
        {'path': str(path / 'front-proxy'), 'cluster_name': 'demo front-proxy',
         'clients': [{'name': 'front-proxy-client'}]},
    ]
    result, out = run_module(capsys, module_args(path, prune=True, authorities=authorities))
    assert result['changed'] is True and 'PRIVATE KEY' not in out
    assert result['issued'] == ['ca', 'server:node-1', 'server:node-2', 'client:admin']
    assert [a['issued'] for a in result['authorities']] == [
        ['ca', 'server:node-1', 'client:apiserver-client'], ['ca', 'client:front-proxy-client']]
    etcd_ca = x509.load_pem_x509_certificate((path / 'etcd' / 'ca.pem').read_bytes())
    assert etcd_ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == 'demo etcd CA'
    peer = x509.load_pem_x509_certificate((path / 'etcd' / 'server-node-1.pem').read_bytes())
    assert peer.issuer == etcd_ca.subject
    # The extra SANs are the main CA's servers' only.
    assert result['authorities'][0]['servers']['node-1']['sans'] == ['198.18.0.11']
    assert stat.S_IMODE(os.stat(path / 'front-proxy' / 'client-front-proxy-client-key.pem').st_mode) == 0o600

    again, _out = run_module(capsys, module_args(path, prune=True, authorities=authorities))
    assert again['changed'] is False and [a['issued'] for a in again['authorities']] == [[], []]

    # A client dropped from one CA is pruned from its folder; the others are left as they are.
    authorities[0]['clients'] = []
    pruned, _out = run_module(capsys, module_args(path, prune=True, authorities=authorities))
    assert pruned['changed'] is True and pruned['issued'] == []
    assert pruned['authorities'][0]['removed'] == [str(path / 'etcd' / 'client-apiserver-client-key.pem'),
                                                   str(path / 'etcd' / 'client-apiserver-client.pem')]


def test_a_bad_authority_fails_before_anything_is_written(tmp_path, capsys):
    path = tmp_path / 'pki'
    authorities = [{'path': str(path / 'etcd'), 'cluster_name': 'demo etcd',
                    'servers': [{'name': 'node-1', 'sans': ['not a name!']}]}]
    result, _out = run_module(capsys, module_args(path, authorities=authorities))
    assert result['failed'] and result['msg'].startswith('authorities[0]: ')
    assert not path.exists()


def outside_ca(folder, name='outside', days=365):
    """A CA made elsewhere, as Magnum makes one: RSA, its key written unencrypted (as the caller decrypts it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(exist_ok=True)
    (folder / ('%s.pem' % name)).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / ('%s-key.pem' % name)).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return {'cert': str(folder / ('%s.pem' % name)), 'key': str(folder / ('%s-key.pem' % name))}


def test_imported_ca_signs_every_leaf_and_is_kept_afterwards(tmp_path, capsys):
    path = tmp_path / 'pki'
    run_module(capsys, module_args(path))  # a CA made here first: the import replaces it
    given = outside_ca(tmp_path / 'outside')
    # Check mode: says what it would do, writes nothing.
    before = listing(path)
    result = run_module(capsys, module_args(path, ca_import=given), check_mode=True)[0]
    assert result['changed'] is True and result['ca']['reason'] == 'imported' and listing(path) == before

    result = run_module(capsys, module_args(path, ca_import=given))[0]
    assert result['changed'] is True
    assert result['ca']['imported'] is True and result['ca']['reason'] == 'imported'
    assert result['issued'] == ['ca', 'server:node-1', 'server:node-2', 'client:admin']
    assert (path / 'ca.pem').read_bytes() == Path(given['cert']).read_bytes()
    assert stat.S_IMODE(os.stat(path / 'ca-key.pem').st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((path / 'ca.pem').read_bytes())
    leaf = x509.load_pem_x509_certificate((path / 'server-node-1.pem').read_bytes())
    assert pki.is_signed_by(leaf, ca) and isinstance(leaf.public_key(), pki.ec.EllipticCurvePublicKey)

    # Again with the same CA, and then without ca_import: nothing changes (RSA CA, ecdsa key_type: kept).
    result = run_module(capsys, module_args(path, ca_import=given))[0]
    assert result['changed'] is False and result['ca']['imported'] is True
    result = run_module(capsys, module_args(path))[0]
    assert result['changed'] is False and result['ca']['imported'] is True and result['issued'] == []
    # Inside the renewal window, an imported CA is still never replaced.
    result = run_module(capsys, module_args(path, renew_before_days=400, cert_valid_days=800))[0]
    assert result['ca']['issued'] is False and (path / 'ca.pem').read_bytes() == Path(given['cert']).read_bytes()

    # Its files lost: a clear failure, and no CA of our own in its place.
    os.remove(path / 'ca-key.pem')
    result = run_module(capsys, module_args(path))[0]
    assert result['failed'] is True and 'was imported' in result['msg'] and 'import it again' in result['msg']
    assert not (path / 'ca-key.pem').exists()
    result = run_module(capsys, module_args(path, ca_import=given))[0]
    assert result['changed'] is True and (path / 'ca-key.pem').exists()

    # state=absent takes the marker with the rest.
    result = run_module(capsys, module_args(path, state='absent'))[0]
    assert result['changed'] is True and not path.exists()


def test_imported_ca_is_checked_before_anything_is_written(tmp_path, capsys):
    path = tmp_path / 'pki'
    good = outside_ca(tmp_path / 'a', 'a')
    other = outside_ca(tmp_path / 'b', 'b')
    expired = outside_ca(tmp_path / 'c', 'c', days=-1)
    cases = {
        'is not the key of': dict(good, key=other['key']),
        'does not exist': dict(good, cert=str(tmp_path / 'none.pem')),
        'expired on': expired,
        'not a PEM certificate': dict(good, cert=good['key']),
        'not an unencrypted PEM private key': dict(good, key=good['cert']),
    }
    for message, given in cases.items():
        result = run_module(capsys, module_args(path, ca_import=given))[0]
        assert result['failed'] is True and message in result['msg'], (message, result['msg'])
        assert not path.exists()
    # A leaf (not a CA) as the CA.
    run_module(capsys, module_args(tmp_path / 'leafs'))
    leafs = tmp_path / 'leafs'
    leaf = {'cert': str(leafs / 'server-node-1.pem'), 'key': str(leafs / 'server-node-1-key.pem')}
    result = run_module(capsys, module_args(path, ca_import=leaf))[0]
    assert result['failed'] is True and 'is not a CA certificate' in result['msg'] and not path.exists()
