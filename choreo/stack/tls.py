"""The secured local Kafka's TLS material: a CA of its own and the brokers' certificate, made
with ``cryptography`` once and kept in ``<state>/kafka/tls`` (keys mode 0600).

The broker certificate names ``127.0.0.1`` and ``localhost`` (every node listens on loopback)
and serves both ways: as the server certificate of the client (SASL_SSL) and controller
listeners, and as the client certificate a node shows the controllers, whose listener requires
one signed by this CA (KRaft cannot authenticate controllers with SCRAM: its credentials live in
the metadata log the controllers serve). Kafka reads both files as PEM (``ssl.keystore.type=
PEM``), so no Java keystore or ``keytool`` is involved.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from events.settings import KAFKA_CA_FILE, KAFKA_TLS_DIR

BROKER_CN = "choreo-kafka-broker"
BROKER_PRINCIPAL = f"User:CN={BROKER_CN}"
"""The principal a node's certificate gives it on the controller listener (a super user)."""
VALID_FOR = datetime.timedelta(days=3650)
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class TlsFiles:
    """Where the material of the state folder ``state_dir`` lives."""

    state_dir: Path

    @property
    def home(self) -> Path:
        return self.state_dir.resolve() / KAFKA_TLS_DIR

    @property
    def ca(self) -> Path:
        """The CA certificate (what clients trust: ``KAFKA_SSL_CAFILE``)."""
        return self.state_dir.resolve() / KAFKA_CA_FILE

    @property
    def ca_key(self) -> Path:
        return self.home / "ca.key"

    @property
    def broker(self) -> Path:
        """The brokers' key (PKCS#8) and certificate chain, in one PEM file."""
        return self.home / "broker.pem"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_tls(state_dir: Path) -> TlsFiles:
    """The CA and the broker certificate of ``state_dir``, made if missing (idempotent: a CA
    already there is kept, so clients that trust it keep working)."""
    files = TlsFiles(state_dir)
    if files.ca.exists() and files.broker.exists() and files.ca_key.exists():
        return files
    files.home.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Choreo local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = _key()
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_CN)]))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write_private(files.ca_key, _pem(ca_key))
    _write_private(
        files.broker,
        _pem(broker_key) + broker_cert.public_bytes(serialization.Encoding.PEM) + ca_pem,
    )
    files.ca.write_bytes(ca_pem)  # last: its presence marks the material complete
    return files
