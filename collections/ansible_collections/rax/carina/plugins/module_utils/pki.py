# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PKI of one cluster CA: the CA, server (or peer) certificates, client certificates and bare key pairs.

Everything here is plain Python over the ``cryptography`` package, so that it can be used and
tested without ``AnsibleModule``. ``run()`` is the entry point the ``cluster_pki`` module calls.

Files in the PKI folder::

    ca.pem  ca-key.pem
    server-<name>.pem  server-<name>-key.pem
    client-<name>.pem  client-<name>-key.pem
    keypair-<name>.pub  keypair-<name>-key.pem   (a key pair with no certificate, e.g. service-account signing)

Private keys are never returned, logged or put into exception messages.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import stat

from ansible_collections.rax.carina.plugins.module_utils.files import read_bytes, write_atomic

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as _import_error:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = _import_error
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None


KEY_TYPES = ('ecdsa', 'rsa')
RSA_KEY_SIZES = (2048, 3072, 4096)
STATES = ('present', 'absent')
# What a server certificate proves: `server` only serverAuth (a server's key cannot act as a client
# of its peers), `peer` serverAuth and clientAuth (members that dial each other, such as etcd's).
USAGES = ('server', 'peer')
MAX_VALID_DAYS = 36500  # 100 years; keeps dates far from datetime's limits
CLOCK_SKEW = datetime.timedelta(minutes=5)

CA_CERT = 'ca.pem'
CA_KEY = 'ca-key.pem'
CA_IMPORTED = 'ca.imported'  # present when the CA was made elsewhere (ca_import): never reissued here
CA_ORGANIZATION = 'carina'

KEY_MODE = 0o600
CERT_MODE = 0o644
DIR_MODE = 0o700

MAX_CN_LENGTH = 64  # ub-common-name and ub-organization-name in RFC 5280
MAX_NAME_LENGTH = 128

_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*')
_DNS_LABEL_RE = re.compile(r'[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?')
_LEAF_FILE_RE = re.compile(r'(server|client)-[A-Za-z0-9][A-Za-z0-9_.-]*\.pem')
_KEYPAIR_FILE_RE = re.compile(r'keypair-[A-Za-z0-9][A-Za-z0-9_.-]*(?:\.pub|-key\.pem)')
_TEMP_FILE_RE = re.compile(
    r'\.(?:ca|ca-key|(?:server|client)-[A-Za-z0-9][A-Za-z0-9_.-]*|keypair-[A-Za-z0-9][A-Za-z0-9_.-]*)'
    r'\.(?:pem|pub)\.[0-9a-f]{16}\.tmp')

DEFAULT_CLIENTS = ({'name': 'admin', 'common_name': 'admin'},)


