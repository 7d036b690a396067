"""`choreo chaos` at a small size against a real `choreo run`: every invariant holds.

The platform runs as `make run` runs it, under `choreo run`'s supervisor (which restarts what
the chaos kills), with a topic prefix of its own; the chaos run is the real command, its
report read from ``--json``; a third of its orders get a return once they settle (the returns
saga under the same faults). Faults: a SIGKILL of every kind of process, a SIGSTOP past the
session timeout, re-sends (byte for byte and as client retries) and malformed values on every
topic. Broker and PostgreSQL restarts are left out here: the e2e tests share one stack, and
restarting it would fail the tests beside it (`choreo chaos --faults all` on a stack of its
own covers them; see the README's chaos section). That a violation is detected is tested on
crafted table states in ``tests/unit/choreo/chaos``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from choreo.platform import remove_deployment
from choreo.registry import NAMES
from events.settings import get_settings
from events.topics import provision_topics
from tests.e2e.conftest import BASE_ENV
from tests.e2e.platform import _free_port

pytestmark = pytest.mark.integration

ORDERS = 40
DEADLINE_CHECK = "no saga cancelled by a deadline whose participant would answer"
# Deadlines judge the participant: payment, stopped first (while the orders come in) for longer
# than every step's deadline (20-30 s in BASE_ENV), has no order cancelled by deadline, since
# the time its group had no live member is not charged to it (with deadlines at their due time,
# `CHOREO_SAGA_TIMER_FAIR=false`, this test fails).
STOP_S = 35


@pytest.fixture(scope="module")
def platform(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A supervised platform (`choreo run`) with its own topics; yields its environment."""
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    settings = get_settings().model_copy(update={"topic_prefix": prefix})
    asyncio.run(provision_topics(settings))
    env = {
        **os.environ,
        **BASE_ENV,
        "CHOREO_TOPIC_PREFIX": prefix,
        # Named, not defaulted: the chaos run finds the platform's processes by it.
        "CHOREO_STATE_DIR": str(settings.state_dir),
        "CHOREO_API_PORT": str(_free_port()),
        "CHOREO_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    log_path: Path = tmp_path_factory.mktemp("chaos") / "run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-m", "choreo", "run"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_ready(log_path, run)
        yield env
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            run.wait(60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()
        asyncio.run(remove_deployment(settings))


def wait_ready(log_path: Path, run: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Until every process logged that it is ready (ten processes import on two busy cores)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = log_path.read_text(errors="replace")
        waiting = [name for name in NAMES if f"{name} ready" not in text]
        if not waiting:
            return
        assert run.poll() is None, f"choreo run exited:\n{text[-3000:]}"
        assert time.monotonic() < deadline, f"not ready: {waiting}\n{text[-3000:]}"
        time.sleep(0.2)


def test_chaos_run_keeps_every_invariant(platform: dict[str, str]):
    args = [
        sys.executable, "-m", "choreo", "chaos", "--orders", str(ORDERS), "--rate", "8",
        "--mix", "happy=5,large=1,declined=1,flaky=1,unshippable=1,bounce=1",
        "--faults", "stop,kill,resend,malformed", "--resend", "10", "--quiet-timeout", "150",
        "--stop-seconds", str(STOP_S), "--returns", "35",
        "--json",
    ]  # fmt: skip
    done = subprocess.run(args, env=platform, capture_output=True, timeout=400, check=False)
    assert done.stdout, done.stderr.decode(errors="replace")[-3000:]
    report = orjson.loads(done.stdout)
    print(f"chaos run: {report['seconds']}s, faults {report['faults']}")
    failed = [i for i in report["invariants"] if not i["held"]]
    assert failed == [], failed
    assert [f for f in report["faults"] if f["error"]] == []
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert report["held"] is True
    assert report["quiet"] is True
    assert report["placed"] == ORDERS
    returns = {s: n for s, n in report["outcomes"].items() if s.startswith("return ")}
    assert sum(sum(endings.values()) for endings in returns.values()) == report["returned"] > 0
    killed = {f["target"] for f in report["faults"] if f["kind"] == "kill"}
    assert killed == set(NAMES)
    kinds = {f["kind"] for f in report["faults"]}
    assert kinds == {"kill", "stop", "resend", "malformed"}
    # Every invariant looked at something (no deadline cancelled any order: nothing to judge).
    checked = {i["name"]: i["checked"] for i in report["invariants"]}
    assert [name for name, count in checked.items() if count == 0] == [DEADLINE_CHECK], checked
    assert report["resent"] == 10
    assert report["retried"] > 0
    assert report["cancelled_by_deadline"] == 0
    assert report["unexpected"] == 0, report["outcomes"]
