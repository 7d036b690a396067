"""A 503's detail names what is down: a lost PostgreSQL connection said only
"FileNotFoundError: [Errno 2] No such file or directory"."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError

from events.errors import StackError
from projections.api import _outage


def test_each_outage_names_what_is_down():
    gone = FileNotFoundError(2, "No such file or directory")
    assert _outage(gone) == (
        "PostgreSQL, which holds the read models, is not answering"
        " (FileNotFoundError: [Errno 2] No such file or directory)"
    )
    assert _outage(asyncpg.CannotConnectNowError("the database system is shutting down")) == (
        "PostgreSQL, which holds the read models, is not answering"
        " (CannotConnectNowError: the database system is shutting down)"
    )
    assert _outage(KafkaConnectionError("Unable to bootstrap")).startswith(
        "Kafka is not answering (KafkaConnectionError: "
    )
    # Already in words, or not an outage of either: as they are.
    assert _outage(StackError("cannot connect to PostgreSQL at db:5432")) == (
        "cannot connect to PostgreSQL at db:5432"
    )
    assert _outage(asyncpg.QueryCanceledError("statement timeout")) == (
        "QueryCanceledError: statement timeout"
    )
