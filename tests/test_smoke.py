"""Smoke tests: the real broker and the real database work, and so does the test base."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg

from tests.kafka_helpers import consume_all, produce

ROOT = Path(__file__).resolve().parent.parent


async def test_kafka_round_trip(kafka_bootstrap: str, new_topic) -> None:
    topic = await new_topic()
    records = [
        (f"key-{i}".encode(), f"value-{i}".encode(), [("msg-id", f"id-{i}".encode()), ("seq", str(i).encode())])
        for i in range(10)
    ]

    sent = await produce(kafka_bootstrap, topic, records)
    got = await consume_all(kafka_bootstrap, topic, expected=10, timeout_s=30)

    assert [m.offset for m in sent] == list(range(10))
    assert len(got) == 10
    assert [r.offset for r in got] == list(range(10))
    assert [(r.key, r.value, list(r.headers)) for r in got] == records


async def test_new_topic_partitions(kafka_bootstrap: str, new_topic) -> None:
    topic = await new_topic(partitions=3)
    for p in range(3):
        await produce(kafka_bootstrap, topic, [(b"k", f"p{p}-{i}".encode(), []) for i in range(2)], partition=p)

    got = await consume_all(kafka_bootstrap, topic, expected=6, timeout_s=30)

    assert sorted((r.partition, r.offset, r.value) for r in got) == [
        (p, i, f"p{p}-{i}".encode()) for p in range(3) for i in range(2)
    ]


async def test_consume_all_returns_at_timeout(kafka_bootstrap: str, new_topic) -> None:
    topic = await new_topic()
    await produce(kafka_bootstrap, topic, [(None, b"only", [])])

    got = await consume_all(kafka_bootstrap, topic, expected=5, timeout_s=2)

    assert [r.value for r in got] == [b"only"]


async def test_postgres_round_trip(pg: asyncpg.Connection, db_schema: str) -> None:
    table = f'"{db_schema}".items'
    await pg.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, payload bytea,"
        " created_at timestamptz NOT NULL DEFAULT now())"
    )
    async with pg.transaction():
        await pg.execute(f"INSERT INTO {table} (id, name, payload) VALUES ($1, $2, $3)", 1, "héllo", b"\x00\xff")

    row = await pg.fetchrow(f"SELECT id, name, payload, created_at FROM {table}")

    assert (row["id"], row["name"], row["payload"]) == (1, "héllo", b"\x00\xff")
    assert row["created_at"] is not None
    # The table exists in this test's schema and nowhere else.
    schemas = await pg.fetchval(
        "SELECT array_agg(table_schema::text) FROM information_schema.tables WHERE table_name = 'items'"
    )
    assert db_schema in schemas
    assert await pg.fetchval("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", db_schema) == 1


async def test_missing_services_fail_with_hint(tmp_path: Path) -> None:
    """Without a reachable broker the tests fail (never skip) and say how to start it."""
    env = dict(os.environ, KAFKA_BROKER="kafka://127.0.0.1:1", DATABASE_URL="postgresql+asyncpg://x:y@127.0.0.1:1/z")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        f"{ROOT}/tests/test_smoke.py::test_kafka_round_trip",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = out.decode()

    assert proc.returncode == 1, text
    assert "Kafka is not reachable at 127.0.0.1:1" in text, text
    assert "make services" in text, text
    assert "skipped" not in text, text
