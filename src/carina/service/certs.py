"""Client certificates signed by a cluster's CA for the CSRs Magnum's clients send (`coe cluster config`)."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from carina.errors import CarinaError

VALID_DAYS = 365  # a signed client certificate's life, cut at the CA's end
MAX_CSR = 16384  # bytes of PEM


def ca_files(state_dir: Path) -> tuple[Path, Path]:
    """The cluster CA that clients' certificates chain to (the first CA of the COE's contract)."""
    return state_dir / "pki" / "ca.pem", state_dir / "pki" / "ca-key.pem"


def ca_pem(state_dir: Path) -> str:
    cert, _key = ca_files(state_dir)
    try:
        return cert.read_text()
    except OSError as exc:
        raise CarinaError("the cluster has no CA yet; wait for its create to make one") from exc


def sign(state_dir: Path, csr_pem: str) -> str:
    """A client certificate for the CSR's subject and key, signed by the cluster CA: clientAuth only, not a CA.

    Refused: a CSR that is not one, whose signature does not match its key, or whose key is weak (RSA under
    2048 bits, EC off the NIST P-256/384/521 curves, any other type).
    """
    if not isinstance(csr_pem, str) or not csr_pem.strip():
        raise CarinaError("csr: a certificate signing request in PEM")
    if len(csr_pem) > MAX_CSR:
        raise CarinaError(f"csr: at most {MAX_CSR} characters")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise CarinaError("csr: not a PEM certificate signing request") from exc
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature, TypeError):
        valid = False
    if not valid:
        raise CarinaError("csr: its signature does not match its public key")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CarinaError(f"csr: an RSA key of {key.key_size} bits; use 2048 or more")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise CarinaError(f"csr: an EC key on {key.curve.name}; use P-256, P-384 or P-521")
    else:
        raise CarinaError("csr: only RSA and EC keys are signed")
    if not csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        raise CarinaError("csr: the subject has no common name (CN)")
    cert_file, key_file = ca_files(state_dir)
    try:
        ca = x509.load_pem_x509_certificate(cert_file.read_bytes())
        ca_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CarinaError("the cluster has no usable CA yet; wait for its create to make one") from exc
    now = datetime.datetime.now(datetime.UTC)
    end = min(now + datetime.timedelta(days=VALID_DAYS), ca.not_valid_after_utc)
    digital = isinstance(key, ec.EllipticCurvePublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=not digital, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
