"""The inbox: claim message ids for a processor inside the caller's transaction.

The rule the code relies on: a message id is claimed by exactly one committed
transaction per processor, because ``(processor, message_id)`` is the primary
key and the claim is ``INSERT … ON CONFLICT DO NOTHING``. Whoever inserted the
row (and committed) runs the handler; everyone else gets nothing back.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from .messages import Record
from .schema import qualified

__all__ = ["claim", "purge"]


async def claim(
    conn: AsyncConnection,
    schema: str,
    processor: str,
    entries: Sequence[tuple[str, Record]],
) -> set[str]:
    """Insert ``(message_id, record)`` entries; return the ids this call inserted.

    One statement whatever the batch size. Ids already in the inbox (duplicates,
    or claimed by a concurrent transaction that commits first) are not returned.
    """
    if not entries:
        return set()
    result = await conn.exec_driver_sql(
        f"""INSERT INTO {qualified(schema, "inbox")} (processor, message_id, topic, partition, "offset")
            SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[])
            ON CONFLICT DO NOTHING
            RETURNING message_id""",
        (
            processor,
            [message_id for message_id, _ in entries],
            [record.topic for _, record in entries],
            [record.partition for _, record in entries],
            [record.offset for _, record in entries],
        ),
    )
    return {row[0] for row in result}


async def purge(conn: AsyncConnection, schema: str, older_than_s: int, limit: int) -> int:
    """Delete up to ``limit`` inbox rows older than ``older_than_s``; return how many."""
    result = await conn.exec_driver_sql(
        f"""DELETE FROM {qualified(schema, "inbox")} WHERE ctid IN (
                SELECT ctid FROM {qualified(schema, "inbox")}
                WHERE processed_at < now() - make_interval(secs => $1)
                LIMIT $2)""",
        (older_than_s, limit),
    )
    return int(result.rowcount or 0)
