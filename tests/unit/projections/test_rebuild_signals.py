"""A rebuild's fork server: started only when there are workers, and ignoring Ctrl-C, as every
worker it forks does: the calling process handles the interruption and stops the workers (each
printed a traceback of its own before)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from events.settings import Settings
from projections import rebuild_lanes

ROOT = Path(__file__).resolve().parents[3]

PROBE = textwrap.dedent(
    """
    import multiprocessing
    import signal
    import sys
    import threading

    from projections import rebuild_lanes


    def disposition(queue):
        queue.put(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)


    if __name__ == "__main__":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([])
        if sys.argv[1] == "main":
            rebuild_lanes._start_fork_server()
        else:
            starter = threading.Thread(target=rebuild_lanes._start_fork_server)
            starter.start()
            starter.join()
        queue = context.Queue()
        worker = context.Process(target=disposition, args=(queue,))
        worker.start()
        ignored = queue.get(timeout=60)
        worker.join()
        print(ignored, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    """
)


def _probe(tmp_path: Path, thread: str) -> str:
    """Start a fork server as a rebuild does (from ``thread``), fork a worker from it; prints
    whether the worker ignores SIGINT and whether the caller's own handler is back."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    result = subprocess.run(
        [sys.executable, str(script), thread],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(("thread", "printed"), [("main", "True True"), ("other", "False True")])
def test_workers_ignore_sigint_when_the_main_thread_starts_the_fork_server(
    tmp_path: Path, thread: str, printed: str
):
    """From the main thread the fork server starts with SIGINT ignored, which its workers
    inherit, and the caller's handler is restored; another thread may not change a signal's
    handler, so there the workers keep Python's (the probe tells the two apart)."""
    assert _probe(tmp_path, thread) == printed


@pytest.mark.parametrize(("lanes", "started"), [(1, 0), (2, 1)])
async def test_the_fork_server_starts_only_for_workers(
    monkeypatch: pytest.MonkeyPatch, lanes: int, started: int
):
    """A rebuild of one lane replays in the calling process: it starts no fork server (a
    process importing the CLI and the codec's models for nothing)."""
    starts: list[None] = []
    monkeypatch.setattr(rebuild_lanes, "_start_fork_server", lambda: starts.append(None))
    monkeypatch.setattr(rebuild_lanes, "_start", lambda workers: None)

    async def replayed(*args: object) -> rebuild_lanes.LaneResult:
        return rebuild_lanes.LaneResult(events=0, skipped=0, sagas=0)

    async def collected(own: rebuild_lanes.LaneResult, *args: object) -> list[object]:
        return [own]

    monkeypatch.setattr(rebuild_lanes, "_rebuild_lane", replayed)
    monkeypatch.setattr(rebuild_lanes, "_collect", collected)
    partitions = [[TopicPartition("t", n)] for n in range(lanes)]
    ends = {lane[0]: 0 for lane in partitions}
    results = await rebuild_lanes.run_lanes(Settings(), None, "s", partitions, ends, None)  # type: ignore[arg-type]
    assert (len(starts), len(results)) == (started, 1)
