"""The delivery a replay runs: the same transaction as live, without publishing anything.

:class:`ReplayDelivery` runs the inbox row and the handler in one PostgreSQL transaction, as
:class:`~events.delivery.TransactionalDelivery` does, but what the handler returns is not
staged: it was published when the message was first processed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from events.codec import Codec
from events.database import Connection, Database
from events.delivery import TransactionalDelivery
from events.model import Event, Message
from events.producer import OutgoingRecord
from events.settings import Settings

C = TypeVar("C")


class ReplayDelivery(TransactionalDelivery[C]):
    """A :class:`TransactionalDelivery` for rebuilding state from the log (``choreo replay``).

    The same transaction, inbox row and handler, but what the handler returns is not staged:
    it was published when the message was first processed. ``check``, if given, sees it
    (inside the transaction, so raising rolls the message back): the replay driver compares
    it with what the log shows.
    """

    def __init__(
        self,
        *,
        check: Callable[[Message[Event], Sequence[Event]], None] | None = None,
        db: Database,
        schema: str,
        context_factory: Callable[[Connection], C],
        producer_name: str,
        codec: Codec,
        settings: Settings,
    ) -> None:
        super().__init__(
            db=db,
            schema=schema,
            context_factory=context_factory,
            producer_name=producer_name,
            codec=codec,
            settings=settings,
        )
        self.check = check
        self.discarded = 0

    def outgoing(self, cause: Message[Event], outputs: Sequence[Event]) -> list[OutgoingRecord]:
        if self.check is not None:
            self.check(cause, outputs)
        self.discarded += len(outputs)
        return []