class PKIValidationError(ValueError):
    """The input is invalid; ``errors`` lists every problem, each saying what to change."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__('; '.join(self.errors))


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


_WILDCARD_MESSAGE = ("a wildcard '*' is only allowed as the whole first label, followed by more labels "
                     '(like *.example.com)')


def _dns_label_error(index, label, count):
    if label == '*':
        return None if index == 0 and count > 1 else _WILDCARD_MESSAGE
    checks = (
        (not label, 'it has an empty label (a leading dot or two dots in a row)'),
        ('*' in label, _WILDCARD_MESSAGE),
        (len(label) > 63, "label '%s' is longer than 63 characters" % label),
        (not _DNS_LABEL_RE.fullmatch(label),
         "label '%s' may contain only letters, digits and '-', and must not start or end with '-'" % label),
    )
    for failed, message in checks:
        if failed:
            return message
    return None


def dns_name_error(name):
    """Return why ``name`` is not a valid DNS name for a certificate, or None if it is."""
    checks = (
        (not name, 'it is empty'),
        (len(name) > 253, 'it is longer than 253 characters'),
        (name.endswith('.'), 'remove the trailing dot'),
    )
    for failed, message in checks:
        if failed:
            return message
    labels = name.split('.')
    for index, label in enumerate(labels):
        message = _dns_label_error(index, label, len(labels))
        if message:
            return message
    if all(label.isdigit() for label in labels):
        return 'it looks like an IPv4 address but is not a valid one'
    if labels[-1].isdigit():
        return 'its last label must not be all digits'
    return None


def normalize_san(value):
    """Turn a SAN string into ``('ip', ip_address)`` or ``('dns', lower-case name)``.

    Raises ValueError with the reason when the string is neither.
    """
    if not isinstance(value, str):
        raise ValueError('it must be a string')
    if '%' in value:
        raise ValueError('scoped IPv6 addresses (with a %zone) are not supported')
    try:
        return ('ip', ipaddress.ip_address(value))
    except ValueError:
        pass
    if ':' in value or '/' in value:
        raise ValueError('it is not a valid IP address (give a single address, no prefix length or port)')
    reason = dns_name_error(value)
    if reason:
        raise ValueError('it is neither an IP address nor a valid DNS name: %s' % reason)
    return ('dns', value.lower())


def san_to_str(san):
    """String form of a normalized SAN."""
    return str(san[1])


def sans_to_strs(sans):
    """Sorted list of strings of a set of normalized SANs."""
    return sorted(san_to_str(san) for san in sans)


class LeafSpec:
    """One requested leaf certificate (a server or a client)."""

    def __init__(self, kind, name, common_name, organization=(), sans=frozenset(), *, usage='server'):
        self.kind = kind
        self.usage = usage if kind == 'server' else 'client'
        self.name = name
        self.common_name = common_name
        self.organization = tuple(organization)
        self.sans = frozenset(sans)

    @property
    def label(self):
        return '%s:%s' % (self.kind, self.name)

    @property
    def cert_file(self):
        return '%s-%s.pem' % (self.kind, self.name)

    @property
    def key_file(self):
        return '%s-%s-key.pem' % (self.kind, self.name)


class Config:
    """Validated and normalized module input."""

    def __init__(self, **kwargs):
        self.path = kwargs['path']
        self.cluster_name = kwargs['cluster_name']
        self.key_type = kwargs['key_type']
        self.rsa_key_size = kwargs['rsa_key_size']
        self.ca_valid_days = kwargs['ca_valid_days']
        self.cert_valid_days = kwargs['cert_valid_days']
        self.renew_before_days = kwargs['renew_before_days']
        self.servers = kwargs['servers']
        self.clients = kwargs['clients']
        self.keypairs = kwargs.get('keypairs', [])
        self.prune = kwargs['prune']
        self.state = kwargs['state']
        self.ca_import = kwargs.get('ca_import')

    @property
    def ca_common_name(self):
        return '%s CA' % self.cluster_name


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(errors, where, value, max_length, what='it'):
    if not isinstance(value, str) or not value:
        errors.append('%s must be a non-empty string' % where)
        return False
    if len(value) > max_length:
        errors.append('%s is %d characters long; shorten %s to at most %d characters'
                      % (where, len(value), what, max_length))
        return False
    return True


def _check_name(errors, where, name):
    if not isinstance(name, str) or not name:
        errors.append('%s is required and must be a non-empty string' % where)
        return False
    if len(name) > MAX_NAME_LENGTH:
        errors.append('%s is %d characters long; use at most %d' % (where, len(name), MAX_NAME_LENGTH))
        return False
    if not _NAME_RE.fullmatch(name):
        errors.append("%s '%s' is invalid: use only letters, digits, '_', '.' and '-', "
                      'starting with a letter or digit' % (where, name))
        return False
    return True


def _check_sans(errors, where, values):
    sans = set()
    if values is None:
        return sans
    if not isinstance(values, (list, tuple)):
        errors.append('%s must be a list of strings' % where)
        return sans
    for index, value in enumerate(values):
        try:
            sans.add(normalize_san(value))
        except ValueError as exc:
            errors.append("%s[%d] '%s' is invalid: %s" % (where, index, value, exc))
    return sans


def _check_days(errors, params, key, minimum):
    value = params.get(key)
    if not _is_int(value):
        errors.append('%s must be an integer' % key)
        return None
    if value < minimum:
        errors.append('%s is %d; it must be at least %d' % (key, value, minimum))
        return None
    if value > MAX_VALID_DAYS:
        errors.append('%s is %d; it must be at most %d' % (key, value, MAX_VALID_DAYS))
        return None
    return value


def _check_unique_name(errors, where, name, seen):
    """The entry's name, or None (with an error) when it is invalid or used twice.

    Names that differ only in case are duplicates: their files would clash on a case-insensitive
    file system (macOS controllers).
    """
    if not _check_name(errors, where + '.name', name):
        return None
    folded = name.lower()
    if folded in seen:
        errors.append("%s.name '%s' is a duplicate of %s.name; names must be unique (ignoring case)"
                      % (where, name, seen[folded]))
        return None
    seen[folded] = where
    return name


def _check_key_file_clashes(errors, kind, specs, seen):
    """``x-key``'s certificate file would be ``x``'s key file: refuse such pairs."""
    for spec in specs:
        other = seen.get(spec.name.lower() + '-key')
        if other is not None:
            errors.append("%s.name '%s-key' clashes with the key file of %s '%s' (%s); rename one of them"
                          % (other, spec.name, kind, spec.name, spec.key_file))


def _check_common_name(errors, where, common_name, name):
    if common_name is not None:
        return common_name if _check_text(errors, where + '.common_name', common_name, MAX_CN_LENGTH) else None
    if name is None:  # the name's own error was reported already
        return None
    if _check_text(errors, where + '.common_name (defaults to name)', name, MAX_CN_LENGTH,
                   'the name or set a shorter common_name'):
        return name
    return None


def _check_organization(errors, where, kind, organization):
    if not organization:
        return ()
    if kind != 'client':
        errors.append('%s.organization is only supported for clients; remove it' % where)
        return None
    if not isinstance(organization, (list, tuple)):
        errors.append('%s.organization must be a list of strings' % where)
        return None
    valid = True
    for index, org in enumerate(organization):
        valid = _check_text(errors, '%s.organization[%d]' % (where, index), org, MAX_CN_LENGTH) and valid
    return tuple(organization) if valid else None


def _check_leaves(errors, kind, option, entries, extra_sans):
    """LeafSpec list of ``servers`` or ``clients``; problems are appended to ``errors``."""
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        errors.append('%s must be a list of dictionaries' % option)
        return []
    specs = []
    seen = {}
    for index, entry in enumerate(entries):
        where = '%s[%d]' % (option, index)
        if not isinstance(entry, dict):
            errors.append('%s must be a dictionary with at least a name' % where)
            continue
        name = _check_unique_name(errors, where, entry.get('name'), seen)
        common_name = _check_common_name(errors, where, entry.get('common_name'), name)
        organization = _check_organization(errors, where, kind, entry.get('organization'))
        sans = frozenset()
        usage = entry.get('usage') or 'server'
        if kind == 'server':
            sans = frozenset(_check_sans(errors, where + '.sans', entry.get('sans'))) | extra_sans
            if usage not in USAGES:
                errors.append('%s.usage must be one of %s, not %r' % (where, ', '.join(USAGES), usage))
        else:
            if entry.get('sans'):
                errors.append('%s.sans is only supported for servers; remove it' % where)
            if entry.get('usage'):
                errors.append('%s.usage is only supported for servers; remove it' % where)
        if name is not None and common_name is not None and organization is not None:
            specs.append(LeafSpec(kind, name, common_name, organization, sans, usage=usage))
    _check_key_file_clashes(errors, kind, specs, seen)
    return specs


def _check_keypairs(errors, entries):
    """Names of the bare key pairs; problems are appended to ``errors``."""
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        errors.append('keypairs must be a list of dictionaries')
        return []
    names = []
    seen = {}
    for index, entry in enumerate(entries):
        where = 'keypairs[%d]' % index
        if not isinstance(entry, dict):
            errors.append('%s must be a dictionary with a name' % where)
            continue
        name = _check_unique_name(errors, where, entry.get('name'), seen)
        if name is not None:
            names.append(name)
    return names


def validate_params(params):
    """Check every input and return a Config; raise PKIValidationError listing all problems."""
    errors = []
    path = params.get('path')
    if not isinstance(path, str) or not path:
        errors.append('path is required and must be a non-empty string')
    cluster_name = params.get('cluster_name')
    _check_text(errors, 'cluster_name', cluster_name, MAX_CN_LENGTH - len(' CA'))

    key_type = params.get('key_type', 'ecdsa')
    if key_type not in KEY_TYPES:
        errors.append('key_type must be one of %s, not %r' % (', '.join(KEY_TYPES), key_type))
    rsa_key_size = params.get('rsa_key_size', 2048)
    if rsa_key_size not in RSA_KEY_SIZES or not _is_int(rsa_key_size):
        errors.append('rsa_key_size must be one of %s, not %r'
                      % (', '.join(str(size) for size in RSA_KEY_SIZES), rsa_key_size))

    defaults = {'ca_valid_days': 3650, 'cert_valid_days': 825, 'renew_before_days': 30}
    days_params = {key: params.get(key, value) for key, value in defaults.items()}
    ca_valid_days = _check_days(errors, days_params, 'ca_valid_days', 1)
    cert_valid_days = _check_days(errors, days_params, 'cert_valid_days', 1)
    renew_before_days = _check_days(errors, days_params, 'renew_before_days', 0)
    if renew_before_days is not None:
        if cert_valid_days is not None and renew_before_days >= cert_valid_days:
            errors.append('renew_before_days (%d) must be smaller than cert_valid_days (%d); '
                          'lower renew_before_days or raise cert_valid_days' % (renew_before_days, cert_valid_days))
        if ca_valid_days is not None and renew_before_days >= ca_valid_days:
            errors.append('renew_before_days (%d) must be smaller than ca_valid_days (%d); '
                          'lower renew_before_days or raise ca_valid_days' % (renew_before_days, ca_valid_days))

    keypairs = _check_keypairs(errors, params.get('keypairs'))
    extra_sans = frozenset(_check_sans(errors, 'extra_sans', params.get('extra_sans')))
    servers = _check_leaves(errors, 'server', 'servers', params.get('servers'), extra_sans)
    clients = params.get('clients', DEFAULT_CLIENTS)
    clients = _check_leaves(errors, 'client', 'clients', clients, frozenset())

    prune = params.get('prune', False)
    if not isinstance(prune, bool):
        errors.append('prune must be a boolean')
    state = params.get('state', 'present')
    if state not in STATES:
        errors.append('state must be one of %s, not %r' % (', '.join(STATES), state))
    ca_import = params.get('ca_import') or None
    if ca_import is not None and not (isinstance(ca_import, dict) and all(
            isinstance(ca_import.get(key), str) and ca_import.get(key) for key in ('cert', 'key'))):
        errors.append('ca_import needs cert and key, the paths of the CA certificate and its unencrypted key')

    if errors:
        raise PKIValidationError(errors)
    return Config(
        path=path, cluster_name=cluster_name, key_type=key_type, rsa_key_size=rsa_key_size,
        ca_valid_days=ca_valid_days, cert_valid_days=cert_valid_days, renew_before_days=renew_before_days,
        servers=servers, clients=clients, keypairs=keypairs, prune=prune, state=state, ca_import=ca_import,
    )


# --------------------------------------------------------------------------------------------
# Cryptography helpers
# --------------------------------------------------------------------------------------------


def utcnow():
    """Current time in UTC, whole seconds (certificates store seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def iso8601(value):
    return value.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def cert_not_after(cert):
    value = getattr(cert, 'not_valid_after_utc', None)
    if value is None:  # cryptography < 42
        value = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return value


def fingerprint_sha256(cert):
    return ':'.join('%02X' % byte for byte in bytearray(cert.fingerprint(hashes.SHA256())))


def generate_key(key_type, rsa_key_size):
    if key_type == 'rsa':
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key):
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def cert_to_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_der(public_key):
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches_cert(key, cert):
    return _public_der(key.public_key()) == _public_der(cert.public_key())


