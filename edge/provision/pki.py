"""The device's TLS identity: its private key, the certificate signing request for the
agency's CA, and the checks a signed certificate must pass before it is installed.

The checks catch the mistakes that happen when certificates for a batch of poles are handed
out by hand (the certificate of another pole, one signed by a different CA, one made from an
old CSR) on the device, with a reason, instead of as a refused TLS handshake on the pole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.errors import InputError

MAX_CHAIN = 5
"""Intermediate CAs followed at most between the device certificate and the agency's CA."""


class CertificateRefused(InputError):
    """A signed certificate that must not be installed on this device."""


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    """EC P-256: what every MQTT broker and TLS 1.2 stack accepts, and cheap on a Pi."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError(f"{path}: not an unencrypted PEM private key") from None


def make_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> x509.CertificateSigningRequest:
    """A CSR naming the device in the common name and as a DNS subject alternative name (CAs
    differ in which one they copy), asking for TLS client authentication."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(device_id)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_fits(pem: bytes, key: PrivateKeyTypes, device_id: str) -> bool:
    """True when ``pem`` is a valid CSR for this key and device (it can be sent again)."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        return False
    return (
        csr.is_signature_valid
        and _same_public_key(csr.public_key(), key)
        and device_id in _names(csr.subject, None)
    )


def load_ca_certificates(path: Path) -> list[x509.Certificate]:
    """The CA certificates in a PEM bundle; at least one must be a CA."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (the agency's CA certificate)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    certs = _load_certificates(data, path)
    if not any(_is_ca(cert) for cert in certs):
        raise InputError(
            f"{path}: {_subject(certs[0])} is not a CA certificate (basicConstraints CA:TRUE)"
        )
    return certs


def _load_certificates(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InputError(f"{path}: not a PEM certificate") from None
    if not certs:
        raise InputError(f"{path}: not a PEM certificate")
    return certs


@dataclass(frozen=True, slots=True)
class CheckedCertificate:
    """A device certificate that passed every check, and what is worth a warning."""

    pem: bytes = field(repr=False)
    leaf: x509.Certificate
    warnings: tuple[str, ...] = ()


def check_device_certificate(
    path: Path,
    key: PrivateKeyTypes,
    cas: list[x509.Certificate],
    device_id: str,
    now: datetime | None = None,
) -> CheckedCertificate:
    """Refuse (CertificateRefused, with the reason) a certificate that is not for this key,
    not for this device, not issued by one of ``cas`` (through the intermediates in the same
    file), expired, or not for TLS clients. A certificate that is not valid *yet* is only a
    warning: a Pi has no clock battery and may boot with yesterday's time."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    chain = _load_certificates(data, path)
    leaf, intermediates = chain[0], chain[1:]
    where = f"{path}: certificate {_subject(leaf)}"
    if not _same_public_key(leaf.public_key(), key):
        raise CertificateRefused(
            f"{where} does not match this device's private key (signed from another CSR?)"
        )
    names = _names(leaf.subject, leaf)
    if device_id not in names:
        shown = ", ".join(sorted(names)) or "no name"
        raise CertificateRefused(f"{where} is issued to {shown}, not to this device {device_id}")
    _check_chain(leaf, intermediates, cas, where)
    moment = now or datetime.now(UTC)
    if moment > leaf.not_valid_after_utc:
        raise CertificateRefused(f"{where} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    _check_client_use(leaf, where)
    warnings: list[str] = []
    if moment < leaf.not_valid_before_utc:
        warnings.append(
            f"{where} is valid only from {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
            f"this clock says {moment:%Y-%m-%d %H:%M} (set the time or wait for NTP)"
        )
    return CheckedCertificate(data, leaf, tuple(warnings))


def _check_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    cas: list[x509.Certificate],
    where: str,
) -> None:
    current = leaf
    for _ in range(MAX_CHAIN + 1):
        for ca in cas:
            if _issued_by(current, ca):
                return
        parent = next((c for c in intermediates if _issued_by(current, c) and _is_ca(c)), None)
        if parent is None:
            break
        current = parent
    trusted = "; ".join(_subject(ca) for ca in cas)
    same_name = any(ca.subject == current.issuer for ca in cas)
    if same_name:
        raise CertificateRefused(
            f"{where}: its signature does not verify against the CA {_subject_name(current.issuer)}"
            " in ca_file (a different CA with the same name?)"
        )
    raise CertificateRefused(
        f"{where} is issued by {_subject_name(current.issuer)}, not by the configured CA "
        f"({trusted})"
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_client_use(leaf: x509.Certificate, where: str) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    allowed = (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
    if not any(oid in usage for oid in allowed):
        raise CertificateRefused(
            f"{where} is not for TLS client authentication (extended key usage lacks clientAuth)"
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _same_public_key(public: CertificatePublicKeyTypes, key: PrivateKeyTypes) -> bool:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == public.public_bytes(*spki)


def _names(subject: x509.Name, cert: x509.Certificate | None) -> set[str]:
    names = {str(attr.value) for attr in subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    if cert is not None:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names.update(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            pass
    return names


def _subject(cert: x509.Certificate) -> str:
    return _subject_name(cert.subject)


def _subject_name(name: x509.Name) -> str:
    return f"'{name.rfc4514_string()}'"
