# Copyright: rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Tests of the cluster PKI logic, with real cryptography in temporary folders."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import stat
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from ansible_collections.rax.carina.plugins.module_utils import pki

SERVERS = [
    {'name': 'node-1', 'sans': ['198.18.0.11', 'node-1.example.com']},
    {'name': 'node-2', 'sans': ['198.18.0.12', 'Node-2.Example.com', 'fd00::12']},
    {'name': 'node-3', 'common_name': 'manager-3', 'sans': ['node-3.example.com', '*.apps.example.com']},
]


def params_for(path, **overrides):
    params = {
        'path': str(path),
        'cluster_name': 'demo',
        'servers': [dict(server) for server in SERVERS],
    }
    params.update(overrides)
    return params


def load_cert(path):
    with open(path, 'rb') as handle:
        return x509.load_pem_x509_certificate(handle.read())


def load_key(path):
    with open(path, 'rb') as handle:
        return serialization.load_pem_private_key(handle.read(), password=None)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def snapshot(folder):
    """File name -> (bytes, mtime_ns, mode) of everything in the folder."""
    result = {}
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        info = os.stat(full)
        with open(full, 'rb') as handle:
            result[name] = (handle.read(), info.st_mtime_ns, stat.S_IMODE(info.st_mode))
    return result


def names(cert, oid):
    return [attribute.value for attribute in cert.subject.get_attributes_for_oid(oid)]


def ext(cert, ext_class):
    return cert.extensions.get_extension_for_class(ext_class)


def later(days):
    return pki.utcnow() + datetime.timedelta(days=days)


@pytest.fixture
def pki_dir(tmp_path):
    return tmp_path / 'pki'


@pytest.fixture
def issued(pki_dir):
    """A PKI with the CA, three servers and the admin client."""
    return pki.run(params_for(pki_dir))


# ------------------------------------------------------------------------------------------
# First issue
# ------------------------------------------------------------------------------------------


def test_first_run_issues_ca_servers_and_admin(pki_dir, issued):
    assert issued['changed'] is True
    assert issued['issued'] == ['ca', 'server:node-1', 'server:node-2', 'server:node-3', 'client:admin']
    assert issued['ca']['issued'] is True
    assert issued['ca']['reason'] == 'missing'
    assert sorted(issued['servers']) == ['node-1', 'node-2', 'node-3']
    assert sorted(issued['clients']) == ['admin']
    assert all(entry['reason'] == 'missing' for entry in issued['servers'].values())
    assert issued['removed'] == []
    assert issued['modes_fixed'] == []
    assert sorted(os.listdir(pki_dir)) == [
        'ca-key.pem', 'ca.pem', 'client-admin-key.pem', 'client-admin.pem',
        'server-node-1-key.pem', 'server-node-1.pem', 'server-node-2-key.pem', 'server-node-2.pem',
        'server-node-3-key.pem', 'server-node-3.pem',
    ]


def test_files_and_modes(pki_dir, issued):
    assert mode(pki_dir) == 0o700
    for name in os.listdir(pki_dir):
        expected = 0o600 if name.endswith('-key.pem') else 0o644
        assert mode(pki_dir / name) == expected, name
    with open(pki_dir / 'server-node-1-key.pem', 'rb') as handle:
        assert handle.read().startswith(b'-----BEGIN PRIVATE KEY-----')  # PKCS#8, unencrypted
    assert issued['servers']['node-1'] == {
        'cert': str(pki_dir / 'server-node-1.pem'),
        'key': str(pki_dir / 'server-node-1-key.pem'),
        'sans': ['198.18.0.11', 'node-1.example.com'],
        'not_after': issued['servers']['node-1']['not_after'],
        'issued': True,
        'reason': 'missing',
    }
    assert issued['clients']['admin']['key'] == str(pki_dir / 'client-admin-key.pem')
    assert 'sans' not in issued['clients']['admin']


def test_modes_ignore_umask(tmp_path):
    old = os.umask(0o077)
    try:
        pki.run(params_for(tmp_path / 'a'))
    finally:
        os.umask(0)
    try:
        pki.run(params_for(tmp_path / 'b'))
    finally:
        os.umask(old)
    for folder in ('a', 'b'):
        assert mode(tmp_path / folder) == 0o700
        assert mode(tmp_path / folder / 'ca.pem') == 0o644
        assert mode(tmp_path / folder / 'ca-key.pem') == 0o600
        assert mode(tmp_path / folder / 'server-node-1-key.pem') == 0o600


