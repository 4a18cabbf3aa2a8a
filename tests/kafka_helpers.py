"""Produce to and read back from the real broker in tests (helpers, not fixtures)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

Header = tuple[str, bytes]
Record = tuple[bytes | None, bytes | None, Sequence[Header]]  # key, value, headers


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    partition: int | None = None,
) -> list[RecordMetadata]:
    """Send ``(key, value, headers)`` records in order; returns their metadata.

    Uses an idempotent producer with acks=all, so the order within a
    partition is the order of ``records``.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, headers=list(headers or ()), partition=partition)
            for key, value, headers in records
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout_s: float,
    *,
    isolation_level: str = "read_committed",
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``expected`` records or ``timeout_s``.

    No consumer group: all partitions are assigned and sought to the
    beginning.  Never hangs: after the timeout it returns what it has (fewer
    records, or none when the topic does not exist).  Records are in offset
    order per partition, partitions in ascending order per fetched batch.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    partitions = await _partitions(bootstrap, topic, deadline)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        while len(records) < expected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            batch = await consumer.getmany(timeout_ms=max(1, int(min(remaining, 1.0) * 1000)))
            for tp in sorted(batch, key=lambda tp: tp.partition):
                records.extend(batch[tp])
        return records
    finally:
        await consumer.stop()


async def _partitions(bootstrap: str, topic: str, deadline: float) -> list[int]:
    """The topic's partition numbers, waiting until it exists (never creates it)."""
    loop = asyncio.get_running_loop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            [meta] = await admin.describe_topics([topic])
            if meta["error_code"] == 0 and meta["partitions"]:
                return sorted(p["partition"] for p in meta["partitions"])
            if loop.time() >= deadline:
                return []
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def wait_topic_visible(admin: AIOKafkaAdminClient, name: str, partitions: int, timeout_s: float = 30) -> None:
    """Wait until ``name`` has ``partitions`` partitions, each with a leader."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last = None
    while True:
        [meta] = await admin.describe_topics([name])
        last = meta
        parts = meta.get("partitions") or []
        if (
            meta.get("error_code") == 0
            and len(parts) == partitions
            and all(p.get("error_code") == 0 and p.get("leader", -1) >= 0 for p in parts)
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {name} not visible with {partitions} partitions after {timeout_s}s: {last}")
        await asyncio.sleep(0.1)


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset of each partition of ``topic`` that has one."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}
