"""A worker killed mid-stream and restarted does nothing twice; the cache answers."""

from __future__ import annotations

from tests.kafka_helpers import produce
from tests.pipeline import Pipeline
from tests.test_chain import PROCESSORS, TABLES, TOPICS, counts, order
from tests.waiting import wait_until


async def test_killed_after_commit_then_restarted(pipeline: Pipeline) -> None:
    await pipeline.create_topics(TOPICS, partitions=2)
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(600)])

    # SIGKILL right after the 6th batch commits, before its offsets are acked.
    first = pipeline.worker("agents.app", STREAMPROC_BATCH_SIZE="50", STREAMPROC_FAULT="after_commit@6")
    first.start(wait=False)
    assert first.wait_exit(120) == -9

    done_at_kill = await pipeline.rows(
        'SELECT partition, "offset" FROM {s}.inbox WHERE processor = $1', "reserve_stock"
    )
    offsets = await pipeline.committed("orders")
    redelivered_done = sum(1 for r in done_at_kill if r["offset"] >= offsets.get(r["partition"], 0))
    assert redelivered_done > 0, "the kill left nothing to redeliver; the test proves nothing"

    second = pipeline.worker("agents.app", STREAMPROC_BATCH_SIZE="50").start()  # same data dir
    await wait_until(
        lambda: counts(pipeline), lambda c: c["shop_shipment"] >= 600 and c["outbox"] == 0, 120,
        "600 shipments",
    )
    second.stop()

    final = await counts(pipeline)
    assert final == {
        **{t: 600 for t in TABLES}, **{f"inbox:{p}": 600 for p in PROCESSORS},
        "outbox": 0, "dead_letter": 0,
    }
    stats = second.stats()["reserve_stock"]
    # Every redelivered, already-done order was dropped: by the cache, or (the
    # batch killed before its ids reached the cache) by the inbox.
    assert stats["duplicates"] == redelivered_done
    assert stats["handled"] == 600 - len(done_at_kill)
    assert stats["cache_hits"] > 0 and stats["transactions_saved"] > 0
    assert stats["cache_hits"] >= redelivered_done - 50