def test_ca_certificate(pki_dir, issued):
    ca = load_cert(pki_dir / 'ca.pem')
    assert names(ca, NameOID.COMMON_NAME) == ['demo CA']
    assert names(ca, NameOID.ORGANIZATION_NAME) == ['carina']
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    basic = ext(ca, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ext(ca, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ext(ca, x509.SubjectKeyIdentifier)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(ca.public_key().curve, ec.SECP256R1)
    now = pki.utcnow()
    skew = now - ca.not_valid_before_utc
    assert datetime.timedelta(minutes=4) < skew < datetime.timedelta(minutes=6)
    assert abs((ca.not_valid_after_utc - now) - datetime.timedelta(days=3650)) < datetime.timedelta(minutes=1)
    assert issued['ca']['not_after'] == ca.not_valid_after_utc.strftime('%Y-%m-%dT%H:%M:%SZ')
    fingerprint = issued['ca']['fingerprint_sha256']
    assert fingerprint == ca.fingerprint(hashes.SHA256()).hex(':').upper()
    assert issued['ca']['cert'] == str(pki_dir / 'ca.pem')


def test_server_certificate_verifies_and_has_exact_sans(pki_dir, issued):
    ca = load_cert(pki_dir / 'ca.pem')
    cert = load_cert(pki_dir / 'server-node-2.pem')
    cert.verify_directly_issued_by(ca)
    key = load_key(pki_dir / 'server-node-2-key.pem')
    assert key.public_key() == cert.public_key()

    sans = ext(cert, x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.IPAddress), key=str) == [
        ipaddress.ip_address('198.18.0.12'), ipaddress.ip_address('fd00::12')]
    assert sans.get_values_for_type(x509.DNSName) == ['node-2.example.com']
    assert len(list(sans)) == 3
    assert issued['servers']['node-2']['sans'] == ['198.18.0.12', 'fd00::12', 'node-2.example.com']

    assert names(cert, NameOID.COMMON_NAME) == ['node-2']
    eku = ext(cert, x509.ExtendedKeyUsage).value
    # A server's key proves who the server is and nothing more: it cannot act as a client.
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca, x509.SubjectKeyIdentifier).value.digest

    # Full path validation the way a TLS client would do it, by IP and by DNS name.
    verifier_ip = PolicyBuilder().store(Store([ca])).build_server_verifier(
        x509.IPAddress(ipaddress.ip_address('fd00::12')))
    verifier_ip.verify(cert, [])
    verifier_dns = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName('node-2.example.com'))
    verifier_dns.verify(cert, [])


def test_server_common_name_and_wildcard(pki_dir, issued):
    cert = load_cert(pki_dir / 'server-node-3.pem')
    assert names(cert, NameOID.COMMON_NAME) == ['manager-3']
    sans = ext(cert, x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == ['*.apps.example.com', 'node-3.example.com']
    assert sans.get_values_for_type(x509.IPAddress) == []
    ca = load_cert(pki_dir / 'ca.pem')
    PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName('web.apps.example.com')).verify(cert, [])


def test_admin_client_certificate(pki_dir, issued):
    ca = load_cert(pki_dir / 'ca.pem')
    cert = load_cert(pki_dir / 'client-admin.pem')
    cert.verify_directly_issued_by(ca)
    assert names(cert, NameOID.COMMON_NAME) == ['admin']
    assert names(cert, NameOID.ORGANIZATION_NAME) == []
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_client_organization(pki_dir):
    clients = [{'name': 'admin'}, {'name': 'kube', 'common_name': 'kubernetes-admin',
                                   'organization': ['system:masters']}]
    result = pki.run(params_for(pki_dir, clients=clients))
    assert result['issued'][-2:] == ['client:admin', 'client:kube']
    cert = load_cert(pki_dir / 'client-kube.pem')
    assert names(cert, NameOID.COMMON_NAME) == ['kubernetes-admin']
    assert names(cert, NameOID.ORGANIZATION_NAME) == ['system:masters']
    assert pki.run(params_for(pki_dir, clients=clients))['changed'] is False

    clients[1]['organization'] = ['system:masters', 'ops']
    result = pki.run(params_for(pki_dir, clients=clients))
    assert result['issued'] == ['client:kube']
    assert result['clients']['kube']['reason'] == 'subject changed'
    assert sorted(names(load_cert(pki_dir / 'client-kube.pem'), NameOID.ORGANIZATION_NAME)) == [
        'ops', 'system:masters']


def test_leaf_never_outlives_ca(pki_dir):
    result = pki.run(params_for(pki_dir, ca_valid_days=100, cert_valid_days=825))
    ca = load_cert(pki_dir / 'ca.pem')
    cert = load_cert(pki_dir / 'server-node-1.pem')
    assert cert.not_valid_after_utc == ca.not_valid_after_utc
    assert result['servers']['node-1']['not_after'] == result['ca']['not_after']
    assert pki.run(params_for(pki_dir, ca_valid_days=100, cert_valid_days=825))['changed'] is False


# ------------------------------------------------------------------------------------------
# Idempotency and reissue rules
# ------------------------------------------------------------------------------------------


