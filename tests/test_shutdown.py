"""SIGTERM stops a worker cleanly: what committed is acked and its offsets
committed, what did not is rolled back, and a restart does nothing twice."""

from __future__ import annotations

from tests.kafka_helpers import produce
from tests.pipeline import Pipeline
from tests.test_chain import PROCESSORS, TABLES, TOPICS, counts, order
from tests.waiting import wait_until


async def test_sigterm_mid_stream_then_restart(pipeline: Pipeline) -> None:
    await pipeline.create_topics(TOPICS, partitions=2)
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(3000)])
    worker = pipeline.worker("agents.app", STREAMPROC_BATCH_SIZE="100").start()
    await wait_until(lambda: counts(pipeline), lambda c: c["shop_shipment"] >= 100, 60, "work in flight")
    assert worker.stop(timeout_s=30) == 0

    # Offsets were committed exactly up to what the inbox says is done.
    done = await pipeline.rows(
        'SELECT partition, count(*) AS n, max("offset") AS last FROM {s}.inbox WHERE processor = $1 GROUP BY 1',
        "reserve_stock",
    )
    offsets = await pipeline.committed("orders")
    assert {r["partition"]: r["last"] + 1 for r in done} == offsets
    assert {r["partition"]: r["n"] for r in done} == offsets

    again = pipeline.worker("agents.app").start()
    await wait_until(
        lambda: counts(pipeline), lambda c: c["shop_shipment"] >= 3000 and c["outbox"] == 0, 120, "3,000 shipments"
    )
    again.stop()
    assert await counts(pipeline) == {
        **{t: 3000 for t in TABLES}, **{f"inbox:{p}": 3000 for p in PROCESSORS}, "outbox": 0, "dead_letter": 0,
    }
    assert again.stats()["reserve_stock"]["duplicates"] == 0  # nothing was redelivered
