"""What every component of the local stack shares: settings, status, and the helpers that
install packages, run commands, spawn daemons and wait for them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.errors import StackError
from events.settings import PROJECT_ROOT

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
    kafka_heap: str = Field(default="768m", description="Broker JVM max heap (each node's).")
    kafka_jvm_options: str = Field(
        default="",
        description="More JVM options for each node, space-separated (tests start small"
        " clusters with `-XX:TieredStopAtLevel=1 -XX:+UseSerialGC`: quicker to start).",
    )
    kafka_brokers: int = Field(
        default=1,
        ge=1,
        description="KRaft nodes (broker + controller each) of a new local cluster; node n"
        " listens on kafka_port + 2(n-1), its controller on kafka_controller_port + 2(n-1).",
    )
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
    def status(self) -> list[ComponentStatus]: ...


# --------------------------------------------------------------------------- helpers


def run(cmd: Sequence[str | Path], *, what: str, **kwargs: object) -> str:
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


def apt_install(packages: Sequence[str], log: Log) -> None:
    """Install Debian packages (the machine's package registry), as root or through sudo."""
    prefix: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if shutil.which("apt-get") is None:
        raise StackError(f"need {', '.join(packages)} but apt-get is not available: install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing {' '.join(packages)} from Debian packages (apt-get)")
    run([*prefix, "apt-get", "update", "-q"], what="apt-get update", env=env)
    run(
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        what="apt-get install",
        env=env,
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], bool], *, what: str, timeout: float, log_path: Path | None
) -> None:
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


def pid_alive(pid: int) -> bool:
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


class Daemon:
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
        return pid if pid_alive(pid) else None

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

    def signal_stop(self) -> None:
        """SIGTERM the process group without waiting (see :meth:`terminate`)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)

    def terminate(self, log: Log, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        log(f"stopping {self.name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            log(f"{self.name} ignored SIGTERM for {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def check_port_free(port: int, who: str) -> None:
    if port_open(port):
        raise StackError(
            f"port {port} for {who} is already in use by a process this checkout did not start "
            f"(another Choreo stack? run `choreo stack down` there, or move {who} to another "
            "port with the CHOREO_* settings in the README)"
        )


# --------------------------------------------------------------------------- Kafka
