"""API tokens: who may use the HTTP API and the console, and as what role.

A token is ``choreo_<id>_<secret>``, shown once when it is created; only its Argon2 hash is
kept (argon2-cffi, the library's recommended parameters), beside its id, a name and a role:

* ``viewer`` reads (orders, summaries, dead letters);
* ``operator`` also acts (approve, reject, redrive); scoped to some saga types
  (``saga_types``), it answers only their human tasks and redrives nothing.

Tokens come from ``CHOREO_API_TOKENS`` (a JSON list of records, for deployments that configure
by environment) and the file ``CHOREO_API_TOKENS_FILE`` (default ``<state dir>/api-tokens.json``,
written by `choreo tokens create`, mode 0600), which the API re-reads when it changes, so a
token created or revoked while the API runs counts at once. This module imports no web stack:
the CLI uses it too.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeAlias

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.errors import ChoreoError, field_problems
from events.model import utc_now
from events.settings import Settings

Role: TypeAlias = Literal["viewer", "operator"]
"""What a token may do: read, or read and act."""

ROLES: dict[Role, int] = {"viewer": 0, "operator": 1}
"""Roles by rank: a role may do what every role below it may."""

PREFIX = "choreo"
FILE_NAME = "api-tokens.json"
SESSION_KEY_FILE = "console-session.key"

_hasher = PasswordHasher()


class TokenRecord(BaseModel):
    """A token as stored: never the token itself, only its hash."""

    id: str = Field(description="Public part of the token, to find its record.")
    name: str = Field(description="Who or what uses it; decisions are recorded under it.")
    role: Role
    hash: str = Field(description="Argon2id hash of the whole token.")
    created_at: datetime | None = None
    saga_types: list[str] | None = Field(
        default=None,
        description="An operator token's scope: the saga types whose human tasks it may "
        "answer (none: every type). A scoped operator does not redrive dead letters, whose "
        "saga types are not known.",
    )

    def principal(self) -> Principal:
        """Who this token's requests come from."""
        scope = tuple(self.saga_types) if self.saga_types is not None else None
        return Principal(token_id=self.id, name=self.name, role=self.role, saga_types=scope)


class ApiSettings(BaseSettings):
    """Where the API listens and whom it lets in (``CHOREO_API_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_API_", extra="ignore", frozen=True)

    host: str = Field(default="127.0.0.1", description="Interface the API binds to.")
    port: int = Field(
        default=8080, ge=0, le=65535, description="TCP port of the API (0: any free port)."
    )
    tokens: list[TokenRecord] = Field(
        default_factory=list,
        description="Tokens as a JSON list of records (id, name, role, hash), as "
        "`choreo tokens create --json` prints them; added to those of the tokens file.",
    )
    tokens_file: Path | None = Field(
        default=None,
        description="The token file `choreo tokens` writes (default: <state dir>/api-tokens.json).",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs console session cookies (default: a random key kept in "
        "<state dir>/console-session.key, so a restart of the API keeps everyone signed in).",
    )
    session_max_age_s: int = Field(
        default=12 * 3600, ge=60, description="How long a console sign-in lasts."
    )
    secure_cookies: bool = Field(
        default=False, description="Send the session cookie over HTTPS only (behind TLS)."
    )

    def token_file(self, settings: Settings) -> Path:
        """The token file: ``tokens_file``, or ``api-tokens.json`` in the state dir."""
        return self.tokens_file or settings.state_dir / FILE_NAME

    def session_key(self, settings: Settings) -> str:
        """The key signing console sessions: ``session_secret``, else the state dir's (made
        once, mode 0600). A key drawn per start signed every user out at each restart of the
        API, such as the supervisor's after a crash."""
        if self.session_secret is not None:
            return self.session_secret.get_secret_value()
        # Here: events.security imports aiokafka, and every `choreo` command imports this module.
        from events.security import state_key

        return state_key(settings.state_dir / SESSION_KEY_FILE).decode()


