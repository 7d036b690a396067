"""`choreo run`: every Choreo process as a supervised child, with one log stream.

Children are ``python -m choreo service NAME`` (a name of :mod:`choreo.registry`), one per
instance (:mod:`choreo.replicas`: ``payment``, ``payment#2``, ...). Their output is prefixed with
their instance's label; a child that exits unexpectedly is restarted with
exponential backoff (reset after a minute of health). SIGTERM or Ctrl-C stops every child
with SIGTERM (they drain and commit), waits, and kills what is left after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from choreo import registry
from choreo.kafka_access import CHILD_DROPS, process_kafka_env, provision_kafka_access
from choreo.replicas import Instance, instances
from choreo.roles import process_env, provision_roles
from events.logs import render_json_line
from events.service import run_service
from events.settings import Settings
from events.stopping import STOP_TIMEOUT_EXIT_CODE

STOP_REPORT = "run.stopped.json"
"""The file in the state directory that says how the last stop of `choreo run` ended."""

COLORS = ["cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "white"]


def load_runner(name: str) -> Callable[[Settings], None]:
    """The entry function of process ``name`` (see :mod:`choreo.registry`): a service's on the
    shared runtime, or the process's own runner.

    Raises:
        choreo.registry.UnknownProcess: no process has that name (a :class:`KeyError`).
    """
    spec = registry.get(name)
    if spec.is_service:
        return functools.partial(run_service, spec.build)
    return spec.load_runner()


def child_env(settings: Settings, name: str) -> dict[str, str]:
    """The environment of child ``name``: this one's, with the child's own PostgreSQL DSN when
    processes run as their own roles, and its own Kafka user on a secured stack (the
    administrator's credentials and keys stay with the parent)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if settings.database_roles:
        env.pop("CHOREO_DATABASE_URL", None)
        env.update(process_env(settings, name))
    if settings.kafka_secure:
        for variable in CHILD_DROPS:
            env.pop(variable, None)
        env.update(process_kafka_env(settings, name))
    return env


@dataclass(frozen=True)
class Stopped:
    """How one child's stop ended."""

    name: str
    exit_code: int
    seconds: float
    """From the supervisor's SIGTERM to the child's exit."""
    killed: bool = False
    """It had not exited at the grace period's end."""

    @property
    def how(self) -> str:
        if self.killed:
            return "killed at the grace period's end"
        if self.exit_code == 0:
            return "clean"
        if self.exit_code == STOP_TIMEOUT_EXIT_CODE:
            return "ended by its stop timeout"
        return f"exit code {self.exit_code}"


def summary(stopped: list[Stopped]) -> str:
    """``in 3.3 s, all 8 clean``, or what was not: ``in 17.0 s: inventory ended by its stop
    timeout; 7 clean``."""
    took = max((s.seconds for s in stopped), default=0.0)
    clean = sum(1 for s in stopped if s.how == "clean")
    if clean == len(stopped):
        return f"in {took:.1f} s, all {clean} clean"
    others = "; ".join(f"{s.name} {s.how}" for s in stopped if s.how != "clean")
    return f"in {took:.1f} s: {others}; {clean} clean"


@dataclass
class Child:
    """One supervised process: an instance of a registered process."""

    instance: Instance
    color: str
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff_s: float = 1.0
    pump: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The instance's label: what its log lines are prefixed with."""
        return self.instance.label


class Supervisor:
    """Starts, watches, restarts and stops the children: ``replicas[name]`` instances of each
    process of ``names`` (default one)."""

    def __init__(
        self,
        names: list[str],
        *,
        echo: Callable[[str, str, str], None],
        grace_s: float = 20.0,
        raw: bool = False,
        settings: Settings | None = None,
        replicas: Mapping[str, int] | None = None,
    ) -> None:
        self.raw = raw
        self.children = [
            Child(instance, COLORS[i % len(COLORS)])
            for i, instance in enumerate(instances(names, replicas or {}))
        ]
        self.echo = echo
        self.grace_s = grace_s
        self.stopping = asyncio.Event()
        # Read now, not the process-wide cached copy: the environment the children inherit.
        self.settings = settings or Settings()
        self.stopped: list[Stopped] = []
        """How each child's stop ended, once :meth:`run` has stopped them."""

    @property
    def report_path(self) -> Path:
        """Where the last stop's outcome is written (``choreo stop`` reads it)."""
        return self.settings.state_dir / STOP_REPORT

    async def _spawn(self, child: Child) -> None:
        child.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "choreo",
            "service",
            child.instance.process,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**child_env(self.settings, child.instance.process), **child.instance.env()},
        )
        child.started_at = time.monotonic()
        child.pump = asyncio.create_task(self._pump(child, child.proc))
        self.echo(child.name, child.color, f"started (pid {child.proc.pid})")

    async def _pump(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.echo(child.name, child.color, line if self.raw else render_json_line(line))

    async def _watch(self, child: Child) -> None:
        while not self.stopping.is_set():
            await self._spawn(child)
            assert child.proc is not None
            code = await child.proc.wait()
            if child.pump is not None:
                await child.pump
            if self.stopping.is_set():
                return
            healthy_for = time.monotonic() - child.started_at
            child.backoff_s = 1.0 if healthy_for > 60 else min(child.backoff_s * 2, 30.0)
            child.restarts += 1
            self.echo(
                child.name,
                child.color,
                f"exited with code {code}; restart #{child.restarts} in {child.backoff_s:.0f}s",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), child.backoff_s)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.settings.database_roles:
            roles = await provision_roles(self.settings)
            self.echo("choreo", "white", f"PostgreSQL roles ready: {', '.join(roles)}")
        if self.settings.kafka_secure:
            users = await provision_kafka_access(self.settings)
            self.echo("choreo", "white", f"Kafka users and ACLs ready: {', '.join(users)}")
        watchers = [asyncio.create_task(self._watch(c)) for c in self.children]
        try:
            await self.stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        self.echo("choreo", "white", "stopping all processes")
        began = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.returncode is None:
                child.proc.send_signal(signal.SIGTERM)
        running = [child for child in self.children if child.proc is not None]
        self.stopped = list(
            await asyncio.gather(*(self._await_stop(child, began) for child in running))
        )
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.echo("choreo", "white", f"all processes stopped {summary(self.stopped)}")
        with contextlib.suppress(OSError):  # a report for `choreo stop`; the log says it too
            self.report_path.write_bytes(orjson.dumps([asdict(s) for s in self.stopped]))

    async def _await_stop(self, child: Child, began: float) -> Stopped:
        """Wait for ``child`` (sent SIGTERM at ``began``) to exit; kill it past the grace."""
        assert child.proc is not None
        killed = False
        try:
            await asyncio.wait_for(
                child.proc.wait(), max(0.1, began + self.grace_s - time.monotonic())
            )
        except TimeoutError:
            self.echo(child.name, child.color, "did not stop in time; killing")
            child.proc.kill()
            await child.proc.wait()
            killed = True
        code = child.proc.returncode
        return Stopped(
            child.name, code if code is not None else -1, round(time.monotonic() - began, 1), killed
        )