def test_second_run_changes_nothing(pki_dir, issued):
    before = snapshot(pki_dir)
    time.sleep(0.01)
    again = pki.run(params_for(pki_dir), diff=True)
    assert again['changed'] is False
    assert again['issued'] == []
    assert again['ca']['issued'] is False
    assert again['ca']['fingerprint_sha256'] == issued['ca']['fingerprint_sha256']
    assert again['ca']['not_after'] == issued['ca']['not_after']
    for name, entry in again['servers'].items():
        assert entry['issued'] is False
        assert entry['reason'] is None
        assert entry['not_after'] == issued['servers'][name]['not_after']
        assert entry['sans'] == issued['servers'][name]['sans']
    assert again['diff']['before'] == again['diff']['after']
    assert snapshot(pki_dir) == before


def test_check_mode_on_empty_folder_writes_nothing(tmp_path, pki_dir):
    result = pki.run(params_for(pki_dir), check_mode=True, diff=True)
    assert result['changed'] is True
    assert result['issued'] == ['ca', 'server:node-1', 'server:node-2', 'server:node-3', 'client:admin']
    assert result['ca']['fingerprint_sha256'] is None
    assert not pki_dir.exists()
    assert os.listdir(tmp_path) == []
    assert result['diff']['before'] == ''
    expected = 'server:node-2: CN=node-2, SANs=198.18.0.12,fd00::12,node-2.example.com, not_after='
    assert expected in result['diff']['after']

    pki_dir.mkdir(mode=0o755)
    result = pki.run(params_for(pki_dir), check_mode=True)
    assert result['changed'] is True
    assert os.listdir(pki_dir) == []
    assert mode(pki_dir) == 0o755


def test_check_mode_predicts_the_real_run(pki_dir, issued):
    params = params_for(pki_dir)
    params['servers'][0]['sans'] = ['198.18.0.99']
    params['servers'].append({'name': 'node-4'})
    now = pki.utcnow()
    before = snapshot(pki_dir)
    predicted = pki.run(params, check_mode=True, diff=True, now=now)
    assert snapshot(pki_dir) == before
    real = pki.run(params, diff=True, now=now)
    assert predicted == real
    assert real['issued'] == ['server:node-1', 'server:node-4']


def test_san_change_reissues_only_that_server(pki_dir, issued):
    before = snapshot(pki_dir)
    params = params_for(pki_dir)
    params['servers'][0]['sans'] = ['198.18.0.11', 'node-1.example.com', 'node-1.internal']
    result = pki.run(params)
    assert result['changed'] is True
    assert result['issued'] == ['server:node-1']
    assert result['servers']['node-1']['reason'] == 'sans changed'
    assert result['servers']['node-1']['sans'] == ['198.18.0.11', 'node-1.example.com', 'node-1.internal']
    after = snapshot(pki_dir)
    changed = sorted(name for name in after if after[name] != before[name])
    assert changed == ['server-node-1-key.pem', 'server-node-1.pem']
    # A new key with every reissue.
    assert after['server-node-1-key.pem'][0] != before['server-node-1-key.pem'][0]


def test_san_order_and_case_do_not_matter(pki_dir, issued):
    params = params_for(pki_dir)
    params['servers'][1]['sans'] = ['FD00:0:0::12', 'node-2.EXAMPLE.com', '198.18.0.12', '198.18.0.12']
    assert pki.run(params)['changed'] is False


def test_extra_sans_go_into_every_server(pki_dir, issued):
    result = pki.run(params_for(pki_dir, extra_sans=['127.0.0.1', 'swarm.example.com']))
    assert result['issued'] == ['server:node-1', 'server:node-2', 'server:node-3']
    for name in ('node-1', 'node-2', 'node-3'):
        assert '127.0.0.1' in result['servers'][name]['sans']
        sans = ext(load_cert(pki_dir / ('server-%s.pem' % name)), x509.SubjectAlternativeName).value
        assert ipaddress.ip_address('127.0.0.1') in sans.get_values_for_type(x509.IPAddress)
        assert 'swarm.example.com' in sans.get_values_for_type(x509.DNSName)
    assert result['clients']['admin']['issued'] is False


def test_renewal_window_by_options(pki_dir):
    assert pki.run(params_for(pki_dir, cert_valid_days=10, renew_before_days=5))['changed'] is True
    old = load_cert(pki_dir / 'server-node-1.pem')
    # 10 days left, renewed when fewer than 11 are left.
    result = pki.run(params_for(pki_dir, cert_valid_days=20, renew_before_days=11))
    assert result['issued'] == ['server:node-1', 'server:node-2', 'server:node-3', 'client:admin']
    assert {entry['reason'] for entry in result['servers'].values()} == {'renewal window'}
    new = load_cert(pki_dir / 'server-node-1.pem')
    assert new.not_valid_after_utc - old.not_valid_after_utc > datetime.timedelta(days=9)
    assert pki.run(params_for(pki_dir, cert_valid_days=20, renew_before_days=11))['changed'] is False


