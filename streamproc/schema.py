"""The tables streamproc owns, created idempotently in the configured schema.

``inbox``        one row per (processor, message id) ever handled or dead-lettered
                 (within the retention window): the truth behind dedupe.
``outbox``       messages emitted by committed handlers, waiting for the relay;
                 ``id`` orders them, ``shard`` (a hash of the key) groups the
                 rows one relay sends at a time.
``dead_letter``  inputs that could not be processed, with bytes, headers,
                 position and reason.

Business tables belong to the application; they live on the same search path.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["SCHEMA_VERSION", "create_schema", "drop_schema", "qualified"]

SCHEMA_VERSION = 1

_DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.inbox (
    processor    text        NOT NULL,
    message_id   text        NOT NULL,
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (processor, message_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at ON {s}.inbox (processed_at);
CREATE TABLE IF NOT EXISTS {s}.outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    shard         smallint    NOT NULL,
    topic         text        NOT NULL,
    key           bytea,
    value         bytea,
    headers       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_shard_id ON {s}.outbox (shard, id);
CREATE TABLE IF NOT EXISTS {s}.dead_letter (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    processor       text        NOT NULL,
    message_id      text        NOT NULL,
    topic           text        NOT NULL,
    partition       integer     NOT NULL,
    "offset"        bigint      NOT NULL,
    key             bytea,
    value           bytea,
    headers         jsonb       NOT NULL,
    reason          text        NOT NULL,
    error_type      text        NOT NULL,
    error_message   text        NOT NULL,
    traceback       text        NOT NULL,
    attempts        integer     NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (processor, message_id)
);
"""


def qualified(schema: str, table: str) -> str:
    """``"schema".table``; ``schema`` is validated as an identifier by Settings."""
    return f'"{schema}".{table}'


async def create_schema(engine: AsyncEngine, schema: str) -> None:
    """Create streamproc's tables in ``schema`` if missing (safe to run concurrently).

    When the schema is already at :data:`SCHEMA_VERSION` this only reads, so a
    worker whose role may not run DDL starts against tables an admin created
    (``faust -A app init-db``).
    """
    async with engine.connect() as conn:
        if await _version(conn, schema) == SCHEMA_VERSION:
            return
    async with engine.begin() as conn:
        # One creator at a time: concurrent CREATE … IF NOT EXISTS can still collide.
        await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('streamproc.schema'))")
        await _run_script(conn, _DDL.format(s=f'"{schema}"'))
        if await _version(conn, schema) is None:
            await conn.exec_driver_sql(
                f'INSERT INTO "{schema}".schema_version VALUES ($1)', (SCHEMA_VERSION,)
            )


async def drop_schema(engine: AsyncEngine, schema: str) -> None:
    """Drop ``schema`` with everything in it (tests and ``reset``)."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _version(conn: AsyncConnection, schema: str) -> int | None:
    table = (await conn.exec_driver_sql("SELECT to_regclass($1)", (f'"{schema}".schema_version',))).scalar()
    if table is None:
        return None
    return (await conn.exec_driver_sql(f'SELECT max(version) FROM "{schema}".schema_version')).scalar()


async def _run_script(conn: AsyncConnection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            await conn.exec_driver_sql(statement)
