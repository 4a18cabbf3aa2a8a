"""Processor.process on the real database, without Kafka: the cost of the
commit protocol itself, by batch size and failure strategy.

Counters (statements and transactions per message) are exact and hold on any
machine; messages/s depend on the machine and are reported, never asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, String, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from streamproc import Context, JsonCodec, Settings
from streamproc.cache import HotIdCache
from streamproc.database import create_engine, create_sessions
from streamproc.processor import Processor, ProcessorOptions, _Item
from streamproc.schema import create_schema


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "bench_row"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String)


@dataclass
class _Message:
    offset: int
    value: bytes
    headers: list[tuple[str, bytes]]
    key: bytes = b"k"
    topic: str = "bench"
    partition: int = 0
    timestamp: float = 0.0


class _Event:
    __slots__ = ("message",)

    def __init__(self, message: _Message) -> None:
        self.message = message

    def ack(self) -> bool:
        return True


class _Host:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        self.sessions = create_sessions(self.engine)
        self.tmp = tmp
        self.statements = 0
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, *args: Any) -> None:
        self.statements += 1

    def resolve_topic(self, topic: Any) -> tuple[str, JsonCodec]:
        return "bench-out", JsonCodec()

    def open_cache(self, processor: str) -> HotIdCache:
        return HotIdCache(self.tmp / processor / uuid.uuid4().hex, max_entries=10**6, max_age_s=3600)


async def _handler(ctx: Context, value: dict) -> None:
    ctx.session.add(Row(message_id=ctx.message_id))
    await ctx.emit("bench-out", value, key=ctx.key)


def _events(n: int, start: int) -> list[_Event]:
    return [
        _Event(_Message(start + i, b'{"n": %d}' % (start + i), [("message-id", f"m-{start + i}".encode())]))
        for i in range(n)
    ]


async def run(database_url: str, tmp: Path, messages: int) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env({}, database_url=database_url, schema=schema)
    host = _Host(settings, tmp)
    await create_schema(host.engine, schema)
    async with host.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    results: dict[str, Any] = {"batch_size": {}, "failure_strategy": {}, "cache": {}}
    offset = 0

    def batches_of(size: int, total: int) -> list[list[_Event]]:
        nonlocal offset
        made = [_events(size, offset + i) for i in range(0, total, size)]
        offset += total
        return made

    async def timed(run_batch: Callable[[list[_Event]], Awaitable[Any]], batches: list[list[_Event]]) -> tuple[float, int]:
        """Seconds to run every batch, and the statements they sent."""
        host.statements = 0
        started = time.perf_counter()
        for batch in batches:
            await run_batch(batch)
        return time.perf_counter() - started, host.statements

    try:
        for size in (1, 10, 100, 500, 1000):
            processor = _processor(host, size)
            total = min(messages, max(size * 20, 2000)) if size < 100 else messages
            batches = batches_of(size, total)
            elapsed, statements = await timed(processor.process, batches)
            results["batch_size"][size] = {
                "messages": total,
                "msg_per_s": round(total / elapsed),
                "statements_per_batch": round(statements / len(batches), 2),
                "transactions": processor.stats.transactions,
            }
            processor.cache.close()

        # One optimistic pass (savepoints only to redo a failed batch) versus a savepoint per event.
        processor = _processor(host, 500)

        async def savepoint_per_event(batch: list[_Event]) -> None:
            items = [_Item(e, processor._decode(e).record, f"m-{e.message.offset}", value={"n": e.message.offset})
                     for e in batch]
            await processor._transaction(items, isolate=True, failures={})

        for strategy, run_batch in (("optimistic", processor.process), ("savepoint_per_event", savepoint_per_event)):
            batches = batches_of(500, messages)
            elapsed, statements = await timed(run_batch, batches)
            results["failure_strategy"][strategy] = {
                "msg_per_s": round(messages / elapsed),
                "statements_per_batch": round(statements / len(batches), 2),
            }
        processor.cache.close()
        opt = results["failure_strategy"]["optimistic"]["msg_per_s"]
        sp = results["failure_strategy"]["savepoint_per_event"]["msg_per_s"]
        results["failure_strategy"]["optimistic_over_savepoint"] = round(opt / sp, 2)

        # Redelivery of already-done messages: answered by the cache, or by the inbox.
        processor = _processor(host, 500)
        done = batches_of(500, messages)
        await timed(processor.process, done)
        for label in ("cache", "inbox_only"):
            if label == "inbox_only":
                processor.cache.close()
                processor._cache = host.open_cache("empty")
            elapsed, statements = await timed(processor.process, done)
            results["cache"][label] = {"msg_per_s": round(messages / elapsed), "statements": statements}
        processor.cache.close()
        results["cache"]["cache_over_inbox"] = round(
            results["cache"]["cache"]["msg_per_s"] / results["cache"]["inbox_only"]["msg_per_s"], 2
        )
    finally:
        async with host.engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await host.engine.dispose()
    return results


def _processor(host: _Host, batch_size: int) -> Processor:
    options = ProcessorOptions(
        name=f"bench-{uuid.uuid4().hex[:6]}", topic="bench", codec=JsonCodec(), batch_size=batch_size,
        batch_timeout_ms=10, max_attempts=3, max_message_bytes=10_000, retry_backoff_ms=10,
        retry_backoff_max_ms=100,
    )
    return Processor(options, _handler, host)


if __name__ == "__main__":
    import json
    import os
    import tempfile

    url = os.environ.get("DATABASE_URL", Settings().database_url)
    print(json.dumps(asyncio.run(run(url, Path(tempfile.mkdtemp()), 10_000)), indent=2))
