"""Retry decisions read ``is_transient``; here it meets errors PostgreSQL really raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from streamproc import Settings, TransientError, UndeclaredTopicError
from streamproc.database import create_engine
from streamproc.errors import is_transient


@pytest.fixture
async def db(database_url: str, db_schema: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """An engine and a two-row table ``(id, n)`` in the test's own schema."""
    engine = create_engine(Settings.from_env({}, database_url=database_url, schema=db_schema))
    table = f'"{db_schema}".counters'
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE TABLE {table} (id int PRIMARY KEY, n int)")
        await conn.exec_driver_sql(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    yield engine, table
    await engine.dispose()


async def test_a_real_deadlock_is_transient(db: tuple[AsyncEngine, str]) -> None:
    engine, table = db
    both_locked = asyncio.Barrier(2)

    async def cross(first: int, second: int) -> None:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"UPDATE {table} SET n = n + 1 WHERE id = {first}")
            await both_locked.wait()
            await conn.exec_driver_sql(f"UPDATE {table} SET n = n + 1 WHERE id = {second}")

    results = await asyncio.gather(cross(1, 2), cross(2, 1), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and "deadlock" in str(errors[0])
    assert is_transient(errors[0])


async def test_a_real_serialization_failure_is_transient(db: tuple[AsyncEngine, str]) -> None:
    engine, table = db
    both_read = asyncio.Barrier(2)

    async def read_then_write(row: int) -> None:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="SERIALIZABLE")
            async with conn.begin():
                await conn.exec_driver_sql(f"SELECT sum(n) FROM {table}")
                await both_read.wait()
                await conn.exec_driver_sql(f"UPDATE {table} SET n = n + 1 WHERE id = {row}")

    results = await asyncio.gather(read_then_write(1), read_then_write(2), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and "could not serialize" in str(errors[0])
    assert is_transient(errors[0])


async def test_a_refused_connection_is_transient_and_a_bug_is_not(db: tuple[AsyncEngine, str]) -> None:
    engine, _ = db
    dead = create_engine(Settings.from_env({}, database_url="postgresql+asyncpg://u:p@127.0.0.1:1/x"))
    with pytest.raises(Exception) as refused:
        async with dead.connect():
            pass
    await dead.dispose()
    assert is_transient(refused.value)
    with pytest.raises(Exception) as syntax:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELEC 1")
    assert not is_transient(syntax.value)
    assert is_transient(TransientError("x")) and not is_transient(UndeclaredTopicError("x"))
    assert not is_transient(KeyError("bug"))
