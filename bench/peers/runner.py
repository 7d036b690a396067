"""`choreo bench peers`: Choreo, DBOS and Temporal one after the other, same orders, same
arrival pattern, each measured the same way.

- **Choreo**: :func:`bench.saga.run` (every process of the platform on a fresh topic prefix),
  without its raw baselines; its service schemas are checked for the invariants afterwards.
- **DBOS** and **Temporal**: one child process each (:mod:`bench.peers.dbos_saga`,
  :mod:`bench.peers.temporal_saga`) that warms up, then runs the load between two handshakes
  (:mod:`bench.peers.load`); the runner takes CPU snapshots at both, of the child, the shared
  PostgreSQL (with its backends) and, for Temporal, the dev server it started for the run.

Each peer's state lives in its own fresh schema, dropped once its invariants are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
import psutil

from bench import saga
from bench.measure import cpu_seconds, peak_rss_kb
from bench.peers import WARM_UP
from bench.peers.load import (
    DONE,
    END,
    GO,
    PROTOCOL_PREFIX,
    READY,
    LoadConfig,
    check_invariants,
    drop_schemas,
)
from bench.peers.report import ProcessCost, Role, SystemFigures, figures_from_orders
from bench.peers.server import TemporalDevServer
from bench.result import SagaConfig, SagaResult
from choreo import registry
from choreo.mix import DEFAULT_MIX, parse_mix
from choreo.platform import remove_deployment
from choreo.stack import Stack
from events.errors import ChoreoError
from events.settings import Settings, get_settings

Log = Callable[[str], None]
MODULES = {"dbos": "bench.peers.dbos_saga", "temporal": "bench.peers.temporal_saga"}
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class PeersConfig:
    """What `choreo bench peers` runs: every system in ``systems`` at every rate (None is a
    burst: every order at once)."""

    orders: int = 1000
    rates: tuple[float | None, ...] = (None,)
    mix: dict[str, int] = field(default_factory=lambda: parse_mix(DEFAULT_MIX))
    systems: tuple[str, ...] = ("choreo", "dbos", "temporal")
    in_flight: int = 1000
    timeout_s: float = 900.0
    warm_up: int = WARM_UP
    """Orders each system runs before its clock starts (`choreo bench --warm-up`)."""
    tracing: bool = False
    """Choreo's tracing and metrics export (the peers are run without an exporter)."""


def run(config: PeersConfig, log: Log, status: Log) -> list[SystemFigures]:
    """Every system at every rate, one after the other; a system that fails is reported with
    its error and the others still run."""
    settings = get_settings()
    infra = {s.name: s.pid for s in Stack().up(log) if s.pid is not None and s.running}
    runs: list[SystemFigures] = []
    for rate in config.rates:
        for system in config.systems:
            status(f"{system}: {config.orders} orders, rate {rate or 'burst'}")
            started = time.perf_counter()
            try:
                if system == "choreo":
                    figures = _run_choreo(config, rate, log, status)
                else:
                    figures = _run_peer(system, config, rate, settings, infra["postgres"], log)
            except (ChoreoError, OSError, RuntimeError, TimeoutError) as exc:
                figures = SystemFigures(system=system, rate=rate)
                figures.errors.append(f"{type(exc).__name__}: {exc}")
            log(f"{system} at rate {rate or 'burst'} took {time.perf_counter() - started:.0f} s")
            runs.append(figures)
    return runs


# --------------------------------------------------------------------------- Choreo


def _run_choreo(config: PeersConfig, rate: float | None, log: Log, status: Log) -> SystemFigures:
    saga_config = SagaConfig(
        orders=config.orders,
        rate=rate,
        mix=config.mix,
        tracing=config.tracing,
        # Untraced, no telemetry at all: the peers are run without an exporter, and so were
        # the runs the README reports.
        metrics=config.tracing,
        timeout_s=config.timeout_s,
        in_flight=config.in_flight,
        warm_up=config.warm_up,
        baselines=False,
        keep_deployment=True,  # its services' tables hold the invariants' state
    )
    result = saga.run(saga_config, log, status)
    try:
        return choreo_figures(result, rate, config.tracing)
    finally:
        settings = get_settings().model_copy(update={"topic_prefix": result.prefix})
        asyncio.run(remove_deployment(settings))  # its topics, schemas and roles


