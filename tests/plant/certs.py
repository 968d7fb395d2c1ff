"""Test certificates made with ``cryptography``: a CA, and certificates it signs (valid, or
already expired) for TLS brokers and OPC UA applications."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_cert(folder: Path, stem: str, *, ca: tuple | None = None, expired: bool = False, uri: str | None = None,
              server: bool = True) -> tuple[Path, Path, x509.Certificate, object]:
    """A certificate for 127.0.0.1 / localhost (and ``uri`` as an application URI), signed by
    ``ca`` = (cert, key) or self-signed as a CA when None; ``expired``: valid until yesterday.
    Returns (cert file, key file, cert, key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else \
        (now - dt.timedelta(hours=1), now + dt.timedelta(days=30))
    issuer_cert, issuer_key = ca if ca else (None, key)
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if uri:
        names.append(x509.UniformResourceIdentifier(uri))
    builder = (x509.CertificateBuilder().subject_name(_name(stem))
               .issuer_name(issuer_cert.subject if issuer_cert else _name(stem))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .add_extension(x509.BasicConstraints(ca=ca is None and uri is None, path_length=None), critical=True))
    if uri:
        builder = builder.add_extension(x509.KeyUsage(True, True, True, True, False, False, False, False, False), critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = _write(folder, stem, cert, key)
    return cert_path, key_path, cert, key
