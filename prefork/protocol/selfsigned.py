"""The self-signed certificate the seed promises when no TLS context is given, made in memory.

Shared by both TLS engines (docs/tls.md, "The generated certificate"); it needs
``cryptography``, which is imported only by whoever generates one.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DEFAULT_VALIDITY", "self_signed"]

DEFAULT_VALIDITY = datetime.timedelta(days=30)
_WILDCARD_HOSTS = (None, "", "0.0.0.0", "::", "localhost")


def self_signed(
    host: str | None,
    *,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new P-256 key and a self-signed certificate for ``host``, made in memory.

    P-256 rather than RSA: a handshake signs once with the server key, and ECDSA signing is
    about ten times cheaper than RSA-2048. The serial is random (RFC 5280 section 4.1.2.2);
    the validity is short since nothing should trust this certificate for long.

    Args:
        host: the name or address to certify (subjectAltName); None, a wildcard address or
            ``localhost`` certify ``localhost``, ``127.0.0.1`` and ``::1``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names = _alt_names(host)
    common = host if host not in _WILDCARD_HOSTS else "localhost"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "prefork self-signed"),
            x509.NameAttribute(NameOID.COMMON_NAME, str(common)[:64]),
        ]
    )
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)  # an hour back: tolerate clients whose clocks run slow
        .not_valid_after(start + validity)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _alt_names(host: str | None) -> list[x509.GeneralName]:
    if host in _WILDCARD_HOSTS:
        return [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    assert host is not None
    try:
        return [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return [x509.DNSName(host.encode("idna").decode("ascii"))]
    except UnicodeError:  # not a name a certificate can carry: certify localhost instead
        return _alt_names(None)
