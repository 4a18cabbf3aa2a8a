"""Inbox retention: rows past the window are purged in chunks, newer ones stay."""

from __future__ import annotations

import asyncpg

import streamproc
from streamproc.schema import create_schema


async def test_purge_removes_only_rows_past_the_retention(database_url: str, db_schema: str, pg: asyncpg.Connection) -> None:
    settings = streamproc.Settings.from_env(
        {}, database_url=database_url, schema=db_schema, inbox_retention_s=24 * 3600
    )
    app = streamproc.App("retention-test", settings=settings)
    await create_schema(app.engine, db_schema)
    await pg.execute(
        f"""INSERT INTO "{db_schema}".inbox (processor, message_id, topic, partition, "offset", processed_at)
            SELECT 'p', 'old-' || i, 't', 0, i, now() - interval '2 days' FROM generate_series(1, 25000) i
            UNION ALL
            SELECT 'p', 'new-' || i, 't', 0, i, now() - interval '1 hour' FROM generate_series(1, 100) i"""
    )
    await app._purge_inbox()  # more than one chunk of 10,000
    await app.engine.dispose()
    rows = await pg.fetch(f'SELECT left(message_id, 3) AS kind, count(*) FROM "{db_schema}".inbox GROUP BY 1')
    assert {r["kind"]: r["count"] for r in rows} == {"new": 100}
