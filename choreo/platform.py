"""The whole platform as real processes, for end-to-end tests and benchmarks.

Each :class:`Platform` runs every Choreo process (``python -m choreo service NAME``) with its
own topic prefix (hence its own topics, consumer groups and PostgreSQL schemas) and the
environment it is given (the e2e tests shorten deadlines), writes each process's log to a file,
and can SIGKILL and restart any of them. With ``replicas``, a process runs as several instances
(:mod:`choreo.replicas`), each with its own log, named by its label (``payment#2``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from choreo.kafka_access import CHILD_DROPS, process_kafka_env, provision_kafka_access
from choreo.registry import NAMES
from choreo.replicas import instances
from choreo.roles import process_env, provision_roles, remove_deployment_data
from events.security import kafka_options
from events.settings import Settings
from events.topics import all_topics


class Platform:
    """Real processes of one Choreo deployment."""

    def __init__(
        self,
        settings: Settings,
        env: dict[str, str],
        log_dir: Path,
        replicas: Mapping[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.replicas = dict(replicas or {})
        self.env = {
            **os.environ,
            "CHOREO_API_PORT": str(_free_port()),
            "CHOREO_TOPIC_PREFIX": settings.topic_prefix,
            "CHOREO_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.log_dir = log_dir
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    @property
    def labels(self) -> list[str]:
        """Every instance's label (a process's name, ``NAME#2`` for its second instance)."""
        return [instance.label for instance in instances(NAMES, self.replicas)]

    def log_path(self, name: str) -> Path:
        """Where instance ``name`` (a label) logs (stdout and stderr)."""
        return self.log_dir / f"{name}.log"

    async def start(self, *names: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Start processes (default: all; each with its replicas) or single instances (by
        label), and wait until each says it is ready; if one does not, stop them all and raise.
        Instances running already are left alone (restarting ``payment`` after a kill leaves
        ``payment#2`` be)."""
        wanted = [
            instance
            for instance in instances(NAMES, self.replicas)
            if (not names or instance.label in names or instance.process in names)
            and not self._running(instance.label)
        ]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.database_roles:
            await provision_roles(self.settings)
        if self.settings.kafka_secure:
            await provision_kafka_access(self.settings)
        for instance in wanted:
            log = self.log_path(instance.label).open("ab")
            env = {**self.env, **instance.env()}
            if self.settings.database_roles:  # each process gets only its own role's DSN
                env = {**env, **process_env(self.settings, instance.process)}
                env.pop("CHOREO_DATABASE_URL", None)
            if self.settings.kafka_secure:  # ... and its own Kafka user
                env = {k: v for k, v in env.items() if k not in CHILD_DROPS}
                env.update(process_kafka_env(self.settings, instance.process))
            self.procs[instance.label] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "choreo", "service", instance.process,
                stdout=log, stderr=asyncio.subprocess.STDOUT, env=env,
            )  # fmt: skip
            log.close()
        deadline = time.monotonic() + timeout
        try:
            for instance in wanted:
                label = instance.label
                while f'"{instance.process} ready' not in self.log(label):
                    proc = self.procs[label]
                    if proc.returncode is not None or time.monotonic() > deadline:
                        raise AssertionError(f"{label} did not become ready:\n{self.tail(label)}")
                    await asyncio.sleep(0.1)
        except BaseException:
            # The caller gets no platform to stop: stop what started, or it runs on orphaned.
            await self.stop()
            raise

    def _running(self, label: str) -> bool:
        proc = self.procs.get(label)
        return proc is not None and proc.returncode is None

    def log(self, name: str) -> str:
        """Everything process ``name`` logged so far."""
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, name: str, lines: int = 40) -> str:
        """The last ``lines`` lines of process ``name``'s log."""
        return "\n".join(self.log(name).splitlines()[-lines:])

    async def kill(self, name: str) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def stop(self, grace_s: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every process, wait for them to drain; returns their exit codes."""
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = await asyncio.wait_for(proc.wait(), grace_s)
            except TimeoutError:
                proc.kill()
                codes[name] = None
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        self.procs.clear()
        return codes

    def errors(self) -> list[str]:
        """Tracebacks any process logged (a crash a test should notice)."""
        return [
            f"{name}: {line}"
            for name in self.labels
            for line in self.log(name).splitlines()
            if line.startswith("Traceback") or '"exc":' in line
        ]


def _free_port() -> int:
    """A TCP port nobody listens on right now (for the API process)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def remove_deployment(settings: Settings) -> None:
    """Delete what the deployment ``settings.topic_prefix`` names made: its topics, PostgreSQL
    schemas and roles. For a bench's or a test's deployment once it is measured or checked:
    a long-lived local stack would otherwise keep every run's partitions open (until the
    broker runs out of file descriptors) and every run's roles."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [topic for topic in all_topics(settings) if topic in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
    await remove_deployment_data(settings)
