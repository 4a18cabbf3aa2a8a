"""The outbox relay: moves committed outbox rows onto Kafka.

At-least-once by construction (a crash between the broker's ack and the
DELETE republishes the rows, and the consumer's inbox absorbs the repeat);
per-key order because a shard is sent by one relay at a time, in id order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from mode import Service
from sqlalchemy.ext.asyncio import AsyncEngine

from . import deadletter, faults, outbox
from .config import Settings
from .deadletter import DeadLetter
from .errors import is_transient
from .kafka import new_producer
from .messages import MESSAGE_ID_HEADER, Record
from .retry import backoff_s

__all__ = ["Relay", "RelayStats"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RelayStats:
    """Counters since the relay started."""

    published: int = 0
    dead_lettered: int = 0
    transactions: int = 0
    failures: int = 0


class Relay(Service):
    """Publishes outbox rows; woken by NOTIFY, polling as a fallback."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        *,
        producer_factory: Callable[[Settings], AIOKafkaProducer] = new_producer,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.stats = RelayStats()
        self._engine = engine
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._listener: asyncpg.Connection | None = None
        self._wakeup = asyncio.Event()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were sent.

        1. BEGIN; take every shard no other relay holds (advisory xact locks).
        2. Read the oldest ``relay_batch_size`` rows of those shards, by id.
        3. Hand them all to the idempotent producer, then await every ack.
        4. Dead-letter the rows the broker refuses for good (too large, not
           authorised…), so one bad row cannot block its shard forever.
        5. DELETE the rows and COMMIT, which releases the shards.
        Any other error rolls back: the rows stay and are sent again.
        """
        producer = await self._ensure_producer()
        schema = self.settings.schema
        async with self._engine.begin() as conn:
            shards = await outbox.lock_shards(conn, schema, self.settings.relay_shards)
            rows = await outbox.fetch(conn, schema, shards, self.settings.relay_batch_size)
            if not rows:
                return 0
            outcomes = await _publish(producer, rows)
            refused = [_unpublishable(row, exc) for row, exc in zip(rows, outcomes) if exc is not None]
            faults.hit("relay_after_publish")
            await deadletter.append(conn, schema, refused)
            await outbox.delete(conn, schema, [row.id for row in rows])
        for letter in refused:
            log.error("relay: dead-lettered outbox row %s for %s: %s", letter.record.offset,
                      letter.record.topic, letter.error_message)
        self.stats.transactions += 1
        self.stats.published += len(rows) - len(refused)
        self.stats.dead_lettered += len(refused)
        return len(rows)

    @Service.task
    async def _run(self) -> None:
        failures = 0
        while not self.should_stop:
            try:
                await self._ensure_listener()
                sent = await self.relay_once()
                failures = 0
                if sent < self.settings.relay_batch_size:
                    await self._idle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the relay never dies; rows wait in the outbox
                failures += 1
                self.stats.failures += 1
                delay = backoff_s(failures, self.settings.retry_backoff_ms, self.settings.retry_backoff_max_ms)
                log.warning("relay: publish failed (attempt %d), retrying in %.2fs: %r", failures, delay, exc)
                await self._reset_producer()
                await self._close_listener()
                await asyncio.sleep(delay)

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self._wakeup.wait(), self.settings.relay_poll_ms / 1000)
        except asyncio.TimeoutError:
            pass
        self._wakeup.clear()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory(self.settings)
            await producer.start()
            self._producer = producer
        return self._producer

    async def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:  # noqa: BLE001 - it is being discarded anyway
                log.debug("relay: producer stop failed: %r", exc)

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        dsn = self.settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._listener = await asyncpg.connect(dsn)
        await self._listener.add_listener(
            outbox.notify_channel(self.settings.schema), lambda *_: self._wakeup.set()
        )

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.terminate()

    async def on_stop(self) -> None:
        """Close the producer (flushing nothing unacknowledged) and the LISTEN connection."""
        await self._reset_producer()
        await self._close_listener()


async def _publish(producer: AIOKafkaProducer, rows: list[outbox.StoredMessage]) -> list[BaseException | None]:
    """Send ``rows`` in order, then await every ack; per row, the broker's permanent
    refusal or None. A transient failure raises (the whole batch is sent again)."""
    acks: list[asyncio.Future[Any] | BaseException] = []
    for row in rows:  # one at a time: the order of send() calls is the order on a partition
        try:
            acks.append(await producer.send(
                row.message.topic, row.message.value, key=row.message.key, headers=list(row.message.headers)
            ))
        except Exception as exc:
            if is_transient(exc):
                raise  # stop here, so that no later row of the same key overtakes this one
            acks.append(exc)
    faults.hit("relay_publish")
    results = await asyncio.gather(
        *(ack for ack in acks if isinstance(ack, asyncio.Future)), return_exceptions=True
    )
    sent = iter(results)
    outcomes = [ack if isinstance(ack, BaseException) else next(sent) for ack in acks]
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and is_transient(outcome):
            raise outcome
    return [outcome if isinstance(outcome, BaseException) else None for outcome in outcomes]


def _unpublishable(row: outbox.StoredMessage, exc: BaseException) -> DeadLetter:
    """A dead letter for an outbox row the broker refused; offset is the outbox id."""
    message = row.message
    message_id = dict(message.headers).get(MESSAGE_ID_HEADER, b"").decode(errors="replace")
    record = Record(message.topic, -1, row.id, message.key, message.value, message.headers)
    letter = DeadLetter.from_exception("relay", message_id or f"outbox/{row.id}", record, exc, attempts=1)
    return replace(letter, reason="unpublishable")
