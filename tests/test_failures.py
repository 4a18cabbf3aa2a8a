"""Handler failures through Kafka: retried in place, or dead-lettered; never lost or doubled."""

from __future__ import annotations

import json

from tests.kafka_helpers import consume_all, produce
from tests.pipeline import Pipeline
from tests.test_offsets import committed, seqs
from tests.waiting import wait_until


async def effects(p: Pipeline) -> tuple[int, int]:
    row = await p.pg.fetchrow(f'SELECT count(*), count(DISTINCT message_id) FROM "{p.schema}".effect')
    return row[0], row[1]


async def test_a_failing_handler_in_a_batch_is_retried_not_skipped(pipeline: Pipeline) -> None:
    await pipeline.create_topics(["in", "out", "in.dlq"], partitions=1)
    await produce(pipeline.bootstrap, pipeline.topic("in"), seqs(30, **{"7": {"fail_times": 2}}))
    worker = pipeline.worker("tests.apps.flaky").start()
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 30, 60, "offset 30")
    worker.stop()

    assert await effects(pipeline) == (30, 30)
    (attempt,) = await pipeline.pg.fetchrow(f'SELECT attempt FROM "{pipeline.schema}".effect WHERE seq = 7')
    assert attempt == 3  # failed twice, succeeded on the third run
    out = await consume_all(pipeline.bootstrap, pipeline.topic("out"), 31, 5)
    assert sorted(json.loads(m.value)["seq"] for m in out) == list(range(30))
    assert await pipeline.scalar("SELECT count(*) FROM {s}.dead_letter") == 0


async def test_a_rolled_back_transaction_leaves_no_outbox_row_and_no_message(pipeline: Pipeline) -> None:
    """seq 3 emits, then always fails: after max_attempts it is dead-lettered; its
    effect and its emit were rolled back each time, so nothing of it reaches ``out``."""
    await pipeline.create_topics(["in", "out", "in.dlq"], partitions=1)
    await produce(pipeline.bootstrap, pipeline.topic("in"), seqs(10, **{"3": {"emit_then_fail": True}}))
    worker = pipeline.worker("tests.apps.flaky").start()
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 10, 60, "offset 10")
    await wait_until(lambda: pipeline.scalar("SELECT count(*) FROM {s}.outbox"), lambda n: n == 0, 30, "empty outbox")
    worker.stop()

    assert await effects(pipeline) == (9, 9)
    out = await consume_all(pipeline.bootstrap, pipeline.topic("out"), 10, 5)
    assert sorted(json.loads(m.value)["seq"] for m in out) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    letter = await pipeline.pg.fetchrow(f'SELECT * FROM "{pipeline.schema}".dead_letter')
    assert (letter["message_id"], letter["attempts"], letter["reason"]) == ("m-3", 3, "handler_error")
    (dlq,) = await consume_all(pipeline.bootstrap, pipeline.topic("in.dlq"), 2, 5)
    headers = dict(dlq.headers)
    assert headers["dlq-reason"] == b"handler_error" and headers["message-id"] == b"m-3"
    assert json.loads(dlq.value)["seq"] == 3
