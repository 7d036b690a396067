"""The local stack: Apache Kafka (KRaft), PostgreSQL and Jaeger, installed and run without Docker.

Each component installs what it lacks (Kafka jars from Maven Central, PostgreSQL from Debian's
packages, Jaeger built from the Go module proxy), starts as a background process owned by this
checkout, and is waited for until it answers. Everything it writes lives in the state folder
(``.state/`` by default); downloads are cached machine-wide (``~/.cache/choreo``) so a second
checkout starts in seconds. A component whose address was given in the environment
(``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``OTEL_EXPORTER_OTLP_ENDPOINT``) is external:
it is neither installed nor started, only checked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.errors import StackError
from events.settings import PROJECT_ROOT, Settings, get_settings

INFRA = PROJECT_ROOT / "infra"
KAFKA_VERSION = "3.9.2"
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_MODULE_VERSION = "v1.76.0"  # the Go module tag of Jaeger v2.13.0

Log = Callable[[str], None]


class StackSettings(BaseSettings):
    """Ports and resources of the local stack (the defaults match :class:`Settings`)."""

    model_config = SettingsConfigDict(env_prefix="CHOREO_", extra="ignore", frozen=True)

    kafka_port: int = Field(default=19092, description="Kafka client listener port.")
    kafka_controller_port: int = Field(default=19093, description="KRaft controller port.")
    kafka_heap: str = Field(default="768m", description="Broker JVM max heap.")
    postgres_port: int = Field(default=15432, description="PostgreSQL port.")
    postgres_user: str = Field(default="choreo", description="PostgreSQL superuser name.")
    postgres_password: str = Field(default="choreo", description="Its password.")
    postgres_db: str = Field(default="choreo", description="Database Choreo uses.")
    jaeger_otlp_grpc_port: int = Field(default=4317, description="OTLP/gRPC receiver port.")
    jaeger_otlp_http_port: int = Field(default=4318, description="OTLP/HTTP receiver port.")
    jaeger_query_port: int = Field(default=16686, description="Jaeger UI and query API port.")
    jaeger_health_port: int = Field(default=13133, description="Jaeger health check port.")
    jaeger_metrics_port: int = Field(
        default=8889, description="Where Jaeger serves Choreo's metrics (Prometheus format)."
    )
    ready_timeout_s: float = Field(default=120.0, description="How long to wait for readiness.")


@dataclass
class ComponentStatus:
    """What `choreo stack status` shows for one component."""

    name: str
    running: bool
    external: bool
    address: str
    pid: int | None = None
    log: str | None = None
    detail: str = ""
    ports: dict[str, int] = field(default_factory=dict)


class Component(Protocol):
    name: str

    def install(self, log: Log) -> None: ...
    def start(self, log: Log) -> None: ...
    def stop(self, log: Log) -> None: ...
    def status(self) -> ComponentStatus: ...


# --------------------------------------------------------------------------- helpers


def _run(cmd: Sequence[str | Path], *, what: str, **kwargs: object) -> str:
    """Run a command; on failure raise a StackError that shows its output."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-3000:]
        raise StackError(
            f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{output}"
        )
    return str(proc.stdout)


