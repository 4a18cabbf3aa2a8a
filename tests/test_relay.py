"""The outbox relay against the real broker and database."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict

from streamproc import Settings
from streamproc.database import create_engine
from streamproc.outbox import OutboxMessage, append
from streamproc.relay import Relay
from streamproc.schema import create_schema
from tests.kafka_helpers import consume_all
from tests.pipeline import Pipeline
from tests.waiting import wait_until

KEYS = 100
PER_KEY = 100


async def test_two_relays_keep_per_key_order_and_send_each_row_once(pipeline: Pipeline) -> None:
    """10,000 rows over 100 keys, written in many transactions while two relays
    drain the same outbox: each row is published once, each key in order."""
    await pipeline.create_topics(["relayed"], partitions=8)
    settings = Settings.from_env(
        {}, broker=pipeline.kafka_broker, database_url=pipeline.database_url,
        schema=pipeline.schema, relay_batch_size=200, relay_poll_ms=100,
    )
    engine = create_engine(settings)
    await create_schema(engine, settings.schema)
    relays = [Relay(settings, engine), Relay(settings, engine)]
    for relay in relays:
        await relay.start()

    topic = pipeline.topic("relayed")
    order = [(key, seq) for seq in range(PER_KEY) for key in range(KEYS)]
    rng = random.Random(3)
    try:
        async def writer(part: list[tuple[int, int]]) -> None:
            while part:
                size = rng.randint(1, 50)
                chunk, part = part[:size], part[size:]
                async with engine.begin() as conn:
                    await append(conn, settings.schema, [
                        OutboxMessage(topic, f"k{key}".encode(), json.dumps({"key": key, "seq": seq}).encode(),
                                      [("message-id", f"{key}-{seq}".encode())])
                        for key, seq in chunk
                    ], settings.relay_shards)

        # Two writers, each owning half of the keys, so each key's rows commit in seq order.
        halves = [[(k, s) for k, s in order if k % 2 == w] for w in range(2)]
        await asyncio.gather(*(writer(half) for half in halves))
        await wait_until(
            lambda: pipeline.scalar("SELECT count(*) FROM {s}.outbox"), lambda n: n == 0, 120,
            "an empty outbox",
        )
    finally:
        for relay in relays:
            await relay.stop()
        await engine.dispose()

    messages = await consume_all(pipeline.bootstrap, topic, KEYS * PER_KEY + 1, 10)
    assert len(messages) == KEYS * PER_KEY
    assert len({dict(m.headers)["message-id"] for m in messages}) == KEYS * PER_KEY
    by_key: dict[int, list[int]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        body = json.loads(m.value)
        by_key[body["key"]].append(body["seq"])
    assert all(seqs == list(range(PER_KEY)) for seqs in by_key.values()), "a key left out of order"
    published = [relay.stats.published for relay in relays]
    assert sum(published) == KEYS * PER_KEY
    assert all(n > 0 for n in published), f"one relay did all the work: {published}"


async def test_a_row_the_broker_refuses_is_dead_lettered_and_the_rest_goes_on(pipeline: Pipeline) -> None:
    """A value over the producer's 1 MB request limit can never be sent: it must not
    block its shard. It becomes a dead letter; the rows around it are published."""
    await pipeline.create_topics(["relayed"], partitions=1)
    settings = Settings.from_env(
        {}, broker=pipeline.kafka_broker, database_url=pipeline.database_url, schema=pipeline.schema,
    )
    engine = create_engine(settings)
    await create_schema(engine, settings.schema)
    topic = pipeline.topic("relayed")
    async with engine.begin() as conn:
        await append(conn, settings.schema, [
            OutboxMessage(topic, b"k", value, [("message-id", f"m{i}".encode())])
            for i, value in enumerate([b"first", b"x" * 2_000_000, b"third"])
        ], settings.relay_shards)
    relay = Relay(settings, engine)
    try:
        assert await relay.relay_once() == 3
    finally:
        await relay.stop()
        await engine.dispose()
    messages = await consume_all(pipeline.bootstrap, topic, 3, 10)
    assert [m.value for m in messages] == [b"first", b"third"]
    letter = await pipeline.pg.fetchrow(f'SELECT * FROM "{pipeline.schema}".dead_letter')
    assert (letter["processor"], letter["message_id"], letter["reason"]) == ("relay", "m1", "unpublishable")
    assert "MessageSizeTooLarge" in letter["error_type"] and len(letter["value"]) == 2_000_000
    assert await pipeline.scalar("SELECT count(*) FROM {s}.outbox") == 0
    assert relay.stats.dead_lettered == 1 and relay.stats.published == 2