def test_renewal_window_by_time(pki_dir, issued):
    assert pki.run(params_for(pki_dir), now=later(794))['changed'] is False
    result = pki.run(params_for(pki_dir), now=later(796))
    assert result['issued'] == ['server:node-1', 'server:node-2', 'server:node-3', 'client:admin']
    assert result['clients']['admin']['reason'] == 'renewal window'
    assert result['ca']['issued'] is False


def test_ca_renewal_reissues_every_leaf(pki_dir, issued):
    result = pki.run(params_for(pki_dir), now=later(3621))
    assert result['ca']['reason'] == 'renewal window'
    assert result['issued'] == ['ca', 'server:node-1', 'server:node-2', 'server:node-3', 'client:admin']
    assert {entry['reason'] for entry in result['servers'].values()} == {'new CA'}
    assert result['ca']['fingerprint_sha256'] != issued['ca']['fingerprint_sha256']
    ca = load_cert(pki_dir / 'ca.pem')
    load_cert(pki_dir / 'server-node-3.pem').verify_directly_issued_by(ca)


def test_missing_ca_forces_new_ca_and_leaves(pki_dir, issued):
    os.remove(pki_dir / 'ca-key.pem')
    result = pki.run(params_for(pki_dir))
    assert result['ca']['reason'] == 'missing'
    assert result['servers']['node-1']['reason'] == 'new CA'
    assert len(result['issued']) == 5


def test_cert_signed_by_another_ca_is_replaced(tmp_path, pki_dir, issued):
    other = tmp_path / 'other'
    pki.run(params_for(other))  # same cluster name, so the issuer names are equal too
    for name in ('server-node-1.pem', 'server-node-1-key.pem'):
        shutil.copy(other / name, pki_dir / name)
    result = pki.run(params_for(pki_dir))
    assert result['issued'] == ['server:node-1']
    assert result['servers']['node-1']['reason'] == 'not signed by current CA'
    load_cert(pki_dir / 'server-node-1.pem').verify_directly_issued_by(load_cert(pki_dir / 'ca.pem'))


def test_key_mismatch_and_garbage_are_reissued(pki_dir, issued):
    shutil.copy(pki_dir / 'server-node-2-key.pem', pki_dir / 'server-node-1-key.pem')
    (pki_dir / 'client-admin.pem').write_bytes(b'not a certificate')
    os.remove(pki_dir / 'server-node-3-key.pem')
    result = pki.run(params_for(pki_dir))
    assert result['issued'] == ['server:node-1', 'server:node-3', 'client:admin']
    assert result['servers']['node-1']['reason'] == 'key mismatch'
    assert result['servers']['node-3']['reason'] == 'missing'
    assert result['clients']['admin']['reason'] == 'unparseable'
    assert pki.run(params_for(pki_dir))['changed'] is False


