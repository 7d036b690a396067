"""The load a peer's process puts on itself, and the handshake that lets the runner measure it.

A peer's benchmark runs as one child process (the application: client and DBOS executor or
Temporal worker). It sets up, warms up with one order per scenario of the mix, prints
``READY`` and waits for ``GO`` on stdin (the runner takes its CPU snapshot in between); it
places the orders at the run's rate or flat out, follows each to its end, prints ``DONE`` and
waits for ``END`` (the runner's second snapshot), then checks the invariants and writes its
figures as JSON. Latency is measured on this process's clock, from just before the order is
started to the moment the system said it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson

from bench.peers.common import DDL, PeerOrder, peer_order, seed_stock
from choreo.mix import assign_scenarios, warm_up_scenarios
from events.settings import PROJECT_ROOT

READY, GO, DONE, END = "READY", "GO", "DONE", "END"
PROTOCOL_PREFIX = "peer-bench:"
"""Marks the handshake's lines on stdout (libraries may print there too)."""


@dataclass(frozen=True)
class LoadConfig:
    """What the child process runs; passed to it as JSON."""

    system: str
    orders: int
    rate: float | None
    mix: dict[str, int]
    in_flight: int
    timeout_s: float
    database_url: str
    schema: str
    result_path: str
    temporal_address: str = ""
    warm_up: int = 0
    """Orders placed before the clock besides one per scenario (`choreo bench --warm-up`)."""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> LoadConfig:
        return cls(**orjson.loads(data))


@dataclass
class OrderTiming:
    """One order's path through the run."""

    scenario: str
    published: float
    finished: float | None = None
    outcome: str | None = None


@dataclass
class LoadResult:
    """What the child reports: per-order timings (relative to the first publish), outcomes,
    the invariants and any errors."""

    orders: list[OrderTiming] = field(default_factory=list)
    invariants: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    publish_s: float = 0.0


class Driver(Protocol):
    """A peer's way to start an order; the awaitable yields (outcome, end time)."""

    async def start(self, order: PeerOrder) -> Awaitable[tuple[str, float]]: ...


def say(line: str) -> None:
    """One handshake line to the runner."""
    sys.stdout.write(f"{PROTOCOL_PREFIX}{line}\n")
    sys.stdout.flush()


