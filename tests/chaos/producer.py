"""A producer that keeps sending orders, with duplicates injected, through broker faults."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


def order_record(tag: str, i: int) -> Record:
    """Order ``i`` of a run: key = order id, ``message-id`` header = ``<tag>-order-<i>``."""
    order_id = f"{tag}-o-{i}"
    value = {"order_id": order_id, "sku": f"sku-{i % 11}", "quantity": 1 + i % 5, "amount_cents": 100 + i}
    return order_id.encode(), json.dumps(value).encode(), [("message-id", f"{tag}-order-{i}".encode())]


@dataclass
class ProducerStats:
    sent: int = 0  # records the broker acknowledged, duplicates included
    distinct: int = 0  # distinct message ids acknowledged
    duplicates_injected: int = 0  # acknowledged re-sends of an id already sent
    send_failures: int = 0  # chunks whose send failed and was retried (may add copies)
    reconnects: int = 0
    acked_ids: set[str] = field(default_factory=set)


class OrderProducer:
    """Sends ``minimum`` distinct orders (more while ``keep_going()``) at ``rate``
    records/s; a share ``dup_ratio`` of the records re-send an earlier record
    (same key, value and message-id): half a recent one, half any older one.

    A failed send is retried until the broker acknowledges it, with a new
    producer: the producer never gives up on an id, so every id it made counts.
    """

    def __init__(
        self, bootstrap: str, topic: str, tag: str, *, minimum: int, rate: float,
        dup_ratio: float = 0.1, seed: int = 1,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.tag = tag
        self.minimum = minimum
        self.rate = rate
        self.dup_ratio = dup_ratio
        self.rng = random.Random(seed)
        self.stats = ProducerStats()
        self.keep_going = lambda: False
        self.stopped = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._next = 0

    def done_minimum(self) -> bool:
        return self._next >= self.minimum

    async def run(self) -> ProducerStats:
        t0 = time.monotonic()
        made = 0  # records handed out so far (new + duplicates)
        try:
            while not self.stopped.is_set() and (not self.done_minimum() or self.keep_going()):
                due = int((time.monotonic() - t0) * self.rate) - made
                if due <= 0:
                    await asyncio.sleep(0.05)
                    continue
                chunk = [self._make() for _ in range(min(due, 2000))]
                made += len(chunk)
                await self._send(chunk)
        finally:
            await self._close()
        return self.stats

    def _make(self) -> tuple[Record, bool]:
        if self._next > 0 and self.rng.random() < self.dup_ratio:
            if self.rng.random() < 0.5:
                i = self.rng.randrange(max(0, self._next - 50), self._next)
            else:
                i = self.rng.randrange(0, self._next)
            return order_record(self.tag, i), True
        i = self._next
        self._next += 1
        return order_record(self.tag, i), False

    async def _send(self, chunk: list[tuple[Record, bool]]) -> None:
        attempt = 0
        while True:
            try:
                producer = await self._ensure()
                futures = [
                    await producer.send(self.topic, value=value, key=key, headers=headers)
                    for (key, value, headers), _ in chunk
                ]
                await asyncio.wait_for(asyncio.gather(*futures), 60)
                break
            except Exception as exc:  # noqa: BLE001 - the broker may be restarting: retry
                attempt += 1
                self.stats.send_failures += 1
                log.info("producer: send of %d failed (attempt %d): %r", len(chunk), attempt, exc)
                await self._close()
                if attempt > 60:
                    raise AssertionError(f"the producer could not send for {attempt} attempts: {exc!r}") from exc
                await asyncio.sleep(min(0.5 * attempt, 3))
        for (_, _, headers), duplicate in chunk:
            mid = headers[0][1].decode()
            self.stats.sent += 1
            if mid in self.stats.acked_ids:
                self.stats.duplicates_injected += 1
            else:
                self.stats.acked_ids.add(mid)
        self.stats.distinct = len(self.stats.acked_ids)

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all",
                linger_ms=10, request_timeout_ms=20_000,
            )
            try:
                await producer.start()
            except BaseException:
                try:
                    await producer.stop()
                except Exception:  # noqa: BLE001 - it never started
                    pass
                raise
            self._producer = producer
            self.stats.reconnects += 1
        return self._producer

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:  # noqa: BLE001
                log.debug("producer stop failed: %r", exc)
