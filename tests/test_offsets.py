"""Offsets move only past messages whose transaction committed (DESIGN.md §3).

Each guard is shown twice: the stock Faust behaviour that loses the message,
and streamproc keeping it.
"""

from __future__ import annotations

import asyncio
import json

from tests.kafka_helpers import produce
from tests.pipeline import Pipeline
from tests.waiting import wait_until


async def committed(p: Pipeline, topic: str) -> int | None:
    """The committed offset of partition 0 of ``topic``, None before the first commit."""
    return (await p.committed(topic)).get(0)


def seqs(n: int, **extra: dict) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [
        (b"k", json.dumps({"seq": i, **extra.get(str(i), {})}).encode(), [("message-id", f"m-{i}".encode())])
        for i in range(n)
    ]


async def _out_of_order_commit(pipeline: Pipeline, guarded: bool) -> tuple[int | None, int | None]:
    await pipeline.create_topics(["in"], partitions=1)
    await produce(pipeline.bootstrap, pipeline.topic("in"), seqs(10))
    worker = pipeline.worker(
        "tests.apps.acks", TEST_MODE="out_of_order", TEST_GUARDED="1" if guarded else "0"
    ).start()
    worker.wait_for_log("STEP1", 60)
    after_step1 = await committed(pipeline, "in")
    worker.wait_for_log("STEP2", 30)
    after_step2 = await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 10, 20, "offset 10")
    worker.stop()
    return after_step1, after_step2


async def test_stock_faust_commits_past_an_unacked_head(pipeline: Pipeline) -> None:
    """faust-streaming #606, reproduced: offset 0 unacked, 1-9 acked -> commit 10."""
    assert await _out_of_order_commit(pipeline, guarded=False) == (10, 10)


async def test_streamproc_holds_the_commit_below_an_unacked_head(pipeline: Pipeline) -> None:
    """The same acks through streamproc.App: nothing is committed until offset 0 is acked."""
    assert await _out_of_order_commit(pipeline, guarded=True) == (None, 10)


async def test_stock_faust_acks_a_message_whose_handler_raised(pipeline: Pipeline) -> None:
    """Plain ``async for``: seq 5 raises, the agent restarts, and seq 5 is skipped for good."""
    await pipeline.create_topics(["in"], partitions=1)
    await produce(pipeline.bootstrap, pipeline.topic("in"), seqs(10))
    worker = pipeline.worker("tests.apps.acks", TEST_MODE="raise").start()
    worker.wait_for_log("DONE 9", 60)
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 10, 30, "offset 10")
    worker.stop()
    assert "DONE 5" not in worker.log_text()


async def test_processor_never_commits_past_a_failing_message(pipeline: Pipeline) -> None:
    """seq 5 fails (retriably) for 8 s: the committed offset waits at 5, then all ten
    messages take effect exactly once."""
    await pipeline.create_topics(["in", "out", "in.dlq"], partitions=1)
    await produce(pipeline.bootstrap, pipeline.topic("in"), seqs(10, **{"5": {"transient_for_s": 8}}))
    worker = pipeline.worker("tests.apps.flaky", STREAMPROC_BATCH_SIZE="1").start()
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 5, 30, "offset 5 committed")
    held = []  # the committed offset, sampled while seq 5 keeps failing
    while await pipeline.scalar("SELECT count(DISTINCT message_id) FROM {s}.effect") < 6:
        held.append(await committed(pipeline, "in"))
        await asyncio.sleep(0.5)
    await wait_until(
        lambda: pipeline.scalar("SELECT count(DISTINCT message_id) FROM {s}.effect"),
        lambda n: n == 10, 60, "ten effects",
    )
    assert len(held) >= 4 and set(held) == {5}, held
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 10, 30, "offset 10")
    worker.stop()
    assert await pipeline.scalar("SELECT count(*) FROM {s}.effect") == 10
    stats = worker.stats()["flaky"]
    assert stats["batch_retries"] >= 3 and stats["handled"] == 10