class Principal(BaseModel):
    """Who a request comes from: a token's name, role and scope."""

    token_id: str
    name: str
    role: Role
    saga_types: tuple[str, ...] | None = None

    def may(self, role: Role) -> bool:
        """Whether this principal has ``role`` or a higher one."""
        return ROLES[self.role] >= ROLES[role]

    def may_answer(self, saga_type: str) -> bool:
        """Whether this principal may answer the human tasks of sagas of ``saga_type``."""
        return self.may("operator") and (self.saga_types is None or saga_type in self.saga_types)

    @property
    def unscoped_operator(self) -> bool:
        """An operator of every saga type (who may also redrive dead letters)."""
        return self.may("operator") and self.saga_types is None

    @property
    def scope(self) -> str:
        """The saga types it may answer, in words."""
        return "every saga type" if self.saga_types is None else ", ".join(self.saga_types)


def new_token(
    name: str, role: Role, saga_types: list[str] | None = None
) -> tuple[str, TokenRecord]:
    """A fresh token and the record to store for it (its hash); ``saga_types`` scopes an
    operator to those types' human tasks."""
    token_id = secrets.token_hex(4)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    record = TokenRecord(
        id=token_id,
        name=name,
        role=role,
        hash=_hasher.hash(token),
        created_at=utc_now(),
        saga_types=saga_types,
    )
    return token, record


def _token_id(token: str) -> str | None:
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    return token_id if prefix == PREFIX and token_id and secret else None


class TokenFile:
    """The token file: read, add, revoke (written atomically, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[TokenRecord]:
        """The records in the file (none if it does not exist)."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except orjson.JSONDecodeError as exc:
            raise ChoreoError(f"{self.path}: not a token file: {exc}") from exc
        records = data.get("tokens", []) if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise ChoreoError(f'{self.path}: not a token file: expected {{"tokens": [...]}}')
        found = []
        for index, record in enumerate(records):
            try:
                found.append(TokenRecord.model_validate(record))
            except ValidationError as exc:
                problems = field_problems(exc, "record")
                raise ChoreoError(f"{self.path}: token record {index}: {problems}") from exc
        return found

    def write(self, records: list[TokenRecord]) -> None:
        """Replace the file's records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"tokens": [r.model_dump(mode="json") for r in records]}
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        os.replace(temporary, self.path)

    def create(
        self, name: str, role: Role, saga_types: list[str] | None = None
    ) -> tuple[str, TokenRecord]:
        """Create a token, store its hash, and return the token (shown once) and its record."""
        token, record = new_token(name, role, saga_types)
        self.write([*self.read(), record])
        return token, record

    def revoke(self, token_id: str) -> TokenRecord:
        """Remove the token ``token_id``; raises ChoreoError if there is none."""
        records = self.read()
        kept = [r for r in records if r.id != token_id]
        if len(kept) == len(records):
            raise ChoreoError(f"no token {token_id} in {self.path}")
        self.write(kept)
        return next(r for r in records if r.id == token_id)


class TokenStore:
    """The tokens the API accepts: the environment's and the file's, re-read when it changes.

    Verifying an Argon2 hash costs tens of milliseconds by design; a token verified once is
    remembered in memory (by its SHA-256, never in clear) while its record exists, so a client
    calling often pays it once.
    """

    def __init__(self, configured: list[TokenRecord], file: TokenFile) -> None:
        self.configured = configured
        self.file = file
        self._records: dict[str, TokenRecord] = {}
        self._stamp: tuple[int, int] | None = (-1, -1)
        self._verified: dict[str, str] = {}
        self._lock = threading.Lock()

    def records(self) -> dict[str, TokenRecord]:
        """Every accepted token record by id (the file re-read if it changed)."""
        try:
            stat = self.file.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                records = [*self.configured, *(self.file.read() if stamp else [])]
                self._records = {r.id: r for r in records}
                self._stamp = stamp
            return self._records

    def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or None if it is not a valid token."""
        token_id = _token_id(token)
        record = self.records().get(token_id or "")
        if record is None:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        if self._verified.get(digest) != record.hash:
            try:
                _hasher.verify(record.hash, token)
            except (VerificationError, InvalidHashError):
                return None
            self._verified[digest] = record.hash
        return record.principal()

    def principal(self, token_id: str) -> Principal | None:
        """The principal of a token id a session names, if that token still exists."""
        record = self.records().get(token_id)
        return None if record is None else record.principal()
