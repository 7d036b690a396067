"""How every Choreo Kafka client connects: bootstrap servers, TLS and SASL, from the settings.

Every consumer, producer and admin client of Choreo is built with ``**kafka_options(settings)``
(aiokafka's keyword arguments), so one place reads the standard settings
(``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SSL_CAFILE``, ``KAFKA_SASL_MECHANISM``,
``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``) and fills in the local secured stack's
defaults (``choreo stack up --secure``): SASL_SSL, its CA, its admin user. The local stack's
SCRAM passwords are not stored anywhere: each is the HMAC-SHA256 of its user name under one key
(``CHOREO_KAFKA_USER_SECRET``, or a random key kept beside the CA, mode 0600), so the
supervisor can hand each process its own password and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from events.errors import ChoreoError
from events.settings import KAFKA_CA_FILE, KAFKA_TLS_DIR, Settings

ADMIN_USER = "choreo-admin"
"""The local secured stack's Kafka superuser (the CLI, the stack, the tests' setup)."""
USERS_KEY_FILE = KAFKA_TLS_DIR / "users.key"


def state_key(path: Path) -> bytes:
    """The random key kept in ``path`` (hex, mode 0600), made the first time it is asked for."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another command made it first
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def derived_password(key: bytes, name: str) -> str:
    """The password of ``name`` under ``key``: hex, so safe in a DSN, a JAAS line or SQL."""
    return hmac.new(key, name.encode(), hashlib.sha256).hexdigest()


def kafka_user_password(settings: Settings, user: str) -> str:
    """The local secured stack's password of Kafka user ``user``."""
    if settings.kafka_user_secret is not None:
        key = settings.kafka_user_secret.get_secret_value().encode()
    else:
        key = state_key(settings.state_dir / USERS_KEY_FILE)
    return derived_password(key, user)


def security_protocol(settings: Settings) -> str:
    """The protocol clients use: the setting, else SASL_SSL on a secured local stack."""
    return settings.kafka_security_protocol or (
        "SASL_SSL" if settings.kafka_secure else "PLAINTEXT"
    )


def kafka_credentials(settings: Settings) -> tuple[str, str]:
    """The SASL user and password: the settings', else the local secured stack's admin.

    Raises:
        ChoreoError: a SASL protocol without a user (and no local secured stack to default to).
    """
    user = settings.kafka_sasl_username
    password = settings.kafka_sasl_password
    if user is None and settings.kafka_secure:
        user = ADMIN_USER
    if user is None:
        raise ChoreoError("Kafka uses SASL but KAFKA_SASL_USERNAME is not set")
    if password is not None:
        return user, password.get_secret_value()
    if not settings.kafka_secure:
        raise ChoreoError(f"Kafka uses SASL but KAFKA_SASL_PASSWORD of {user} is not set")
    return user, kafka_user_password(settings, user)


@lru_cache(maxsize=8)
def _ssl_context(cafile: Path | None) -> ssl.SSLContext:
    """A client TLS context checking the broker's certificate and host name (one per CA file,
    shared by every client of the process)."""
    context: ssl.SSLContext = create_ssl_context(cafile=str(cafile) if cafile else None)
    return context


def kafka_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's connection arguments (bootstrap servers, TLS, SASL) for ``settings``: the
    same for a consumer, a producer and an admin client."""
    protocol = security_protocol(settings)
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        cafile = settings.kafka_ssl_cafile
        if cafile is None and settings.kafka_secure:
            cafile = settings.state_dir / KAFKA_CA_FILE
        options["ssl_context"] = _ssl_context(cafile)
    if protocol.startswith("SASL_"):
        user, password = kafka_credentials(settings)
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = user
        options["sasl_plain_password"] = password
    return options
