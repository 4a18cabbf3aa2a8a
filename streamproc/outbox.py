"""The outbox: messages emitted by handlers, stored in the handler's transaction.

Rules the code relies on:
- rows are written only inside the processor's batch transaction, so a row
  exists if and only if the handler's effects committed (invariant 1), and
  nothing reaches Kafka before that commit (invariant 2);
- ``shard`` is a pure function of the key, so all rows of a key share a shard,
  and the relay sends a shard in ``id`` order while it holds that shard's
  advisory lock: per key, rows leave in the order they were committed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .messages import MESSAGE_ID_HEADER, Headers, headers_from_json, headers_to_json
from .schema import qualified

__all__ = ["OutboxMessage", "StoredMessage", "append", "delete", "fetch", "lock_shards", "notify_channel"]


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to publish: destination topic, key, value bytes and headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers

    def shard(self, shards: int) -> int:
        """The relay shard of this message: by key, else by message id."""
        basis = self.key
        if basis is None:
            basis = dict(self.headers).get(MESSAGE_ID_HEADER, b"")
        return zlib.crc32(basis) % shards


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """An outbox row read back by the relay."""

    id: int
    message: OutboxMessage


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel that announces new outbox rows of ``schema``."""
    return f"{schema}.outbox"


async def append(
    conn: AsyncConnection, schema: str, messages: Sequence[OutboxMessage], shards: int
) -> None:
    """Insert ``messages`` and NOTIFY the relay, in one statement of the caller's transaction.

    PostgreSQL delivers the notification only when the transaction commits.
    """
    if not messages:
        return
    await conn.exec_driver_sql(
        f"""WITH added AS (
                INSERT INTO {qualified(schema, "outbox")} (shard, topic, key, value, headers)
                SELECT * FROM unnest($1::smallint[], $2::text[], $3::bytea[], $4::bytea[], $5::jsonb[])
                RETURNING 1)
            SELECT pg_notify($6, '')""",
        (
            [m.shard(shards) for m in messages],
            [m.topic for m in messages],
            [m.key for m in messages],
            [m.value for m in messages],
            [headers_to_json(m.headers) for m in messages],
            notify_channel(schema),
        ),
    )


async def lock_shards(conn: AsyncConnection, schema: str, shards: int) -> list[int]:
    """Take, until the transaction ends, every shard no other relay holds now."""
    result = await conn.exec_driver_sql(
        """SELECT s FROM generate_series(0, $1 - 1) AS s
           WHERE pg_try_advisory_xact_lock(hashtext($2), s)""",
        (shards, notify_channel(schema)),
    )
    return [row[0] for row in result]


async def fetch(
    conn: AsyncConnection, schema: str, shards: Sequence[int], limit: int
) -> list[StoredMessage]:
    """The oldest ``limit`` rows of ``shards``, in id order."""
    if not shards:
        return []
    result = await conn.exec_driver_sql(
        f"""SELECT id, topic, key, value, headers FROM {qualified(schema, "outbox")}
            WHERE shard = ANY($1::smallint[]) ORDER BY id LIMIT $2""",
        (list(shards), limit),
    )
    rows: Sequence[Any] = result.all()
    return [
        StoredMessage(row[0], OutboxMessage(row[1], row[2], row[3], headers_from_json(row[4])))
        for row in rows
    ]


async def delete(conn: AsyncConnection, schema: str, ids: Sequence[int]) -> None:
    """Delete the rows ``ids`` (after the broker acknowledged them)."""
    await conn.exec_driver_sql(
        f"DELETE FROM {qualified(schema, 'outbox')} WHERE id = ANY($1::bigint[])", (list(ids),)
    )
