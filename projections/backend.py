"""What the API's endpoints share: the read models' connection and the write operations,
as FastAPI dependencies (kept on ``app.state`` by :func:`projections.api.create_app`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from events.database import Database
from events.settings import Settings
from projections.audit import RedriveAudit
from projections.lag import ConsumerLag
from projections.operations import Operations
from projections.queries import Queries


class Backend:
    """The API's connection to the read models; connects lazily if PostgreSQL was down at start."""

    def __init__(self, settings: Settings) -> None:
        self.db = Database(settings)
        self.queries = Queries(self.db, settings)
        self._lock = asyncio.Lock()

    async def connect(self) -> Queries:
        """The queries, on a started pool (started here once, if the lifespan could not)."""
        async with self._lock:  # two concurrent first requests must not open two pools
            await self.db.start()
        return self.queries

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        await self.db.stop()


async def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


async def _queries(backend: Annotated[Backend, Depends(_backend)]) -> Queries:
    return await backend.connect()


async def _operations(request: Request) -> Operations:
    operations: Operations = request.app.state.operations
    return operations


async def _audit(request: Request, backend: Annotated[Backend, Depends(_backend)]) -> RedriveAudit:
    await backend.connect()  # the audit shares the read models' pool
    audit: RedriveAudit = request.app.state.audit
    return audit


async def _lag(request: Request) -> ConsumerLag:
    lag: ConsumerLag = request.app.state.lag
    return lag


QueriesDep = Annotated[Queries, Depends(_queries)]
BackendDep = Annotated[Backend, Depends(_backend)]
OperationsDep = Annotated[Operations, Depends(_operations)]
AuditDep = Annotated[RedriveAudit, Depends(_audit)]
LagDep = Annotated[ConsumerLag, Depends(_lag)]
