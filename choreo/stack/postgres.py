"""PostgreSQL: a cluster owned by the checkout, from Debian's packages."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from choreo.stack.base import (
    ComponentStatus,
    Log,
    StackSettings,
    apt_install,
    check_port_free,
    port_open,
    run,
)
from events.errors import StackError
from events.settings import POSTGRES_SOCKET_FILE, Settings


class Postgres:
    """A PostgreSQL cluster owned by this checkout (own data folder and port), from Debian."""

    name = "postgres"

    def __init__(self, settings: Settings, stack: StackSettings) -> None:
        self.settings = settings
        self.stack = stack
        self.external = "DATABASE_URL" in os.environ
        self.home = self._home(settings.state_dir / "postgres")
        self.data = self.home / "data"
        self.log_file = self.home / "postgres.log"

    @staticmethod
    def _home(preferred: Path) -> Path:
        # PostgreSQL refuses to run as root; as root the cluster belongs to the `postgres` user,
        # which may not be able to reach a checkout under /root. Then it lives in /var/lib.
        if os.geteuid() != 0 or _postgres_can_reach(preferred.parent):
            return preferred
        digest = hashlib.sha1(str(preferred).encode()).hexdigest()[:12]
        return Path("/var/lib/choreo") / digest / "postgres"

    def _bin(self, tool: str) -> Path:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        if candidates:
            return candidates[-1]
        found = shutil.which(tool)
        if found is None:
            raise StackError(f"PostgreSQL's {tool} not found; `choreo stack up` installs it")
        return Path(found)

    def _as_owner(self, cmd: Sequence[str | Path]) -> list[str | Path]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def install(self, log: Log) -> None:
        if self.external:
            return
        try:
            self._bin("pg_ctl")
        except StackError:
            apt_install(["postgresql"], log)

    def start(self, log: Log) -> None:
        if self.external:
            return
        if not self._running():
            self._start(log)
        elif self._password_local_auth():
            run(self._as_owner([self._bin("pg_ctl"), "-D", self.data, "reload"]), what="reload")
        record = self.settings.state_dir / POSTGRES_SOCKET_FILE
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{self.home}\n")

    def _password_local_auth(self) -> bool:
        """Ask for a password over the Unix socket as over TCP (clusters made before asked
        none there, which let any local user in as any role). Returns whether it changed."""
        hba = self.data / "pg_hba.conf"
        lines = hba.read_text().splitlines(keepends=True)
        changed = [
            line.replace("trust", "scram-sha-256") if line.startswith("local") else line
            for line in lines
        ]
        if changed == lines:
            return False
        hba.write_text("".join(changed))
        return True

    def _start(self, log: Log) -> None:
        check_port_free(self.stack.postgres_port, "PostgreSQL")
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
            self.home.parent.chmod(0o755)
        if not (self.data / "PG_VERSION").exists():
            log(f"creating a PostgreSQL cluster in {self.data}")
            pwfile = self.home / ".pw"
            pwfile.write_text(self.stack.postgres_password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            run(
                self._as_owner(
                    [
                        self._bin("initdb"),
                        "-D",
                        self.data,
                        "-U",
                        self.stack.postgres_user,
                        f"--pwfile={pwfile}",
                        "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-locale",
                    ]
                ),
                what="initdb",
            )
            pwfile.unlink()
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# Choreo local stack\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {self.stack.postgres_port}\n"
                    f"unix_socket_directories = '{self.home}'\n"
                    "max_connections = 200\n"
                    "shared_buffers = 256MB\n"
                )
        self._password_local_auth()
        log(f"starting PostgreSQL on 127.0.0.1:{self.stack.postgres_port} and {self.home}")
        run(
            self._as_owner(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    self.data,
                    "-l",
                    self.log_file,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            what="pg_ctl start",
        )
        self._ensure_database()

    def _psql(self, sql: str, db: str = "postgres") -> str:
        return run(
            [
                self._bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.stack.postgres_port),
                "-U",
                self.stack.postgres_user,
                "-d",
                db,
                "-tAc",
                sql,
            ],
            what="psql",
            env={**os.environ, "PGPASSWORD": self.stack.postgres_password},
        ).strip()

    def _ensure_database(self) -> None:
        name = self.stack.postgres_db
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            self._psql(f'CREATE DATABASE "{name}"')

    def _running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        proc = subprocess.run(
            [str(c) for c in self._as_owner([self._bin("pg_ctl"), "-D", self.data, "status"])],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def _pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, log: Log) -> None:
        if self.external or not self._running():
            return
        log("stopping PostgreSQL")
        run(
            self._as_owner([self._bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"]),
            what="pg_ctl stop",
        )

    @property
    def address(self) -> str:
        if self.external:
            return _redact_dsn(self.settings.database_url)
        return f"127.0.0.1:{self.stack.postgres_port}/{self.stack.postgres_db}"

    def status(self) -> list[ComponentStatus]:
        if self.external:
            running = _postgres_answers(self.settings.database_url)
        else:
            running = self._running() and port_open(self.stack.postgres_port)
        return [
            ComponentStatus(
                name=self.name,
                running=running,
                external=self.external,
                address=self.address,
                pid=None if self.external or not running else self._pid(),
                log=None if self.external else str(self.log_file),
                detail="external" if self.external else f"data in {self.data}",
                ports={} if self.external else {"sql": self.stack.postgres_port},
            )
        ]


def _postgres_can_reach(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def _postgres_answers(dsn: str) -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def _redact_dsn(dsn: str) -> str:
    head, sep, tail = dsn.rpartition("@")
    if not sep:
        return dsn
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"


# --------------------------------------------------------------------------- Jaeger
