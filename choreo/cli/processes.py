"""`choreo service`, `choreo run` and `choreo stop`: Choreo's processes, one or all of them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import orjson
import typer

from choreo import replicas as replica_counts
from choreo.cli.common import console, fail, out, print_json
from choreo.registry import NAMES
from events.errors import ChoreoError
from events.settings import get_settings
from projections.tokens import ApiSettings


def service(
    name: Annotated[
        str,
        typer.Argument(help=", ".join(NAMES)),
    ],
) -> None:
    """Run one Choreo process in the foreground until SIGTERM or Ctrl-C."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.supervisor import load_runner

    try:
        runner = load_runner(name)
    except KeyError as exc:
        fail(ChoreoError(str(exc.args[0])))
    runner(get_settings())


def _run_pid_file() -> Path:
    return get_settings().state_dir / "run.pid"


def run(
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help=f"Run just this process, repeatable: {', '.join(NAMES)}.",
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background; log to .state/run.log.")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Show the processes' JSON log lines as they are.")
    ] = False,
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            "--replicas",
            metavar="NAME=N",
            help="Run N instances of a process in its consumer group (repeatable; adds to"
            " CHOREO_REPLICAS, e.g. payment=2,coordinator=2). Not the api.",
        ),
    ] = None,
) -> None:
    """Run all services, the saga coordinator and the projector as supervised processes
    (restarted when they crash) with one log stream; Ctrl-C or SIGTERM stops them cleanly."""
    # asyncpg: imported here to keep `choreo --help` quick (see choreo.cli.common).
    from choreo.supervisor import Supervisor

    names = only or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        known = ", ".join(NAMES)
        fail(ChoreoError(f"unknown process(es) {', '.join(unknown)}; one of {known}"))
    try:
        counts = replica_counts.parse([get_settings().replicas, *(replicas or ())])
    except ChoreoError as exc:
        fail(exc)
    if detach:
        _detach(names, counts)
        return
    _refuse_a_taken_api_port(names)

    def echo(name: str, color: str, line: str) -> None:
        out.print(f"[{color}]{name:>18}[/] | {line}", markup=True, highlight=False, soft_wrap=True)

    asyncio.run(Supervisor(names, echo=echo, raw=raw, replicas=counts).run())


def _detach(names: list[str], counts: dict[str, int]) -> None:
    pid_file = _run_pid_file()
    running = _run_pid()
    if running is not None:
        out.print(f"already running (pid {running}); `choreo stop` first")
        return
    _refuse_a_taken_api_port(names)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_path = pid_file.with_name("run.log")
    args = [sys.executable, "-m", "choreo", "run"]
    for name in names:
        args += ["--only", name]
    for name, count in counts.items():
        args += ["--replicas", f"{name}={count}"]
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "200"},
        )
    pid_file.write_text(str(proc.pid))
    start = log_path.stat().st_size if log_path.exists() else 0
    _wait_ready({n: counts.get(n, 1) for n in names}, log_path, start, proc)
    out.print(f"choreo running in the background (pid {proc.pid}); logs: {log_path}")
    out.print("stop it with: choreo stop")


def _refuse_a_taken_api_port(names: list[str]) -> None:
    """Fail at once when the API is to run and its port is taken: it would restart every 30 s
    without ever binding, and `--detach` wait two minutes for it."""
    from choreo.stack.base import port_open  # its package imports aiokafka: see common

    api = ApiSettings()
    host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host
    if "api" in names and api.port != 0 and port_open(api.port, host):
        fail(
            ChoreoError(
                f"port {api.port} of the API is taken, by another `choreo run` (`choreo stop`"
                " there) or another program; CHOREO_API_PORT moves the API, `--only` leaves"
                " it out"
            )
        )


def _wait_ready(
    counts: dict[str, int], log_path: Path, start: int, proc: object, timeout: float = 120.0
) -> None:
    """Wait until every instance of every process has logged that it is ready (read from the
    run log): ``counts`` is how many instances of each process run."""
    deadline = time.monotonic() + timeout
    pending = set(counts)
    with console.status("starting " + ", ".join(sorted(pending))) as status:
        while pending:
            with log_path.open("rb") as log_file:
                log_file.seek(start)
                text = log_file.read().decode(errors="replace")
            pending = {n for n in pending if text.count(f"{n} ready") < counts[n]}
            status.update("waiting for " + ", ".join(sorted(pending)))
            if getattr(proc, "poll", lambda: None)() is not None:
                fail(ChoreoError(f"choreo run exited; see {log_path}"))
            if time.monotonic() > deadline:
                waiting = ", ".join(sorted(pending))
                fail(ChoreoError(f"not ready after {timeout:.0f}s: {waiting}; see {log_path}"))
            time.sleep(0.2)


def _run_pid() -> int | None:
    """The detached run's pid, if its pid file names a process that is still that run (a
    pid file left by a run that died may name a pid reused since, or hold no number)."""
    try:
        pid = int(_run_pid_file().read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running `choreo run`."""
    import psutil  # only here: `choreo --help` stays quick

    try:
        command = psutil.Process(pid).cmdline()
    except psutil.Error:  # gone, or another user's
        return False
    return "choreo" in " ".join(command) and "run" in command


def stop(
    timeout: Annotated[
        float,
        typer.Option(
            min=1,
            help="Seconds to wait for the run to stop; then every process is killed (SIGKILL:"
            " no drain; what was not committed is read again at the next start).",
        ),
    ] = 30.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each process's exit code and seconds as JSON.")
    ] = False,
) -> None:
    """Stop a `choreo run --detach` and say how each of its processes stopped.

    Each gets SIGTERM, and drains and commits first. Each stops cleanly, is ended by its own
    stop timeout (the broker or the database did not answer: CHOREO_STOP_TIMEOUT_MS), or is
    killed at the supervisor's grace period's end."""
    from choreo.supervisor import STOP_REPORT, Stopped, summary

    pid_file = _run_pid_file()
    pid = _run_pid()
    if pid is None:
        pid_file.unlink(missing_ok=True)  # left by a run that is gone
        if as_json:
            print_json({"stopped": False, "processes": []})
        else:
            out.print("not running")
        return
    report = pid_file.with_name(STOP_REPORT)
    report.unlink(missing_ok=True)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with console.status("stopping: each process finishes its batch, commits and leaves"):
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    stopped = [Stopped(**s) for s in orjson.loads(report.read_bytes())] if report.exists() else []
    if as_json:
        processes = [{**asdict(s), "how": s.how} for s in stopped]
        print_json({"stopped": True, "processes": processes})
    elif stopped:
        out.print(f"stopped {summary(stopped)}")
    else:
        out.print("stopped")
