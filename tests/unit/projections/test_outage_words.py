"""A 503's detail names what is down: a lost PostgreSQL connection said only
"FileNotFoundError: [Errno 2] No such file or directory"."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from events.errors import StackError
from projections.api import _outage

KAFKA = "k1:9092,k2:9092"


def test_each_outage_names_what_is_down():
    gone = FileNotFoundError(2, "No such file or directory")
    assert _outage(gone, KAFKA) == (
        "PostgreSQL, which holds the read models, is not answering"
        " (FileNotFoundError: [Errno 2] No such file or directory)"
    )
    assert _outage(
        asyncpg.CannotConnectNowError("the database system is shutting down"), KAFKA
    ) == (
        "PostgreSQL, which holds the read models, is not answering"
        " (CannotConnectNowError: the database system is shutting down)"
    )
    unreachable = KafkaConnectionError("Unable to bootstrap from [('k1', 9092, <AF_INET: 2>)]")
    assert _outage(unreachable, KAFKA) == (
        "Kafka at k1:9092,k2:9092 is not answering (KafkaConnectionError)"
    )
    assert _outage(KafkaTimeoutError(), KAFKA) == (
        "Kafka at k1:9092,k2:9092 is not answering (KafkaTimeoutError)"
    )
    # Already in words, or not an outage of either: as they are.
    assert _outage(StackError("cannot connect to PostgreSQL at db:5432"), KAFKA) == (
        "cannot connect to PostgreSQL at db:5432"
    )
    assert _outage(asyncpg.QueryCanceledError("statement timeout"), KAFKA) == (
        "QueryCanceledError: statement timeout"
    )
