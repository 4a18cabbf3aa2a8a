"""Processor.process against the real database, with events handed in directly.

These pin the commit protocol step by step; the worker tests (test_chain,
test_offsets, test_faults) show the same through Kafka.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from streamproc import Context, JsonCodec, Settings, UndeclaredTopicError
from streamproc.cache import HotIdCache
from streamproc.database import create_engine, create_sessions
from streamproc.processor import Processor, ProcessorOptions
from streamproc.schema import create_schema


class Base(DeclarativeBase):
    pass


class Effect(Base):
    __tablename__ = "effect"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String)
    n: Mapped[int] = mapped_column(Integer)


@dataclass
class Message:
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes]]
    key: bytes | None = b"k"
    topic: str = "in"
    partition: int = 0
    timestamp: float = 0.0


@dataclass
class Event:
    message: Message
    acks: list[int]

    def ack(self) -> bool:
        self.acks.append(self.message.offset)
        return True


@dataclass
class Host:
    settings: Settings
    tmp: Path
    sessions: Any = None
    caches: list[HotIdCache] = field(default_factory=list)

    def resolve_topic(self, topic: Any) -> tuple[str, JsonCodec]:
        if topic != "out":
            raise UndeclaredTopicError(topic)
        return "out", JsonCodec()

    def open_cache(self, processor: str) -> HotIdCache:
        cache = HotIdCache(self.tmp / processor, max_entries=1000, max_age_s=3600)
        self.caches.append(cache)
        return cache


@pytest.fixture
async def host(services: Any, database_url: str, tmp_path: Path) -> AsyncIterator[Host]:
    schema = f"p_{uuid.uuid4().hex[:10]}"
    settings = Settings.from_env({}, database_url=database_url, schema=schema, retry_backoff_ms=1)
    engine = create_engine(settings)
    await create_schema(engine, schema)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    h = Host(settings, tmp_path, create_sessions(engine))
    try:
        yield h
    finally:
        for cache in h.caches:
            cache.close()
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await engine.dispose()


def make(host: Host, handler: Any, **options: Any) -> Processor:
    defaults = dict(
        name="p", topic="in", codec=JsonCodec(), batch_size=100, batch_timeout_ms=10,
        max_attempts=3, max_message_bytes=1000, retry_backoff_ms=1, retry_backoff_max_ms=5,
    )
    return Processor(ProcessorOptions(**{**defaults, **options}), handler, host)


def events(values: list[tuple[str | None, bytes | None]], acks: list[int], start: int = 0) -> list[Event]:
    return [
        Event(Message(start + i, value, [("message-id", mid.encode())] if mid else []), acks)
        for i, (mid, value) in enumerate(values)
    ]


async def query(host: Host, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(host.settings.database_url.replace("+asyncpg", ""))
    try:
        return await conn.fetch(sql.replace("{s}", f'"{host.settings.schema}"'))
    finally:
        await conn.close()


async def test_batch_with_a_flaky_event_commits_each_effect_once(host: Host) -> None:
    calls: Counter[str] = Counter()

    async def handler(ctx: Context, value: dict) -> None:
        calls[ctx.message_id] += 1
        ctx.session.add(Effect(message_id=ctx.message_id, n=value["n"]))
        await ctx.emit("out", {"n": value["n"]}, key="k")
        if value.get("fail_times", 0) >= calls[ctx.message_id]:
            raise RuntimeError("flaky")

    processor = make(host, handler)
    acks: list[int] = []
    batch = [(f"m{i}", b'{"n": %d}' % i) for i in range(10)]
    batch[4] = ("m4", b'{"n": 4, "fail_times": 2}')
    await processor.process(events(batch, acks))

    rows = await query(host, "SELECT message_id, count(*) AS c FROM {s}.effect GROUP BY 1")
    assert {r["message_id"]: r["c"] for r in rows} == {f"m{i}": 1 for i in range(10)}
    assert await query(host, "SELECT count(*) FROM {s}.outbox") == [(10,)]
    assert await query(host, "SELECT count(*) FROM {s}.dead_letter") == [(0,)]
    assert calls["m4"] == 3 and acks == list(range(10))
    assert processor.stats.handler_failures == 2


async def test_a_failing_event_is_dead_lettered_and_its_rows_and_emits_rolled_back(host: Host) -> None:
    async def handler(ctx: Context, value: dict) -> None:
        ctx.session.add(Effect(message_id=ctx.message_id, n=value["n"]))
        await ctx.emit("out", {"n": value["n"]})
        if value["n"] == 2:
            raise ValueError("n=2 is not allowed")

    processor = make(host, handler)
    acks: list[int] = []
    await processor.process(events([(f"m{i}", b'{"n": %d}' % i) for i in range(5)], acks))

    assert sorted(r[0] for r in await query(host, "SELECT n FROM {s}.effect")) == [0, 1, 3, 4]
    assert await query(host, "SELECT count(*) FROM {s}.outbox") == [(4,)]
    (letter,) = await query(host, "SELECT * FROM {s}.dead_letter")
    assert (letter["message_id"], letter["reason"], letter["attempts"]) == ("m2", "handler_error", 3)
    assert letter["error_type"] == "builtins.ValueError" and "n=2 is not allowed" in letter["traceback"]
    assert letter["value"] == b'{"n": 2}' and letter["offset"] == 2
    assert acks == [0, 1, 2, 3, 4]
    # The dead-lettered id is done: a redelivery neither reruns it nor dead-letters it again.
    await processor.process(events([("m2", b'{"n": 2}')], acks, start=9))
    assert await query(host, "SELECT count(*) FROM {s}.dead_letter") == [(1,)]


async def test_duplicates_within_a_batch_across_batches_and_from_the_cache(host: Host) -> None:
    seen: list[str] = []

    async def handler(ctx: Context, value: dict) -> None:
        seen.append(ctx.message_id)
        ctx.session.add(Effect(message_id=ctx.message_id, n=value["n"]))

    processor = make(host, handler)
    acks: list[int] = []
    await processor.process(events([("a", b'{"n": 1}'), ("b", b'{"n": 2}'), ("a", b'{"n": 1}')], acks))
    assert processor.stats.transactions == 1
    await processor.process(events([("a", b'{"n": 1}'), ("b", b'{"n": 2}')], acks, start=3))
    # Answered by the cache: no transaction at all.
    assert processor.stats.transactions == 1 and processor.stats.cache_hits == 2
    # A fresh cache (lost disk): the inbox still says no.
    processor.cache.close()
    processor._cache = HotIdCache(host.tmp / "fresh", max_entries=10, max_age_s=60)
    host.caches.append(processor._cache)
    await processor.process(events([("a", b'{"n": 1}'), ("c", b'{"n": 3}')], acks, start=5))
    assert seen == ["a", "b", "c"]
    assert processor.stats.duplicates == 4
    assert acks == list(range(7))


async def test_bad_input_is_dead_lettered_with_its_reason(host: Host) -> None:
    async def handler(ctx: Context, value: dict) -> None:
        ctx.session.add(Effect(message_id=ctx.message_id, n=value["n"]))
        if "emit_to" in value:
            await ctx.emit(value["emit_to"], value)

    processor = make(host, handler, require_key=True)
    batch = [
        Event(Message(0, b"not json", [("message-id", b"j")]), []),
        Event(Message(1, b'{"n": "x"}' * 200, [("message-id", b"big")]), []),
        Event(Message(2, None, [("message-id", b"null")]), []),
        Event(Message(3, b'{"n": 1}', [("message-id", b"nokey")], key=None), []),
        Event(Message(4, b"\xff\xfe", [("message-id", b"utf")]), []),
        Event(Message(5, b'{"n": 1}', [("message-id", b"")]), []),
        Event(Message(6, b'{"n": 6, "emit_to": "nowhere"}', [("message-id", b"undeclared")]), []),
        Event(Message(7, b'{"n": 7}', [("message-id", b"good")]), []),
    ]
    await processor.process(batch)
    letters = await query(host, "SELECT message_id, reason, error_type FROM {s}.dead_letter ORDER BY \"offset\"")
    assert [(r["message_id"], r["reason"]) for r in letters] == [
        ("j", "invalid_json"),
        ("big", "payload_too_large"),
        ("null", "null_value"),
        ("nokey", "null_key"),
        ("utf", "invalid_utf8"),
        ("in/0/5", "invalid_message_id"),
        ("undeclared", "handler_error"),
    ]
    assert letters[-1]["error_type"] == "streamproc.errors.UndeclaredTopicError"
    assert [r[0] for r in await query(host, "SELECT message_id FROM {s}.effect")] == ["good"]
    assert all(e.acks == [e.message.offset] for e in batch)


async def test_a_lost_database_is_waited_for_not_skipped(host: Host) -> None:
    """The first two transactions lose their connection; the batch commits on the third."""
    from streamproc import TransientError

    failures = [TransientError("connection lost"), TransientError("connection lost")]

    async def handler(ctx: Context, value: dict) -> None:
        if failures:
            raise failures.pop()
        ctx.session.add(Effect(message_id=ctx.message_id, n=value["n"]))

    processor = make(host, handler)
    acks: list[int] = []
    await processor.process(events([("a", b'{"n": 1}'), ("b", b'{"n": 2}')], acks))
    assert processor.stats.batch_retries == 2 and processor.stats.transactions == 3
    assert sorted(r[0] for r in await query(host, "SELECT message_id FROM {s}.effect")) == ["a", "b"]
    assert acks == [0, 1]


async def test_a_broken_custom_codec_dead_letters_instead_of_crashing(host: Host) -> None:
    class Broken:
        def encode(self, value: Any) -> bytes:
            return b""

        def decode(self, data: bytes) -> Any:
            raise ZeroDivisionError("codec bug")

    async def handler(ctx: Context, value: Any) -> None:
        raise AssertionError("never called")

    processor = make(host, handler, codec=Broken())
    acks: list[int] = []
    await processor.process(events([("a", b"{}")], acks))
    (letter,) = await query(host, "SELECT reason, error_message FROM {s}.dead_letter")
    assert letter["reason"] == "decode_error" and "codec bug" in letter["error_message"]
    assert acks == [0]


async def test_a_handler_that_commits_is_stopped_and_the_batch_stays_whole(host: Host) -> None:
    async def handler(ctx: Context, value: dict) -> None:
        ctx.session.add(Effect(message_id=ctx.message_id, n=value["n"]))
        if value["n"] == 1:
            await ctx.session.commit()

    processor = make(host, handler)
    acks: list[int] = []
    await processor.process(events([(f"m{i}", b'{"n": %d}' % i) for i in range(3)], acks))
    assert sorted(r[0] for r in await query(host, "SELECT message_id FROM {s}.effect")) == ["m0", "m2"]
    (letter,) = await query(host, "SELECT message_id, error_type, error_message FROM {s}.dead_letter")
    assert letter["message_id"] == "m1" and letter["error_type"] == "streamproc.errors.SessionMisuseError"
    assert await query(host, "SELECT count(*) FROM {s}.inbox") == [(3,)]