def key_is_requested_type(public_key, key_type, rsa_key_size, check_size=True):
    if key_type == 'rsa':
        return isinstance(public_key, rsa.RSAPublicKey) and (not check_size or public_key.key_size == rsa_key_size)
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    return not check_size or isinstance(public_key.curve, ec.SECP256R1)


def is_signed_by(cert, ca_cert):
    """True when ``cert`` names ``ca_cert`` as issuer and its signature verifies with the CA key."""
    if cert.issuer != ca_cert.subject:
        return False
    public_key = ca_cert.public_key()
    hash_algorithm = cert.signature_hash_algorithm
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _extension_value(cert, ext_class):
    try:
        return cert.extensions.get_extension_for_class(ext_class).value
    except x509.ExtensionNotFound:
        return None


def cert_sans(cert):
    """Normalized SAN set of a certificate (other name types are kept so that they differ)."""
    value = _extension_value(cert, x509.SubjectAlternativeName)
    sans = set()
    if value is None:
        return sans
    for general_name in value:
        if isinstance(general_name, x509.DNSName):
            sans.add(('dns', general_name.value.lower()))
        elif isinstance(general_name, x509.IPAddress):
            sans.add(('ip', general_name.value))
        else:
            sans.add(('other', repr(general_name)))
    return sans


