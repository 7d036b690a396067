"""The dead-letter queue as an operator sees it: what is pending, and redriving it.

A redrive publishes a dead letter's original record again, byte for byte, to its source topic
(consumers that handled it before skip it: same event id), and appends a **redrive marker** to
the dead-letter topic saying which letter was redriven, when and by whom, so the topic itself
is the record of what was redriven. The CLI (`choreo dlq`) and the HTTP API both use
:class:`DeadLetterQueue`; it knows only the runtime's dead-letter format, no domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from events.dlq import DeadLetter
from events.errors import ChoreoError
from events.model import utc_now
from events.producer import EventProducer, OutgoingRecord
from events.settings import Settings
from events.topics import read_to_end

REDRIVE_MARKER = "dlq_redrive"
"""Header of a redrive marker record in the dead-letter topic (its value: the letter's id)."""


@dataclass(frozen=True)
class DeadLetterEntry:
    """A dead letter as stored in the DLQ topic, with its id (``partition:offset``).

    Attributes:
        id: ``partition:offset`` of the letter in the dead-letter topic.
        letter: What failed, why, and the original bytes.
        redriven_at: When it was redriven; None while pending.
        redriven_by: Who redrove it (``cli`` or the API token's name); None while pending.
    """

    id: str
    letter: DeadLetter
    redriven_at: datetime | None = None
    redriven_by: str | None = None


class DeadLetterQueue:
    """Reads the dead-letter topic of ``settings`` and redrives its letters with ``producer``
    (which the caller starts and stops)."""

    def __init__(self, settings: Settings, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer

    async def entries(self, *, include_redriven: bool = False) -> list[DeadLetterEntry]:
        """Every dead letter in the DLQ topic, oldest first (pending ones only by default)."""
        letters: dict[str, DeadLetter] = {}
        redriven: dict[str, tuple[datetime, str | None]] = {}
        for partition, offset, headers, value in sorted(await self._read()):
            entry_id = f"{partition}:{offset}"
            if any(k == REDRIVE_MARKER for k, _ in headers):
                marker = orjson.loads(value)
                redriven[marker["id"]] = (datetime.fromisoformat(marker["at"]), marker.get("by"))
                continue
            try:
                letters[entry_id] = DeadLetter.from_json(value)
            except ValueError:
                continue  # not a dead letter record; nothing Choreo wrote
        entries = [
            DeadLetterEntry(entry_id, letter, *redriven.get(entry_id, (None, None)))
            for entry_id, letter in letters.items()
        ]
        return [e for e in entries if include_redriven or e.redriven_at is None]

    async def redrive(self, entry_ids: Sequence[str], *, by: str) -> list[DeadLetterEntry]:
        """Publish the original messages of ``entry_ids`` again to their source topics,
        unchanged, and mark them redriven by ``by``.

        Raises:
            ChoreoError: an id is not a pending dead letter, or its letter kept no value.
        """
        wanted = set(entry_ids)
        entries = [e for e in await self.entries() if e.id in wanted]
        missing = wanted - {e.id for e in entries}
        if missing:
            raise ChoreoError(f"no pending dead letter {', '.join(sorted(missing))}")
        records: list[OutgoingRecord] = []
        for entry in entries:
            records.extend(self._redrive_records(entry, by))
        await self.producer.send_records(records)
        return entries

    def _redrive_records(self, entry: DeadLetterEntry, by: str) -> list[OutgoingRecord]:
        letter = entry.letter
        if letter.original_value is None:
            raise ChoreoError(f"dead letter {entry.id} has no original value to redrive")
        marker = {"id": entry.id, "at": utc_now().isoformat(), "by": by}
        return [
            OutgoingRecord(
                topic=letter.source_topic,
                key=letter.original_key or b"",
                value=letter.original_value,
                headers=tuple(letter.original_headers),
                event_type=letter.event_type or "",
            ),
            OutgoingRecord(
                topic=self.settings.dlq_topic,
                key=letter.original_key or b"",
                value=orjson.dumps(marker),
                headers=((REDRIVE_MARKER, entry.id.encode()),),
            ),
        ]

    async def _read(self) -> list[tuple[int, int, list[tuple[str, bytes]], bytes]]:
        return [
            (r.partition, r.offset, list(r.headers or ()), r.value or b"")
            async for r in read_to_end(self.settings, [self.settings.dlq_topic])
        ]