async def wait_for(word: str) -> None:
    """Block until the runner writes ``word`` on stdin."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            raise EOFError(f"the runner closed stdin before {word}")
        if line.strip() == word:
            return


async def place_all(
    driver: Driver,
    scenarios: Sequence[str],
    rate: float | None,
    in_flight: int,
    new_id: Callable[[], str],
) -> tuple[list[OrderTiming], list[asyncio.Task[None]], float]:
    """Start one order per scenario at ``rate`` per second (or flat out), with at most
    ``in_flight`` starts unanswered; returns the timings, the tasks that follow each order to
    its end, and how long publishing took."""
    slots = asyncio.Semaphore(max(1, in_flight))
    timings: list[OrderTiming] = []
    followers: list[asyncio.Task[None]] = []
    starts: list[asyncio.Task[None]] = []

    async def follow(timing: OrderTiming, ending: Awaitable[tuple[str, float]]) -> None:
        try:
            timing.outcome, timing.finished = await ending
        except Exception as exc:
            timing.outcome = f"error: {type(exc).__name__}: {exc}"[:200]

    async def place(scenario: str) -> None:
        timing = OrderTiming(scenario, time.perf_counter())
        timings.append(timing)
        try:
            ending = await driver.start(peer_order(scenario, new_id()))
            followers.append(asyncio.create_task(follow(timing, ending)))
        except Exception as exc:
            # A start the system refused or never answered: the order counts as not ended.
            timing.outcome = f"not started: {type(exc).__name__}: {exc}"[:200]
        finally:
            slots.release()

    first = time.perf_counter()
    for i, scenario in enumerate(scenarios):
        if rate:
            delay = first + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await slots.acquire()
        starts.append(asyncio.create_task(place(scenario)))
    await asyncio.gather(*starts)
    return timings, followers, time.perf_counter() - first


# Long: the measured window in one place, between the two handshakes.
async def run_load(
    config: LoadConfig,
    driver: Driver,
    new_id: Callable[[], str],
    check: Callable[[], Awaitable[dict[str, Any]]],
) -> LoadResult:
    """Warm up, hand over to the runner, place the orders, follow them, check, report."""
    result = LoadResult()
    warm_up = warm_up_scenarios(config.mix, config.warm_up)
    _, warm, _ = await place_all(driver, warm_up, config.rate, config.in_flight, new_id)
    try:
        await asyncio.wait_for(asyncio.gather(*warm), config.timeout_s)
    except TimeoutError:
        result.errors.append(f"warm-up orders not all finished in {config.timeout_s:.0f} s")
    say(READY)
    await wait_for(GO)
    scenarios = assign_scenarios(config.mix, config.orders)
    timings, followers, result.publish_s = await place_all(
        driver, scenarios, config.rate, config.in_flight, new_id
    )
    pending: set[asyncio.Task[None]] = set()
    if followers:
        _, pending = await asyncio.wait(followers, timeout=config.timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        result.errors.append(f"{len(pending)} orders did not end within {config.timeout_s} s")
    say(DONE)
    await wait_for(END)
    first = min((t.published for t in timings), default=0.0)
    for t in timings:
        t.published -= first
        if t.finished is not None:
            t.finished -= first
    result.orders = timings
    try:
        result.invariants = await check()
    except Exception as exc:
        result.errors.append(f"invariant check failed: {type(exc).__name__}: {exc}")
    return result


def write_result(path: str, result: LoadResult) -> None:
    Path(path).write_bytes(orjson.dumps(asdict(result)))


async def check_invariants(dsn: str, inventory: str, payment: str) -> dict[str, Any]:
    """The invariants every system must keep, read from its state (works on Choreo's service
    schemas and on a peer's schema alike: the same table and column names).

    - ``unbalanced_skus``: SKUs whose available + reserved + shipped differs from the seed;
    - ``held_reservations``: orders still holding reserved units although every order ended;
    - ``refunds_missing``: charges of orders whose stock was released (cancelled after the
      charge) without exactly one refund; ``refunds_wrong``: charges of shipped orders that
      were refunded; ``refunds``: refunds made.
    """
    conn = await asyncpg.connect(dsn)
    try:
        unbalanced = await conn.fetchval(
            f"SELECT count(*) FROM {inventory}.stock WHERE available + reserved + shipped <> seeded"
        )
        held = await conn.fetchval(
            f"SELECT count(*) FROM {inventory}.reservations WHERE status = 'reserved'"
        )
        row = await conn.fetchrow(
            "SELECT"
            " count(*) FILTER (WHERE r.status = 'released' AND p.refund_count <> 1) AS missing,"
            " count(*) FILTER (WHERE r.status = 'shipped' AND p.refund_count <> 0) AS wrong,"
            " count(*) FILTER (WHERE p.refund_count = 1) AS refunds,"
            " count(*) AS charges"
            f" FROM {payment}.payments p JOIN {inventory}.reservations r USING (order_id)"
            " WHERE p.outcome = 'charged'"
        )
    finally:
        await conn.close()
    figures = {
        "unbalanced_skus": int(unbalanced),
        "held_reservations": int(held),
        "refunds_missing": int(row["missing"]),
        "refunds_wrong": int(row["wrong"]),
        "refunds": int(row["refunds"]),
        "charges": int(row["charges"]),
    }
    figures["ok"] = (
        not any(figures[k] for k in ("unbalanced_skus", "held_reservations", "refunds_missing"))
        and not figures["refunds_wrong"]
    )
    return figures


async def main_of(
    config: LoadConfig, setup: Callable[[LoadConfig], contextlib.AbstractAsyncContextManager[Any]]
) -> None:
    """A child process's body: ``setup`` yields (driver, new_id, check) for the run."""
    async with setup(config) as (driver, new_id, check):
        result = await run_load(config, driver, new_id, check)
    write_result(config.result_path, result)


async def prepare_schema(dsn: str, schema: str) -> None:
    """Create a peer's tables in a fresh schema and seed its stock as ``choreo bench`` does."""
    default = orjson.loads((PROJECT_ROOT / "services/inventory/seed_stock.json").read_bytes())
    stock = seed_stock(default)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(DDL.format(schema=schema))
        await conn.execute(
            f"INSERT INTO {schema}.stock (sku, seeded, available)"
            " SELECT sku, n, n FROM unnest($1::text[], $2::bigint[]) AS s(sku, n)"
            " ON CONFLICT (sku) DO NOTHING",
            list(stock),
            list(stock.values()),
        )
    finally:
        await conn.close()


async def drop_schemas(dsn: str, *schemas: str) -> None:
    """Remove a run's schemas (the peers' state is checked before, and not kept)."""
    conn = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