def choreo_figures(result: SagaResult, rate: float | None, tracing: bool) -> SystemFigures:
    """Choreo's run in the peers' terms: its processes are the application, Kafka its server,
    the bench process its client (Jaeger counts only when tracing: untraced, the run exports
    no metrics either)."""
    figures = SystemFigures(
        system="choreo",
        rate=rate,
        placed=result.placed,
        finished=result.finished,
        window_s=result.window_s,
        publish_s=result.publish_s,
        latency=result.latency,
        outcomes=result.outcomes,
        unexpected=result.unexpected,
        errors=list(result.errors),
        notes=list(result.notes),  # a broker still warming up inflates Choreo's CPU and p99
        setup=f"{len(result.processes)} processes on Kafka + PostgreSQL"
        + (", traced" if tracing else ", untraced")
        + f"; {result.events} events produced, projector lag at end {result.projector_lag}",
    )
    roles: dict[str, Role] = {"kafka": "server", "postgres": "postgres", "jaeger": "server"}
    for p in result.processes:
        figures.processes.append(ProcessCost(p.name, "app", p.cpu_s_run, p.peak_rss_mb))
    for p in result.infrastructure:
        if p.name == "jaeger" and not tracing:
            continue
        role = roles.get(p.name, "client")
        figures.processes.append(ProcessCost(p.name, role, p.cpu_s_run, p.peak_rss_mb))
    settings = get_settings().model_copy(update={"topic_prefix": result.prefix})
    try:
        figures.invariants = asyncio.run(
            check_invariants(
                settings.database_url,
                registry.get("inventory").schema(settings),
                registry.get("payment").schema(settings),
            )
        )
    except Exception as exc:
        figures.errors.append(f"invariant check failed: {type(exc).__name__}: {exc}")
    return figures


# --------------------------------------------------------------------------- the peers


class _Child:
    """A peer's child process and the handshake lines it prints."""

    def __init__(self, cmd: Sequence[str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_path.open("ab")
        self.proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith(PROTOCOL_PREFIX):
                self.lines.put(line[len(PROTOCOL_PREFIX) :].strip())
        self.lines.put("")  # end of output: the child exited

    def expect(self, word: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"the child did not say {word} within {timeout:.0f} s") from None
            if line == word:
                return
            if line == "":
                raise RuntimeError(f"the child exited (code {self.proc.wait()}) before {word}")

    def say(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def close(self) -> int:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        self.log_file.close()
        return code


# Long: the measured window of a peer in one place, bracketed by the two handshakes.
def _run_peer(
    system: str,
    config: PeersConfig,
    rate: float | None,
    settings: Settings,
    postgres_pid: int,
    log: Log,
) -> SystemFigures:
    run_id = uuid.uuid4().hex[:8]
    schema = f"peers_{system}_{run_id}"
    out_dir = settings.state_dir / "bench" / schema
    out_dir.mkdir(parents=True, exist_ok=True)
    server = TemporalDevServer(settings) if system == "temporal" else None
    server_pid = server.start(log) if server is not None else None
    load = LoadConfig(
        system=system,
        orders=config.orders,
        rate=rate,
        mix=config.mix,
        in_flight=config.in_flight,
        timeout_s=config.timeout_s,
        warm_up=config.warm_up,
        database_url=settings.database_url,
        schema=schema,
        result_path=str(out_dir / "result.json"),
        temporal_address=server.address if server is not None else "",
    )
    cmd = [sys.executable, "-m", MODULES[system], load.to_json().decode()]
    log(f"{system}: starting its process (schema {schema}, log {out_dir / 'child.log'})")
    child = _Child(cmd, out_dir / "child.log")
    watched: list[tuple[str, Role, int, bool]] = [
        (f"{system} app (client + worker)", "app", child.proc.pid, False),
        ("postgres", "postgres", postgres_pid, True),
    ]
    if server_pid is not None:
        watched.append(("temporal server", "server", server_pid, True))
    try:
        child.expect(READY, READY_TIMEOUT_S + config.timeout_s)  # setup, then the warm-up
        before = [cpu_seconds(pid, with_children=kids) for _, _, pid, kids in watched]
        child.say(GO)
        child.expect(DONE, config.timeout_s + 60)
        after = [cpu_seconds(pid, with_children=kids) for _, _, pid, kids in watched]
        peaks = [_peak_mb(pid, kids) for _, _, pid, kids in watched]
        child.say(END)
    finally:
        code = child.close()
        if server is not None:
            server.stop(log)
        asyncio.run(drop_schemas(settings.database_url, schema, f"{schema}_dbos"))
    figures = _peer_figures(system, rate, out_dir / "result.json")
    figures.processes = [
        ProcessCost(name, role, round(a - b, 2) if a is not None and b is not None else None, peak)
        for (name, role, _, _), b, a, peak in zip(watched, before, after, peaks, strict=True)
    ]
    if code != 0:
        figures.errors.append(f"the {system} process exited with code {code}")
    return figures


def _peak_mb(pid: int, with_children: bool) -> float | None:
    """Peak RSS in MB (the process's own; PostgreSQL's is not summed over its backends)."""
    del with_children
    kb = peak_rss_kb(pid)
    return round(kb / 1024, 1) if kb else None


def _peer_figures(system: str, rate: float | None, path: Path) -> SystemFigures:
    data = orjson.loads(path.read_bytes())
    orders = [(o["scenario"], o["published"], o["finished"], o["outcome"]) for o in data["orders"]]
    figures = figures_from_orders(system, rate, orders, data["publish_s"])
    figures.invariants = data["invariants"]
    figures.errors += data["errors"]
    figures.setup = {
        "dbos": "one process (client + DBOS executor, queue worker_concurrency 100), PostgreSQL",
        "temporal": "one process (client + worker), Temporal dev server (SQLite file), PostgreSQL",
    }[system]
    return figures


def machine_load() -> str:
    """The load average and CPU count, for the report's caveat."""
    load = psutil.getloadavg()
    return f"{psutil.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