def _apt_install(packages: Sequence[str], log: Log) -> None:
    """Install Debian packages (the machine's package registry), as root or through sudo."""
    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if shutil.which("apt-get") is None:
        raise StackError(f"need {', '.join(packages)} but apt-get is not available: install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing {' '.join(packages)} from Debian packages (apt-get)")
    _run([*prefix, "apt-get", "update", "-q"], what="apt-get update", env=env)
    _run(
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        what="apt-get install",
        env=env,
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _wait(check: Callable[[], bool], *, what: str, timeout: float, log_path: Path | None) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    tail = ""
    if log_path is not None and log_path.exists():
        tail = "\n" + "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); it is not running.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class _Daemon:
    """A background process started by this checkout, tracked with a pid file."""

    def __init__(self, name: str, home: Path) -> None:
        self.name = name
        self.home = home
        self.pid_file = home / f"{name}.pid"
        self.log_file = home / f"{name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def spawn(self, cmd: Sequence[str | Path], env: dict[str, str] | None = None) -> int:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI; SIGINT to the CLI does not reach it
                env={**os.environ, **(env or {})},
                cwd=self.home,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def terminate(self, log: Log, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        log(f"stopping {self.name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            log(f"{self.name} ignored SIGTERM for {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _check_port_free(port: int, who: str) -> None:
    if port_open(port):
        raise StackError(
            f"port {port} for {who} is already in use by a process this checkout did not start "
            f"(another Choreo stack? run `choreo stack down` there, or move {who} to another "
            "port with the CHOREO_* settings in the README)"
        )


# --------------------------------------------------------------------------- Kafka


class Kafka:
    """Single-node Kafka in KRaft mode from the Maven Central jars, on the machine's JDK."""

    name = "kafka"

    def __init__(self, settings: Settings, stack: StackSettings) -> None:
        self.settings = settings
        self.stack = stack
        self.external = "KAFKA_BOOTSTRAP_SERVERS" in os.environ
        self.home = settings.state_dir / "kafka"
        self.libs = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self.daemon = _Daemon("kafka", self.home)

    def install(self, log: Log) -> None:
        if self.external or (self.libs / ".complete").exists():
            return
        if shutil.which("java") is None:
            _apt_install(["openjdk-17-jre-headless"], log)
        if shutil.which("mvn") is None:
            _apt_install(["maven"], log)
        log(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {self.libs}")
        self.libs.mkdir(parents=True, exist_ok=True)
        _run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                INFRA / "kafka" / "pom.xml",
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            what="maven fetch of the Kafka broker",
        )
        (self.libs / ".complete").write_text(KAFKA_VERSION)

    def _java(self, main: str, *args: str | Path, heap: str = "256m") -> list[str | Path]:
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{INFRA / 'kafka' / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def start(self, log: Log) -> None:
        if self.external or self.daemon.pid() is not None:
            return
        _check_port_free(self.stack.kafka_port, "Kafka")
        _check_port_free(self.stack.kafka_controller_port, "the Kafka controller")
        data = self.home / "data"
        config = self.home / "server.properties"
        template = string.Template((INFRA / "kafka" / "server.properties.template").read_text())
        self.home.mkdir(parents=True, exist_ok=True)
        config.write_text(
            template.substitute(
                port=self.stack.kafka_port,
                controller_port=self.stack.kafka_controller_port,
                data_dir=data,
            )
        )
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            log(f"formatting Kafka storage in {data} (cluster {cluster_id})")
            _run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", config),
                what="kafka storage format",
            )
        log(f"starting Kafka {KAFKA_VERSION} (KRaft) on 127.0.0.1:{self.stack.kafka_port}")
        self.daemon.spawn(self._java("kafka.Kafka", config, heap=self.stack.kafka_heap))
        _wait(
            lambda: self.daemon.pid() is not None and _kafka_answers(self.address),
            what="Kafka",
            timeout=self.stack.ready_timeout_s,
            log_path=self.daemon.log_file,
        )

    @property
    def address(self) -> str:
        if self.external:
            return self.settings.kafka_bootstrap_servers
        return f"127.0.0.1:{self.stack.kafka_port}"

    def stop(self, log: Log) -> None:
        if not self.external:
            self.daemon.terminate(log, timeout=60)

    def status(self) -> ComponentStatus:
        pid = None if self.external else self.daemon.pid()
        running = _kafka_answers(self.address) if (self.external or pid) else False
        return ComponentStatus(
            name=self.name,
            running=running,
            external=self.external,
            address=self.address,
            pid=pid,
            log=None if self.external else str(self.daemon.log_file),
            detail=f"Apache Kafka {KAFKA_VERSION}, KRaft" if not self.external else "external",
            ports={}
            if self.external
            else {"client": self.stack.kafka_port, "controller": self.stack.kafka_controller_port},
        )


def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if port.isdigit() and not port_open(int(port), host or "127.0.0.1"):
        return False  # not listening yet: skip the client, whose retries log errors

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return asyncio.run(probe())


# --------------------------------------------------------------------------- PostgreSQL


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
            _apt_install(["postgresql"], log)

    def start(self, log: Log) -> None:
        if self.external or self._running():
            return
        _check_port_free(self.stack.postgres_port, "PostgreSQL")
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
            _run(
                self._as_owner(
                    [
                        self._bin("initdb"),
                        "-D",
                        self.data,
                        "-U",
                        self.stack.postgres_user,
                        f"--pwfile={pwfile}",
                        "--auth-local=trust",
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
        log(f"starting PostgreSQL on 127.0.0.1:{self.stack.postgres_port}")
        _run(
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
        return _run(
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
        _run(
            self._as_owner([self._bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"]),
            what="pg_ctl stop",
        )

    @property
    def address(self) -> str:
        if self.external:
            return _redact_dsn(self.settings.database_url)
        return f"127.0.0.1:{self.stack.postgres_port}/{self.stack.postgres_db}"

    def status(self) -> ComponentStatus:
        if self.external:
            running = _postgres_answers(self.settings.database_url)
        else:
            running = self._running() and port_open(self.stack.postgres_port)
        return ComponentStatus(
            name=self.name,
            running=running,
            external=self.external,
            address=self.address,
            pid=None if self.external or not running else self._pid(),
            log=None if self.external else str(self.log_file),
            detail="external" if self.external else f"data in {self.data}",
            ports={} if self.external else {"sql": self.stack.postgres_port},
        )


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


class Jaeger:
    """Jaeger v2 (OTLP in, in-memory storage, query API and UI), built from the Go proxy."""

    name = "jaeger"

    def __init__(self, settings: Settings, stack: StackSettings) -> None:
        self.settings = settings
        self.stack = stack
        self.external = "OTEL_EXPORTER_OTLP_ENDPOINT" in os.environ
        self.binary = settings.cache_dir / "bin" / f"jaeger-{JAEGER_MODULE_VERSION}"
        self.daemon = _Daemon("jaeger", settings.state_dir / "jaeger")

    def install(self, log: Log) -> None:
        if self.external or self.binary.exists():
            return
        go = shutil.which("go") or (
            "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
        )
        if go is None:
            raise StackError("Jaeger is built with Go (>= 1.24), which is not installed")
        log(f"building Jaeger {JAEGER_MODULE_VERSION} from the Go module proxy (minutes, once)")
        # `go install` refuses modules whose go.mod has replace directives (Jaeger's has), so the
        # module is downloaded and built as the main module, honouring its own go.mod.
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        info = _run(
            [go, "mod", "download", "-json", f"{JAEGER_MODULE}@{JAEGER_MODULE_VERSION}"],
            what="go mod download",
            cwd=self.binary.parent,
        )
        module_dir = orjson.loads(info)["Dir"]
        partial = self.binary.with_suffix(".partial")
        _run(
            [go, "build", "-trimpath", "-o", partial, "./cmd/jaeger"],
            what="go build jaeger",
            cwd=module_dir,
        )
        partial.rename(self.binary)

    def start(self, log: Log) -> None:
        if self.external or self.daemon.pid() is not None:
            return
        for port in self._ports().values():
            _check_port_free(port, "Jaeger")
        log(
            f"starting Jaeger on 127.0.0.1 (OTLP {self.stack.jaeger_otlp_grpc_port}, "
            f"UI {self.stack.jaeger_query_port})"
        )
        self.daemon.spawn(
            [self.binary, "--config", f"file:{INFRA / 'jaeger' / 'config.yaml'}"],
            env={
                "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_otlp_grpc_port}",
                "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_otlp_http_port}",
                "JAEGER_QUERY_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_query_port}",
                "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_query_port - 1}",
                "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_health_port}",
                "JAEGER_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.stack.jaeger_metrics_port}",
            },
        )
        _wait(
            lambda: self.daemon.pid() is not None and self._healthy(),
            what="Jaeger",
            timeout=self.stack.ready_timeout_s,
            log_path=self.daemon.log_file,
        )

    def _ports(self) -> dict[str, int]:
        return {
            "otlp-grpc": self.stack.jaeger_otlp_grpc_port,
            "otlp-http": self.stack.jaeger_otlp_http_port,
            "ui": self.stack.jaeger_query_port,
            "health": self.stack.jaeger_health_port,
            "metrics": self.stack.jaeger_metrics_port,
        }

    def _healthy(self) -> bool:
        try:
            response = httpx.get(
                f"http://127.0.0.1:{self.stack.jaeger_health_port}/status", timeout=2
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    @property
    def address(self) -> str:
        return (
            self.settings.otel_exporter_otlp_endpoint
            if self.external
            else (f"http://127.0.0.1:{self.stack.jaeger_otlp_grpc_port}")
        )

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.jaeger_query_port}"

    def stop(self, log: Log) -> None:
        if not self.external:
            self.daemon.terminate(log)

    def status(self) -> ComponentStatus:
        pid = None if self.external else self.daemon.pid()
        return ComponentStatus(
            name=self.name,
            running=(pid is not None and self._healthy()) if not self.external else True,
            external=self.external,
            address=self.address,
            pid=pid,
            log=None if self.external else str(self.daemon.log_file),
            detail="external (not checked)" if self.external else f"UI {self.ui_url}",
            ports={} if self.external else self._ports(),
        )


# --------------------------------------------------------------------------- the stack


class Stack:
    """The three components, in start order."""

    def __init__(
        self, settings: Settings | None = None, stack: StackSettings | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self.stack = stack or StackSettings()
        self.components: list[Component] = [
            Postgres(self.settings, self.stack),
            Kafka(self.settings, self.stack),
            Jaeger(self.settings, self.stack),
        ]

    def up(self, log: Log) -> list[ComponentStatus]:
        for component in self.components:
            component.install(log)
        for component in self.components:
            component.start(log)
        return self.status()

    def down(self, log: Log) -> None:
        for component in reversed(self.components):
            component.stop(log)

    def status(self) -> list[ComponentStatus]:
        return [component.status() for component in self.components]