def _subject_attributes(name):
    return sorted((attribute.oid.dotted_string, attribute.value) for attribute in name)


def _expected_subject(common_name, organization):
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organization]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_usage(digital_signature=False, key_encipherment=False, key_cert_sign=False, crl_sign=False):
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=key_encipherment,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )


def _leaf_ekus(usage):
    """Extended key usages of a leaf by its usage: server, peer or client."""
    if usage == 'server':
        return [ExtendedKeyUsageOID.SERVER_AUTH]
    if usage == 'peer':
        return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return [ExtendedKeyUsageOID.CLIENT_AUTH]


def _leaf_usage_ok(cert, usage):
    basic = _extension_value(cert, x509.BasicConstraints)
    ekus = _extension_value(cert, x509.ExtendedKeyUsage)
    if basic is None or basic.ca or ekus is None:
        return False
    return sorted(oid.dotted_string for oid in ekus) == sorted(oid.dotted_string for oid in _leaf_ekus(usage))


def build_ca_cert(key, common_name, *, not_before, not_after):
    subject = _expected_subject(common_name, [CA_ORGANIZATION])
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return builder.sign(private_key=key, algorithm=hashes.SHA256())


def build_leaf_cert(spec, key, ca_cert, ca_key, *, not_before, not_after):
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_expected_subject(spec.common_name, spec.organization))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=isinstance(public_key, rsa.RSAPublicKey)),
            critical=True)
        .add_extension(x509.ExtendedKeyUsage(_leaf_ekus(spec.usage)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    ca_ski = _extension_value(ca_cert, x509.SubjectKeyIdentifier)
    if ca_ski is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    builder = builder.add_extension(aki, critical=False)
    if spec.sans:
        names = []
        for san in sorted(spec.sans, key=lambda item: (item[0], san_to_str(item))):
            if san[0] == 'ip':
                names.append(x509.IPAddress(san[1]))
            else:
                names.append(x509.DNSName(san[1]))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(private_key=ca_key, algorithm=hashes.SHA256())


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def load_ca_import(given, now=None):
    """The CA to import (``{cert, key}`` paths): its certificate and key, once checked (a CA, unexpired, the key
    its own and unencrypted); PKIValidationError listing the problems otherwise. Writes nothing."""
    now = now or utcnow()
    cert_data, key_data = read_bytes(given['cert']), read_bytes(given['key'])
    problems = ['ca_import: %s %s does not exist' % (what, path) for what, path, data in
                (('cert', given['cert'], cert_data), ('key', given['key'], key_data)) if data is None]
    if problems:
        raise PKIValidationError(problems)
    try:
        cert = x509.load_pem_x509_certificate(cert_data)
    except (ValueError, TypeError):
        raise PKIValidationError(['ca_import: cert %s is not a PEM certificate' % given['cert']]) from None
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PKIValidationError(['ca_import: key %s is not an unencrypted PEM private key' % given['key']]) from None
    basic = _extension_value(cert, x509.BasicConstraints)
    if basic is None or not basic.ca:
        problems.append('ca_import: cert %s is not a CA certificate (basicConstraints CA:TRUE)' % given['cert'])
    if not key_matches_cert(key, cert):
        problems.append('ca_import: key %s is not the key of cert %s' % (given['key'], given['cert']))
    if cert_not_after(cert) <= now:
        problems.append('ca_import: cert %s expired on %s' % (given['cert'], iso8601(cert_not_after(cert))))
    if problems:
        raise PKIValidationError(problems)
    return cert, key


class Item:
    """A certificate/key pair in the PKI folder and what the plan decided about it."""

    def __init__(self, kind, name, cert_path, key_path, spec=None):
        self.kind = kind
        self.name = name
        self.cert_path = cert_path
        self.key_path = key_path
        self.spec = spec
        self.cert = None  # existing (or, after apply, new) certificate
        self.cert_exists = False
        self.key = None  # existing (or new) private key; never returned
        self.reason = None  # why it is (re)issued; None if it is kept
        self.fix_key_mode = False
        self.not_after = None
        self.fingerprint = None

    @property
    def label(self):
        return 'ca' if self.kind == 'ca' else '%s:%s' % (self.kind, self.name)

    @property
    def issue(self):
        return self.reason is not None

    def load(self):
        """Read the pair; return None when it looks usable, else 'missing' or 'unparseable'."""
        cert_data = read_bytes(self.cert_path)
        key_data = read_bytes(self.key_path)
        self.cert_exists = cert_data is not None
        if cert_data is not None:
            try:
                self.cert = x509.load_pem_x509_certificate(cert_data)
            except (ValueError, TypeError):
                self.cert = None
        if cert_data is None or key_data is None:
            return 'missing'
        try:
            self.key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            self.key = None
        if self.cert is None or self.key is None:
            return 'unparseable'
        if not os.path.islink(self.key_path) and file_mode(self.key_path) != KEY_MODE:
            self.fix_key_mode = True
        return None


def describe(label, cert, spec_kind=None):
    """One line of the diff for a certificate (no key material)."""
    if cert is None:
        return '%s: unparseable' % label
    parts = []
    for attribute in cert.subject:
        if attribute.oid == NameOID.COMMON_NAME:
            parts.append('CN=%s' % attribute.value)
    for attribute in cert.subject:
        if attribute.oid == NameOID.ORGANIZATION_NAME:
            parts.append('O=%s' % attribute.value)
    if spec_kind == 'server':
        parts.append('SANs=%s' % (','.join(sans_to_strs(cert_sans(cert))) or 'none'))
    parts.append('not_after=%s' % iso8601(cert_not_after(cert)))
    return '%s: %s' % (label, ', '.join(parts))


def describe_planned(item, config):
    if item.kind == 'ca' and item.cert is not None and (item.reason == 'imported' or not item.issue):
        return describe(item.label, item.cert, item.kind)
    if item.kind == 'ca':
        parts = ['CN=%s' % config.ca_common_name, 'O=%s' % CA_ORGANIZATION]
    else:
        parts = ['CN=%s' % item.spec.common_name]
        parts.extend('O=%s' % org for org in item.spec.organization)
        if item.kind == 'server':
            parts.append('SANs=%s' % (','.join(sans_to_strs(item.spec.sans)) or 'none'))
    parts.append('not_after=%s' % iso8601(item.not_after))
    return '%s: %s' % (item.label, ', '.join(parts))


# --------------------------------------------------------------------------------------------
# Planning and applying
# --------------------------------------------------------------------------------------------


class KeyPair:
    """A private key and its public key, with no certificate (a service-account signing key).

    It is kept for as long as it is readable and of the requested type: replacing it would
    invalidate everything it signed. A missing or stale public key file is rewritten from the key.
    """

    NEW_KEY_REASONS = ('missing', 'unparseable', 'key type changed')

    def __init__(self, name, key_path, public_path):
        self.name = name
        self.key_path = key_path
        self.public_path = public_path
        self.key = None
        self.reason = None
        self.fix_key_mode = False

    @property
    def changed(self):
        return self.reason is not None or self.fix_key_mode

    def _public_pem(self):
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def plan(self, config):
        data = read_bytes(self.key_path)
        if data is None:
            self.reason = 'missing'
            return
        try:
            self.key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            self.reason = 'unparseable'
            return
        if not key_is_requested_type(self.key.public_key(), config.key_type, config.rsa_key_size, check_size=False):
            self.reason = 'key type changed'
            return
        if not os.path.islink(self.key_path) and file_mode(self.key_path) != KEY_MODE:
            self.fix_key_mode = True
        if read_bytes(self.public_path) != self._public_pem():
            self.reason = 'public key rewritten'

    def apply(self, config):
        if self.reason in self.NEW_KEY_REASONS:
            self.key = generate_key(config.key_type, config.rsa_key_size)
            write_atomic(self.key_path, key_to_pem(self.key), KEY_MODE, durable=True)
            self.fix_key_mode = False
        elif self.fix_key_mode:
            os.chmod(self.key_path, KEY_MODE)
        if self.reason is not None:
            write_atomic(self.public_path, self._public_pem(), CERT_MODE, durable=True)

    def result(self):
        return {'key': self.key_path, 'public': self.public_path,
                'issued': self.reason in self.NEW_KEY_REASONS, 'reason': self.reason}


class ClusterPKI:
    """Decides what to issue, fix or remove (``plan``), then does it (``apply``)."""

    def __init__(self, config, now=None):
        self.config = config
        self.path = config.path
        self.now = (now or utcnow()).replace(microsecond=0)
        self.ca = Item('ca', 'ca', self._file(CA_CERT), self._file(CA_KEY))
        self.servers = [self._leaf_item(spec) for spec in config.servers]
        self.clients = [self._leaf_item(spec) for spec in config.clients]
        self.keypairs = [KeyPair(name, self._file('keypair-%s-key.pem' % name), self._file('keypair-%s.pub' % name))
                         for name in config.keypairs]
        self.imported = False  # the CA is one made elsewhere (ca_import now, or the marker of an earlier import)
        self.write_marker = False
        self.remove = []  # absolute paths to delete
        self.remove_dir = False
        self.diff_before = []
        self.planned = False

    def _file(self, name):
        return os.path.join(self.path, name)

    def _leaf_item(self, spec):
        return Item(spec.kind, spec.name, self._file(spec.cert_file), self._file(spec.key_file), spec)

    @property
    def leaves(self):
        return self.servers + self.clients

    # ---- plan -------------------------------------------------------------------------------

    def plan(self):
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise PKIValidationError(['path %s exists and is not a directory; choose another path' % self.path])
        if self.config.state == 'absent':
            self._plan_absent()
        else:
            self._plan_ca()
            for item in self.leaves:
                self._plan_leaf(item)
            for pair in self.keypairs:
                pair.plan(self.config)
            if self.config.prune:
                self._plan_prune()
        self.planned = True
        return self

    def _renewal_due(self, not_after):
        return self.now >= not_after - datetime.timedelta(days=self.config.renew_before_days)

    def _describe_before(self, item):
        if not item.cert_exists:
            return
        try:
            line = describe(item.label, item.cert, item.kind)
        except ValueError:  # an extension cryptography cannot decode
            line = describe(item.label, None)
        self.diff_before.append(line)

    def _ca_problem(self):
        """Why the existing, loadable CA must be replaced, or None."""
        ca = self.ca
        config = self.config
        basic = _extension_value(ca.cert, x509.BasicConstraints)
        if basic is None or not basic.ca:
            return 'not a CA'
        if not key_matches_cert(ca.key, ca.cert):
            return 'key mismatch'
        if not key_is_requested_type(ca.cert.public_key(), config.key_type, config.rsa_key_size, check_size=False):
            return 'key type changed'
        if self._renewal_due(cert_not_after(ca.cert)):
            return 'renewal window'
        return None

    def _plan_imported_ca(self):
        """A CA made elsewhere: put in place when given (ca_import), kept as it is when imported before."""
        ca = self.ca
        marker = os.path.exists(self._file(CA_IMPORTED))
        reason = ca.load()
        self._describe_before(ca)
        if self.config.ca_import:
            cert, key = load_ca_import(self.config.ca_import, self.now)
            same = (reason is None and ca.cert.public_bytes(serialization.Encoding.DER)
                    == cert.public_bytes(serialization.Encoding.DER) and key_matches_cert(ca.key, cert))
            if not same:
                ca.reason, ca.cert, ca.key, ca.fix_key_mode = 'imported', cert, key, False
            self.write_marker = not marker
        elif reason is not None or not key_matches_cert(ca.key, ca.cert):
            raise PKIValidationError(['the CA in %s was imported (ca_import) and its files are %s: import it again '
                                      '(a CA made here would not be the one the cluster\'s clients trust)'
                                      % (self.path, reason or 'not a pair')])
        self.imported = True
        ca.not_after = cert_not_after(ca.cert)
        ca.fingerprint = fingerprint_sha256(ca.cert)

    def _plan_ca(self):
        ca = self.ca
        config = self.config
        if config.ca_import or os.path.exists(self._file(CA_IMPORTED)):
            self._plan_imported_ca()
            return
        reason = ca.load()
        if reason is None:
            try:
                reason = self._ca_problem()
            except ValueError:  # an extension cryptography cannot decode
                reason = 'unparseable'
        self._describe_before(ca)
        ca.reason = reason
        if reason is None:
            ca.not_after = cert_not_after(ca.cert)
            ca.fingerprint = fingerprint_sha256(ca.cert)
        else:
            ca.fix_key_mode = False
            ca.not_after = self.now + datetime.timedelta(days=config.ca_valid_days)

    def _leaf_problem(self, item):
        """Why the existing, loadable leaf must be reissued, or None. Checks run in this order."""
        config = self.config
        spec = item.spec
        cert = item.cert
        if self.ca.issue:
            return 'new CA'
        if not key_matches_cert(item.key, cert):
            return 'key mismatch'
        if not is_signed_by(cert, self.ca.cert):
            return 'not signed by current CA'
        checks = (
            ('key type changed',
             lambda: not key_is_requested_type(cert.public_key(), config.key_type, config.rsa_key_size)),
            ('subject changed',
             lambda: _subject_attributes(cert.subject)
             != _subject_attributes(_expected_subject(spec.common_name, spec.organization))),
            ('sans changed', lambda: cert_sans(cert) != set(spec.sans)),
            ('usage changed', lambda: not _leaf_usage_ok(cert, spec.usage)),
            ('renewal window', lambda: self._renewal_due(cert_not_after(cert))),
        )
        for reason, failed in checks:
            if failed():
                return reason
        return None

    def _plan_leaf(self, item):
        config = self.config
        reason = item.load()
        if reason is None:
            try:
                reason = self._leaf_problem(item)
            except ValueError:  # an extension cryptography cannot decode
                reason = 'unparseable'
        self._describe_before(item)
        item.reason = reason
        if reason is None:
            item.not_after = cert_not_after(item.cert)
        else:
            item.fix_key_mode = False
            # A leaf never outlives its CA.
            item.not_after = min(self.now + datetime.timedelta(days=config.cert_valid_days), self.ca.not_after)

    def _listdir(self):
        try:
            return sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []

    def _plan_prune(self):
        wanted = set()
        for item in self.leaves:
            wanted.add(os.path.basename(item.cert_path))
            wanted.add(os.path.basename(item.key_path))
        for pair in self.keypairs:
            wanted.add(os.path.basename(pair.key_path))
            wanted.add(os.path.basename(pair.public_path))
        for name in self._listdir():
            if (_LEAF_FILE_RE.fullmatch(name) or _KEYPAIR_FILE_RE.fullmatch(name)) and name not in wanted:
                self._plan_removal(name)

    def _plan_removal(self, name):
        full = self._file(name)
        if os.path.isdir(full) and not os.path.islink(full):
            return
        self.remove.append(full)
        if name.endswith('.pem') and not name.endswith('-key.pem'):
            label = 'ca' if name == CA_CERT else name[:-len('.pem')].replace('-', ':', 1)
            data = read_bytes(full)
            cert = None
            if data is not None:
                try:
                    cert = x509.load_pem_x509_certificate(data)
                except (ValueError, TypeError):
                    cert = None
            self.diff_before.append(describe(label, cert, 'server' if label.startswith('server:') else None))

    def _plan_absent(self):
        if not os.path.isdir(self.path):
            return
        names = self._listdir()
        for name in names:
            if (name in (CA_CERT, CA_KEY, CA_IMPORTED) or _LEAF_FILE_RE.fullmatch(name)
                    or _KEYPAIR_FILE_RE.fullmatch(name) or _TEMP_FILE_RE.fullmatch(name)):
                self._plan_removal(name)
        self.remove_dir = len(names) == len(self.remove)

    # ---- apply ------------------------------------------------------------------------------

    @property
    def changed(self):
        if self.remove or self.remove_dir:
            return True
        if self.write_marker:
            return True
        return (any(item.issue or item.fix_key_mode for item in [self.ca, *self.leaves])
                or any(pair.changed for pair in self.keypairs))

    def _apply_ca(self, not_before):
        """A new CA made here, or the imported one put in place (and its marker)."""
        ca = self.ca
        if ca.issue:
            if not self.imported:
                ca.key = generate_key(self.config.key_type, self.config.rsa_key_size)
                ca.cert = build_ca_cert(ca.key, self.config.ca_common_name, not_before=not_before,
                                        not_after=ca.not_after)
            ca.fingerprint = fingerprint_sha256(ca.cert)
            write_atomic(ca.key_path, key_to_pem(ca.key), KEY_MODE, durable=True)
            write_atomic(ca.cert_path, cert_to_pem(ca.cert), CERT_MODE, durable=True)
        if self.write_marker:
            write_atomic(self._file(CA_IMPORTED), b'made elsewhere; rax.carina.cluster_pki never reissues it\n',
                         CERT_MODE, durable=True)

    def apply(self):
        """Write what the plan decided. Call only outside check mode."""
        if not self.planned:
            raise RuntimeError('plan() must run before apply()')
        config = self.config
        if config.state == 'present':
            if not os.path.isdir(self.path):
                os.makedirs(self.path, DIR_MODE)
                os.chmod(self.path, DIR_MODE)  # the folder is empty; only undo a narrowing umask
            not_before = self.now - CLOCK_SKEW
            ca = self.ca
            self._apply_ca(not_before)
            for item in [ca, *self.leaves]:
                if item.fix_key_mode:
                    os.chmod(item.key_path, KEY_MODE)
            for item in self.leaves:
                if not item.issue:
                    continue
                item.key = generate_key(config.key_type, config.rsa_key_size)
                item.cert = build_leaf_cert(item.spec, item.key, ca.cert, ca.key,
                                            not_before=not_before, not_after=item.not_after)
                write_atomic(item.key_path, key_to_pem(item.key), KEY_MODE)
                write_atomic(item.cert_path, cert_to_pem(item.cert), CERT_MODE)
            for pair in self.keypairs:
                pair.apply(config)
        for full in self.remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(full)
        if self.remove_dir:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(self.path)
        return self

    # ---- result -----------------------------------------------------------------------------

    def _leaf_result(self, item):
        result = {
            'cert': item.cert_path,
            'key': item.key_path,
            'not_after': iso8601(item.not_after),
            'issued': item.issue,
            'reason': item.reason,
        }
        if item.kind == 'server':
            result['sans'] = sans_to_strs(item.spec.sans)
        return result

    def result(self, diff=False):
        config = self.config
        present = config.state == 'present'
        result = {
            'changed': self.changed,
            'path': self.path,
            'removed': sorted(self.remove) + ([self.path] if self.remove_dir else []),
        }
        if present:
            result['ca'] = {
                'cert': self.ca.cert_path,
                'not_after': iso8601(self.ca.not_after),
                'fingerprint_sha256': self.ca.fingerprint,
                'issued': self.ca.issue,
                'reason': self.ca.reason,
                'imported': self.imported,
            }
            result['servers'] = {item.name: self._leaf_result(item) for item in self.servers}
            result['clients'] = {item.name: self._leaf_result(item) for item in self.clients}
            result['keypairs'] = {pair.name: pair.result() for pair in self.keypairs}
            issued = [self.ca] if self.ca.issue else []
            issued.extend(sorted((item for item in self.servers if item.issue), key=lambda item: item.name))
            issued.extend(sorted((item for item in self.clients if item.issue), key=lambda item: item.name))
            result['issued'] = [item.label for item in issued]
            result['issued'].extend('keypair:%s' % pair.name for pair in sorted(self.keypairs, key=lambda p: p.name)
                                    if pair.reason in KeyPair.NEW_KEY_REASONS)
            result['modes_fixed'] = sorted(
                [item.key_path for item in [self.ca, *self.leaves] if item.fix_key_mode]
                + [pair.key_path for pair in self.keypairs if pair.fix_key_mode])
        else:
            result.update(ca=None, servers={}, clients={}, keypairs={}, issued=[], modes_fixed=[])
        if diff:
            after = []
            if present:
                after.append(describe_planned(self.ca, config))
                after.extend(describe_planned(item, config) for item in self.leaves)
            result['diff'] = {
                'before': ''.join(line + '\n' for line in _sorted_lines(self.diff_before)),
                'after': ''.join(line + '\n' for line in _sorted_lines(after)),
            }
        return result


def _sorted_lines(lines):
    order = {'ca': 0, 'server': 1, 'client': 2}
    return sorted(lines, key=lambda line: (order.get(line.split(':', 1)[0], 3), line))


def run(params, check_mode=False, diff=False, now=None):
    """Validate ``params``, plan, apply unless ``check_mode``, and return the module result.

    Raises PKIValidationError for bad input (before anything is written) and OSError for file
    system failures.
    """
    if not HAS_CRYPTOGRAPHY:
        raise RuntimeError('the Python cryptography package is required')
    config = validate_params(params)
    pki = ClusterPKI(config, now=now).plan()
    if not check_mode:
        pki.apply()
    return pki.result(diff=diff)
