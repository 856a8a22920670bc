"""The deployment's CA and a certificate per service, in one directory.

`ensure(directory, identities)` is idempotent: a certificate that is present,
signed by the current CA, valid for a while yet and naming exactly the
expected identity and hosts is kept; anything else (missing, expired or
expiring, another CA, hosts changed) is made anew. A new CA makes every
service certificate anew. Files: `ca.pem`, `ca.key`, `NAME.pem`, `NAME.key`
(keys readable by the owner only), written atomically under a lock so that
processes starting together never read half a file.

Keys are ECDSA P-256: small, and fast to make and to handshake with.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bookstore.identity import CA_NAME, Identity

CA_VALIDITY = dt.timedelta(days=5 * 365)
CERT_VALIDITY = dt.timedelta(days=90)
RENEW_BEFORE = dt.timedelta(days=30)  # a certificate this close to its end is renewed
Clock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (directory / f"{name}.key").read_bytes(), password=None
        )
    except (OSError, ValueError):
        return None
    public = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        public, ec.EllipticCurvePublicKey
    ):
        return None
    if public.public_numbers() != key.public_key().public_numbers():
        return None  # a key of another certificate (a half-finished rotation)
    return cert, key


def _save(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(directory / f"{name}.key", pem_key, 0o600)
    _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _fresh(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _sans(identity: Identity) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.spiffe_id)]
    for host in identity.hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _san_set(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(name.value) for name in ext}


def _make_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bookstore local CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    identity: Identity, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + CERT_VALIDITY, ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_sans(identity)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Every service is a server to some and a client of others.
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def ensure(directory: Path, identities: Iterable[Identity], clock: Clock = _now) -> list[str]:
    """Make what is missing or no longer valid; the names of the files (re)made."""
    made: list[str] = []
    with _locked(directory):
        now = clock()
        ca_pair = _load(directory, CA_NAME)
        if ca_pair is None or not _fresh(ca_pair[0], now):
            ca_pair = _make_ca(now)
            _save(directory, CA_NAME, *ca_pair)
            made.append(CA_NAME)
        ca, ca_key = ca_pair
        for identity in identities:
            pair = _load(directory, identity.name)
            expected = {str(n.value) for n in _sans(identity)}
            if (
                pair is not None
                and _fresh(pair[0], now)
                and _signed_by(pair[0], ca)
                and _san_set(pair[0]) == expected
            ):
                continue
            _save(directory, identity.name, *_make_leaf(identity, ca, ca_key, now))
            made.append(identity.name)
    return made
