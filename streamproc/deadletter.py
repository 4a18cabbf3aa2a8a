"""The dead-letter store: inputs that could not be processed, kept whole.

A dead letter is written in the same transaction that claims its message id
in the inbox, so the message counts as done exactly when its dead letter
exists: nothing is dropped silently and nothing is dead-lettered twice.
Replay removes both rows and re-publishes the original bytes, with the
original message id, through the outbox, so the processor sees it afresh.
"""

from __future__ import annotations

import datetime as dt
import traceback as tb
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from . import outbox
from .messages import MESSAGE_ID_HEADER, Record, headers_from_json, headers_to_json
from .schema import qualified

__all__ = ["DeadLetter", "StoredDeadLetter", "append", "list_letters", "purge", "replay", "show"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A failed input with its reason and failure history."""

    processor: str
    message_id: str
    record: Record
    reason: str
    error_type: str
    error_message: str
    traceback: str
    attempts: int
    first_failed_at: dt.datetime
    last_failed_at: dt.datetime

    @classmethod
    def from_exception(
        cls,
        processor: str,
        message_id: str,
        record: Record,
        exc: BaseException,
        *,
        attempts: int,
        first_failed_at: dt.datetime | None = None,
    ) -> DeadLetter:
        """A dead letter for ``exc``; ``reason`` is the error's code or ``handler_error``."""
        now = dt.datetime.now(dt.timezone.utc)
        return cls(
            processor=processor,
            message_id=message_id,
            record=record,
            reason=getattr(exc, "reason", "handler_error"),
            error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            error_message=str(exc)[:4000],
            traceback="".join(tb.format_exception(exc))[-16000:],
            attempts=attempts,
            first_failed_at=first_failed_at or now,
            last_failed_at=now,
        )


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter read back from the store, with its row id."""

    id: int
    letter: DeadLetter
    created_at: dt.datetime


async def append(conn: AsyncConnection, schema: str, letters: Sequence[DeadLetter]) -> None:
    """Insert ``letters`` in the caller's transaction (one statement)."""
    if not letters:
        return
    columns = (
        "processor, message_id, topic, partition, \"offset\", key, value, headers, reason, "
        "error_type, error_message, traceback, attempts, first_failed_at, last_failed_at"
    )
    await conn.exec_driver_sql(
        f"""INSERT INTO {qualified(schema, "dead_letter")} ({columns})
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[],
                $6::bytea[], $7::bytea[], $8::jsonb[], $9::text[], $10::text[], $11::text[],
                $12::text[], $13::int[], $14::timestamptz[], $15::timestamptz[])
            ON CONFLICT (processor, message_id) DO NOTHING""",
        (
            [d.processor for d in letters],
            [d.message_id for d in letters],
            [d.record.topic for d in letters],
            [d.record.partition for d in letters],
            [d.record.offset for d in letters],
            [d.record.key for d in letters],
            [d.record.value for d in letters],
            [headers_to_json(d.record.headers) for d in letters],
            [d.reason for d in letters],
            [d.error_type for d in letters],
            [d.error_message for d in letters],
            [d.traceback for d in letters],
            [d.attempts for d in letters],
            [d.first_failed_at for d in letters],
            [d.last_failed_at for d in letters],
        ),
    )


_SELECT = """SELECT id, processor, message_id, topic, partition, "offset", key, value, headers,
    reason, error_type, error_message, traceback, attempts, first_failed_at, last_failed_at,
    created_at FROM {table}"""


def _from_row(row: Any) -> StoredDeadLetter:
    record = Record(row[3], row[4], row[5], row[6], row[7], headers_from_json(row[8]))
    letter = DeadLetter(row[1], row[2], record, *row[9:16])
    return StoredDeadLetter(row[0], letter, row[16])


async def list_letters(
    conn: AsyncConnection, schema: str, processor: str | None = None, limit: int = 100
) -> list[StoredDeadLetter]:
    """The newest ``limit`` dead letters, of one processor or all."""
    result = await conn.exec_driver_sql(
        _SELECT.format(table=qualified(schema, "dead_letter"))
        + " WHERE ($1::text IS NULL OR processor = $1) ORDER BY id DESC LIMIT $2",
        (processor, limit),
    )
    return [_from_row(row) for row in result]


async def show(conn: AsyncConnection, schema: str, letter_id: int) -> StoredDeadLetter | None:
    """One dead letter by id."""
    result = await conn.exec_driver_sql(
        _SELECT.format(table=qualified(schema, "dead_letter")) + " WHERE id = $1", (letter_id,)
    )
    row = result.first()
    return _from_row(row) if row is not None else None


async def replay(conn: AsyncConnection, schema: str, letter_ids: Sequence[int], shards: int) -> int:
    """Send dead letters back through their processor; return how many.

    In the caller's transaction: delete each letter and its inbox row, and
    stage the original record (same key, value, headers and message id) in the
    outbox for its source topic. The processor handles it with fresh attempts.
    """
    result = await conn.exec_driver_sql(
        f"""DELETE FROM {qualified(schema, "dead_letter")} WHERE id = ANY($1::bigint[])
            RETURNING processor, message_id, topic, key, value, headers""",
        (list(letter_ids),),
    )
    rows: Sequence[Any] = result.all()
    if not rows:
        return 0
    await conn.exec_driver_sql(
        f"""DELETE FROM {qualified(schema, "inbox")} AS i
            USING unnest($1::text[], $2::text[]) AS r(processor, message_id)
            WHERE i.processor = r.processor AND i.message_id = r.message_id""",
        ([row[0] for row in rows], [row[1] for row in rows]),
    )
    messages = []
    for _, message_id, topic, key, value, headers in rows:
        kept = [(k, v) for k, v in headers_from_json(headers) if k != MESSAGE_ID_HEADER]
        kept.insert(0, (MESSAGE_ID_HEADER, message_id.encode()))
        messages.append(outbox.OutboxMessage(topic, key, value, kept))
    await outbox.append(conn, schema, messages, shards)
    return len(rows)


async def purge(
    conn: AsyncConnection, schema: str, letter_ids: Sequence[int] | None = None
) -> int:
    """Delete dead letters (``letter_ids``, or all); their inbox rows stay, so they stay done."""
    result = await conn.exec_driver_sql(
        f"DELETE FROM {qualified(schema, 'dead_letter')} WHERE $1::bigint[] IS NULL OR id = ANY($1)",
        (list(letter_ids) if letter_ids is not None else None,),
    )
    return int(result.rowcount or 0)