def test_usage_change_reissues(pki_dir, issued):
    """A leaf with the right subject and SANs, but without serverAuth, is reissued."""
    ca = load_cert(pki_dir / 'ca.pem')
    ca_key = load_key(pki_dir / 'ca-key.pem')
    key = pki.generate_key('ecdsa', 2048)
    sans = frozenset(pki.normalize_san(value) for value in SERVERS[0]['sans'])
    wrong = pki.LeafSpec('client', 'node-1', 'node-1', (), sans)
    now = pki.utcnow()
    cert = pki.build_leaf_cert(wrong, key, ca, ca_key, not_before=now, not_after=later(100))
    (pki_dir / 'server-node-1.pem').write_bytes(pki.cert_to_pem(cert))
    (pki_dir / 'server-node-1-key.pem').write_bytes(pki.key_to_pem(key))
    result = pki.run(params_for(pki_dir))
    assert result['issued'] == ['server:node-1']
    assert result['servers']['node-1']['reason'] == 'usage changed'
    eku = ext(load_cert(pki_dir / 'server-node-1.pem'), x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku


def test_diff_marks_unparseable_certificate(pki_dir, issued):
    (pki_dir / 'server-node-2.pem').write_bytes(b'garbage')
    result = pki.run(params_for(pki_dir), check_mode=True, diff=True)
    assert 'server:node-2: unparseable\n' in result['diff']['before']
    assert result['servers']['node-2']['reason'] == 'unparseable'


def test_subject_change_reissues(pki_dir, issued):
    params = params_for(pki_dir)
    params['servers'][0]['common_name'] = 'manager-1'
    result = pki.run(params)
    assert result['issued'] == ['server:node-1']
    assert result['servers']['node-1']['reason'] == 'subject changed'


def test_key_file_mode_is_fixed(pki_dir, issued):
    os.chmod(pki_dir / 'server-node-1-key.pem', 0o644)
    os.chmod(pki_dir / 'ca-key.pem', 0o640)
    before = snapshot(pki_dir)
    checked = pki.run(params_for(pki_dir), check_mode=True)
    assert checked['changed'] is True
    assert mode(pki_dir / 'server-node-1-key.pem') == 0o644
    result = pki.run(params_for(pki_dir))
    assert result['changed'] is True
    assert result['issued'] == []
    assert result['modes_fixed'] == [str(pki_dir / 'ca-key.pem'), str(pki_dir / 'server-node-1-key.pem')]
    assert checked['modes_fixed'] == result['modes_fixed']
    assert mode(pki_dir / 'server-node-1-key.pem') == 0o600
    assert mode(pki_dir / 'ca-key.pem') == 0o600
    after = snapshot(pki_dir)
    assert {name: value[0] for name, value in after.items()} == {name: value[0] for name, value in before.items()}
    assert pki.run(params_for(pki_dir))['changed'] is False


def test_rsa_keys_and_switching_key_type(pki_dir, issued):
    result = pki.run(params_for(pki_dir, key_type='rsa'))
    assert result['ca']['reason'] == 'key type changed'
    assert result['servers']['node-1']['reason'] == 'new CA'
    assert len(result['issued']) == 5
    for name in ('ca-key.pem', 'server-node-1-key.pem', 'client-admin-key.pem'):
        key = load_key(pki_dir / name)
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == 2048
    cert = load_cert(pki_dir / 'server-node-1.pem')
    assert ext(cert, x509.KeyUsage).value.key_encipherment
    cert.verify_directly_issued_by(load_cert(pki_dir / 'ca.pem'))
    assert pki.run(params_for(pki_dir, key_type='rsa'))['changed'] is False

    # A new size reissues the leaves and keeps the CA.
    result = pki.run(params_for(pki_dir, key_type='rsa', rsa_key_size=3072))
    assert result['ca']['issued'] is False
    assert result['servers']['node-1']['reason'] == 'key type changed'
    assert load_key(pki_dir / 'server-node-1-key.pem').key_size == 3072

    result = pki.run(params_for(pki_dir))
    assert result['ca']['reason'] == 'key type changed'
    assert isinstance(load_key(pki_dir / 'server-node-2-key.pem'), ec.EllipticCurvePrivateKey)


# ------------------------------------------------------------------------------------------
# Prune and absent
# ------------------------------------------------------------------------------------------


def test_prune_removes_dropped_server(pki_dir, issued):
    params = params_for(pki_dir, servers=[dict(server) for server in SERVERS[:2]])
    kept = pki.run(params)
    assert kept['changed'] is False
    assert (pki_dir / 'server-node-3.pem').exists()

    (pki_dir / 'notes.txt').write_text('kept')
    checked = pki.run(dict(params, prune=True), check_mode=True, diff=True)
    assert checked['changed'] is True
    assert 'server:node-3: CN=manager-3' in checked['diff']['before']
    assert 'server:node-3' not in checked['diff']['after']
    assert (pki_dir / 'server-node-3.pem').exists()

    result = pki.run(dict(params, prune=True))
    assert result['changed'] is True
    assert result['removed'] == [str(pki_dir / 'server-node-3-key.pem'), str(pki_dir / 'server-node-3.pem')]
    assert result['removed'] == checked['removed']
    assert sorted(os.listdir(pki_dir)) == [
        'ca-key.pem', 'ca.pem', 'client-admin-key.pem', 'client-admin.pem', 'notes.txt',
        'server-node-1-key.pem', 'server-node-1.pem', 'server-node-2-key.pem', 'server-node-2.pem',
    ]
    assert pki.run(dict(params, prune=True))['changed'] is False


def test_prune_removes_dropped_client(pki_dir, issued):
    result = pki.run(params_for(pki_dir, clients=[{'name': 'ops'}], prune=True))
    assert result['issued'] == ['client:ops']
    assert result['removed'] == [str(pki_dir / 'client-admin-key.pem'), str(pki_dir / 'client-admin.pem')]


def test_absent_removes_everything(pki_dir, issued):
    checked = pki.run(params_for(pki_dir, state='absent'), check_mode=True, diff=True)
    assert checked['changed'] is True
    assert len(os.listdir(pki_dir)) == 10
    assert checked['diff']['after'] == ''
    assert checked['diff']['before'].startswith('ca: CN=demo CA, O=carina, not_after=')

    result = pki.run(params_for(pki_dir, state='absent'))
    assert result['changed'] is True
    assert result['removed'] == checked['removed']
    assert result['removed'][-1] == str(pki_dir)
    assert len(result['removed']) == 11
    assert result['ca'] is None
    assert result['issued'] == []
    assert not pki_dir.exists()

    again = pki.run(params_for(pki_dir, state='absent'))
    assert again['changed'] is False
    assert again['removed'] == []


def test_absent_keeps_foreign_files(pki_dir, issued):
    (pki_dir / 'README').write_text('mine')
    result = pki.run(params_for(pki_dir, state='absent'))
    assert result['changed'] is True
    assert str(pki_dir) not in result['removed']
    assert os.listdir(pki_dir) == ['README']


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(('overrides', 'message'), [
    ({'servers': [{'name': 'bad name'}]},
     "servers[0].name 'bad name' is invalid: use only letters, digits"),
    ({'servers': [{'name': '../escape'}]}, "servers[0].name '../escape' is invalid"),
    ({'servers': [{'name': 'a'}, {'name': 'a'}]}, "servers[1].name 'a' is a duplicate of servers[0].name"),
    ({'clients': [{'name': 'x'}, {'name': 'x'}]}, "clients[1].name 'x' is a duplicate of clients[0].name"),
    ({'servers': [{'name': 'Node-1'}, {'name': 'node-1'}]},
     "servers[1].name 'node-1' is a duplicate of servers[0].name; names must be unique (ignoring case)"),
    ({'servers': [{'name': 'a-key'}, {'name': 'a'}]},
     "servers[0].name 'a-key' clashes with the key file of server 'a' (server-a-key.pem); rename one of them"),
    ({'servers': [{'name': 'a', 'sans': ['foo..bar']}]}, "servers[0].sans[0] 'foo..bar' is invalid"),
    ({'servers': [{'name': 'a', 'sans': ['ok.example', 'a.*.example.com']}]},
     "servers[0].sans[1] 'a.*.example.com' is invalid: it is neither an IP address nor a valid DNS name: "
     "a wildcard '*' is only allowed as the whole first label"),
    ({'servers': [{'name': 'a', 'sans': ['*']}]}, "a wildcard '*' is only allowed as the whole first label"),
    ({'servers': [{'name': 'a', 'sans': ['198.18.0.300']}]}, 'looks like an IPv4 address but is not a valid one'),
    ({'servers': [{'name': 'a', 'sans': ['198.18.0.0/24']}]}, 'is not a valid IP address'),
    ({'servers': [{'name': 'a', 'sans': ['-node.example.com']}]}, "label '-node' may contain only letters"),
    ({'servers': [{'name': 'a', 'sans': ['node_1.example.com']}]}, "label 'node_1'"),
    ({'servers': [{'name': 'a', 'sans': ['node.example.com.']}]}, 'remove the trailing dot'),
    ({'servers': [{'name': 'a', 'sans': ['x' * 64 + '.example']}]}, 'is longer than 63 characters'),
    ({'extra_sans': ['ok.example', 'bad host']}, "extra_sans[1] 'bad host' is invalid"),
    ({'servers': [{'name': 'a', 'common_name': 'c' * 65}]}, 'servers[0].common_name is 65 characters long'),
    ({'servers': [{'name': 'n' * 65}]}, 'servers[0].common_name (defaults to name) is 65 characters long'),
    ({'clients': [{'name': 'k', 'organization': ['']}]}, 'clients[0].organization[0] must be a non-empty string'),
    ({'cluster_name': 'c' * 62}, 'cluster_name is 62 characters long; shorten it to at most 61'),
    ({'cluster_name': ''}, 'cluster_name must be a non-empty string'),
    ({'cert_valid_days': 0}, 'cert_valid_days is 0; it must be at least 1'),
    ({'ca_valid_days': -5}, 'ca_valid_days is -5; it must be at least 1'),
    ({'renew_before_days': -1}, 'renew_before_days is -1; it must be at least 0'),
    ({'renew_before_days': 825},
     'renew_before_days (825) must be smaller than cert_valid_days (825); '
     'lower renew_before_days or raise cert_valid_days'),
    ({'ca_valid_days': 20, 'cert_valid_days': 10, 'renew_before_days': 20},
     'renew_before_days (20) must be smaller than ca_valid_days (20)'),
    ({'key_type': 'dsa'}, 'key_type must be one of ecdsa, rsa'),
    ({'rsa_key_size': 1024}, 'rsa_key_size must be one of 2048, 3072, 4096'),
    ({'state': 'gone'}, 'state must be one of present, absent'),
])
def test_invalid_input_fails_and_writes_nothing(tmp_path, pki_dir, overrides, message):
    with pytest.raises(pki.PKIValidationError) as raised:
        pki.run(params_for(pki_dir, **overrides))
    assert message in str(raised.value)
    assert os.listdir(tmp_path) == []


def test_all_problems_are_reported_together(pki_dir, issued):
    before = snapshot(pki_dir)
    params = params_for(pki_dir, cert_valid_days=0, extra_sans=['bad host'])
    params['servers'].append({'name': 'node-1'})
    with pytest.raises(pki.PKIValidationError) as raised:
        pki.run(params)
    assert len(raised.value.errors) == 3
    assert snapshot(pki_dir) == before


def test_path_that_is_a_file_fails(tmp_path):
    target = tmp_path / 'file'
    target.write_text('x')
    with pytest.raises(pki.PKIValidationError, match='exists and is not a directory'):
        pki.run(params_for(target))


@pytest.mark.parametrize(('value', 'expected'), [
    ('198.18.1.3', ('ip', ipaddress.ip_address('198.18.1.3'))),
    ('2001:DB8::1', ('ip', ipaddress.ip_address('2001:db8::1'))),
    ('Node-1.Example.COM', ('dns', 'node-1.example.com')),
    ('localhost', ('dns', 'localhost')),
    ('*.apps.example.com', ('dns', '*.apps.example.com')),
    ('1node.example.com', ('dns', '1node.example.com')),
])
def test_normalize_san(value, expected):
    assert pki.normalize_san(value) == expected


@pytest.mark.parametrize('value', ['', 'fe80::1%eth0', 'a..b', 'a.b.', '*.', 'x.*', 'a*.b', '1.2.3', 'a.123',
                                   'host:80', 'a b', 'x' * 254])
def test_normalize_san_rejects(value):
    with pytest.raises(ValueError, match=r"\S"):
        pki.normalize_san(value)


# ------------------------------------------------------------------------------------------
# Secrets and speed
# ------------------------------------------------------------------------------------------


def test_no_private_key_in_return_values(tmp_path, pki_dir):
    results = [
        pki.run(params_for(pki_dir), diff=True),
        pki.run(params_for(pki_dir, key_type='rsa'), diff=True),
        pki.run(params_for(pki_dir, key_type='rsa'), diff=True, check_mode=True),
        pki.run(params_for(pki_dir, state='absent'), diff=True),
    ]
    pki.run(params_for(tmp_path / 'keep'))
    with open(tmp_path / 'keep' / 'ca-key.pem', 'rb') as handle:
        key_bytes = handle.read()
    results.append(pki.run(params_for(tmp_path / 'keep'), diff=True))
    text = json.dumps(results)
    assert 'PRIVATE KEY' not in text
    assert 'BEGIN' not in text
    body = key_bytes.decode().splitlines()[1]
    assert body not in text


def test_hundred_servers_issue_fast(pki_dir):
    servers = [{'name': 'node-%03d' % index, 'sans': ['10.1.%d.%d' % (index // 250, index % 250 + 1),
                                                      'node-%03d.example.com' % index]}
               for index in range(100)]
    params = params_for(pki_dir, servers=servers, extra_sans=['127.0.0.1'])
    started = time.perf_counter()
    result = pki.run(params)
    elapsed = time.perf_counter() - started
    print('100 server certificates (+ CA, admin) issued in %.3f s' % elapsed)
    assert len(result['issued']) == 102
    assert elapsed < 10

    started = time.perf_counter()
    again = pki.run(params)
    print('idempotent run over 100 server certificates in %.3f s' % (time.perf_counter() - started))
    assert again['changed'] is False


def test_peer_certificate_is_server_and_client(pki_dir):
    servers = [{'name': 'etcd-1', 'sans': ['198.18.0.11'], 'usage': 'peer'}, {'name': 'api-1', 'sans': ['198.18.0.11']}]
    pki.run(params_for(pki_dir, servers=servers, clients=[]))
    peer = ext(load_cert(pki_dir / 'server-etcd-1.pem'), x509.ExtendedKeyUsage).value
    assert set(peer) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    server = ext(load_cert(pki_dir / 'server-api-1.pem'), x509.ExtendedKeyUsage).value
    assert list(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # Turning a peer into a plain server (or back) reissues it, and only it.
    servers[0]['usage'] = 'server'
    result = pki.run(params_for(pki_dir, servers=servers, clients=[]))
    assert result['issued'] == ['server:etcd-1']
    assert result['servers']['etcd-1']['reason'] == 'usage changed'
    assert pki.run(params_for(pki_dir, servers=servers, clients=[]))['changed'] is False


def test_server_certificate_with_client_auth_is_reissued(pki_dir, issued):
    """Certificates of an older release (serverAuth and clientAuth) are narrowed on the next run."""
    ca = load_cert(pki_dir / 'ca.pem')
    ca_key = load_key(pki_dir / 'ca-key.pem')
    key = pki.generate_key('ecdsa', 2048)
    sans = frozenset(pki.normalize_san(value) for value in SERVERS[0]['sans'])
    old = pki.LeafSpec('server', 'node-1', 'node-1', (), sans, usage='peer')
    cert = pki.build_leaf_cert(old, key, ca, ca_key, not_before=pki.utcnow(), not_after=later(100))
    (pki_dir / 'server-node-1.pem').write_bytes(pki.cert_to_pem(cert))
    (pki_dir / 'server-node-1-key.pem').write_bytes(pki.key_to_pem(key))
    result = pki.run(params_for(pki_dir))
    assert result['issued'] == ['server:node-1'] and result['servers']['node-1']['reason'] == 'usage changed'


@pytest.mark.parametrize('entry, message', [
    ({'name': 'x', 'usage': 'client'}, 'servers[0].usage must be one of server, peer'),
])
def test_bad_server_usage(pki_dir, entry, message):
    with pytest.raises(pki.PKIValidationError) as err:
        pki.run(params_for(pki_dir, servers=[entry]))
    assert message in str(err.value)
    assert not pki_dir.exists()


def test_client_usage_refused(pki_dir):
    with pytest.raises(pki.PKIValidationError) as err:
        pki.run(params_for(pki_dir, clients=[{'name': 'a', 'usage': 'peer'}]))
    assert 'clients[0].usage is only supported for servers' in str(err.value)


def test_keypair_made_once_and_kept(pki_dir):
    params = params_for(pki_dir, servers=[], clients=[], keypairs=[{'name': 'service-account'}])
    first = pki.run(params)
    pair = first['keypairs']['service-account']
    assert first['changed'] and first['issued'] == ['ca', 'keypair:service-account']
    assert pair == {'key': str(pki_dir / 'keypair-service-account-key.pem'),
                    'public': str(pki_dir / 'keypair-service-account.pub'), 'issued': True, 'reason': 'missing'}
    assert mode(pair['key']) == 0o600 and mode(pair['public']) == 0o644
    key = load_key(pair['key'])
    with open(pair['public'], 'rb') as handle:
        public = serialization.load_pem_public_key(handle.read())
    assert public == key.public_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    # Kept as is: a second run changes nothing, and no renewal window applies to it.
    before = snapshot(pki_dir)
    again = pki.run(params, now=later(5000))
    assert again['keypairs']['service-account']['reason'] is None
    assert 'keypair:service-account' not in again['issued']
    assert snapshot(pki_dir)['keypair-service-account-key.pem'] == before['keypair-service-account-key.pem']


def test_keypair_public_key_rewritten_from_the_key(pki_dir):
    params = params_for(pki_dir, servers=[], clients=[], keypairs=[{'name': 'sa'}])
    pki.run(params)
    key_bytes = (pki_dir / 'keypair-sa-key.pem').read_bytes()
    (pki_dir / 'keypair-sa.pub').write_bytes(b'stale')
    os.chmod(pki_dir / 'keypair-sa-key.pem', 0o644)
    check = pki.run(params, check_mode=True)
    assert check['changed'] and check['keypairs']['sa']['reason'] == 'public key rewritten'
    assert (pki_dir / 'keypair-sa.pub').read_bytes() == b'stale'
    result = pki.run(params)
    assert result['keypairs']['sa'] == {'key': str(pki_dir / 'keypair-sa-key.pem'),
                                        'public': str(pki_dir / 'keypair-sa.pub'),
                                        'issued': False, 'reason': 'public key rewritten'}
    assert result['modes_fixed'] == [str(pki_dir / 'keypair-sa-key.pem')]
    assert (pki_dir / 'keypair-sa-key.pem').read_bytes() == key_bytes
    assert mode(pki_dir / 'keypair-sa-key.pem') == 0o600
    public = serialization.load_pem_public_key((pki_dir / 'keypair-sa.pub').read_bytes())
    assert public == load_key(pki_dir / 'keypair-sa-key.pem').public_key()
    assert pki.run(params)['changed'] is False


def test_keypair_unreadable_key_is_replaced(pki_dir):
    params = params_for(pki_dir, servers=[], clients=[], keypairs=[{'name': 'sa'}])
    pki.run(params)
    (pki_dir / 'keypair-sa-key.pem').write_bytes(b'garbage')
    result = pki.run(params)
    assert result['keypairs']['sa']['reason'] == 'unparseable' and result['keypairs']['sa']['issued']
    load_key(pki_dir / 'keypair-sa-key.pem')


def test_keypairs_pruned_and_removed_with_the_pki(pki_dir):
    pki.run(params_for(pki_dir, servers=[], clients=[], keypairs=[{'name': 'a'}, {'name': 'b'}]))
    result = pki.run(params_for(pki_dir, servers=[], clients=[], keypairs=[{'name': 'a'}], prune=True))
    assert result['removed'] == [str(pki_dir / 'keypair-b-key.pem'), str(pki_dir / 'keypair-b.pub')]
    gone = pki.run(params_for(pki_dir, state='absent'))
    assert str(pki_dir / 'keypair-a-key.pem') in gone['removed'] and not pki_dir.exists()


@pytest.mark.parametrize('keypairs, message', [
    ('sa', 'keypairs must be a list of dictionaries'),
    ([{'name': 'a'}, {'name': 'a'}], 'keypairs[1]'),
    ([{'name': '../x'}], 'keypairs[0]'),
])
def test_bad_keypairs(pki_dir, keypairs, message):
    with pytest.raises(pki.PKIValidationError) as err:
        pki.run(params_for(pki_dir, keypairs=keypairs))
    assert message in str(err.value)
    assert not pki_dir.exists()
