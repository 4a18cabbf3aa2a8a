"""The database goes away under a running worker: it waits, without acking,
skipping or crash-looping, and resumes by itself when the database is back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.faultproxy import TcpProxy
from tests.kafka_helpers import produce
from tests.pipeline import Pipeline
from tests.test_chain import PROCESSORS, TABLES, TOPICS, counts, order
from tests.waiting import wait_until


@pytest.fixture
def db_proxy(database_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    yield proxy
    proxy.close()


def through(database_url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(database_url)
    return parts._replace(netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")).geturl()


async def test_database_outage_is_waited_out(pipeline: Pipeline, db_proxy: TcpProxy) -> None:
    await pipeline.create_topics(TOPICS, partitions=2)
    worker = pipeline.worker(
        "agents.app", DATABASE_URL=through(pipeline.database_url, db_proxy), STREAMPROC_BATCH_SIZE="50",
        STREAMPROC_RETRY_BACKOFF_MAX_MS="1000",
    ).start()
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(1000)])
    await wait_until(lambda: counts(pipeline), lambda c: c["shop_reservation"] >= 200, 60, "work in flight")

    db_proxy.cut()
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(1000, 2000)])
    await asyncio.sleep(8)
    assert worker.proc is not None and worker.proc.poll() is None, "the worker died during the outage"
    during = await counts(pipeline)
    db_proxy.restore()

    await wait_until(
        lambda: counts(pipeline), lambda c: c["shop_shipment"] >= 2000 and c["outbox"] == 0, 120,
        "2,000 shipments after the outage",
    )
    worker.stop()
    assert during["shop_shipment"] < 2000
    assert await counts(pipeline) == {
        **{t: 2000 for t in TABLES}, **{f"inbox:{p}": 2000 for p in PROCESSORS}, "outbox": 0, "dead_letter": 0,
    }
    stats = worker.stats()
    assert stats["reserve_stock"]["batch_retries"] > 0 or stats["relay"]["failures"] > 0
    assert worker.log_text().count("[^Worker]: Ready") == 1  # one start: no crash loop


async def test_sigterm_during_an_outage_stops_and_a_restart_catches_up(pipeline: Pipeline, db_proxy: TcpProxy) -> None:
    await pipeline.create_topics(TOPICS, partitions=2)
    url = through(pipeline.database_url, db_proxy)
    worker = pipeline.worker("agents.app", DATABASE_URL=url, STREAMPROC_BATCH_SIZE="50").start()
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(500)])
    await wait_until(lambda: counts(pipeline), lambda c: c["shop_reservation"] >= 50, 60, "work in flight")
    db_proxy.cut()
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(500, 1000)])
    await asyncio.sleep(3)
    assert worker.stop(timeout_s=45) == 0

    db_proxy.restore()
    again = pipeline.worker("agents.app", name="w2", DATABASE_URL=url).start()
    await wait_until(
        lambda: counts(pipeline), lambda c: c["shop_shipment"] >= 1000 and c["outbox"] == 0, 120, "1,000 shipments"
    )
    again.stop()
    assert await counts(pipeline) == {
        **{t: 1000 for t in TABLES}, **{f"inbox:{p}": 1000 for p in PROCESSORS}, "outbox": 0, "dead_letter": 0,
    }


async def test_a_worker_started_before_kafka_waits_for_it(pipeline: Pipeline) -> None:
    """Faust gives up at start-up when no broker answers; a streamproc worker waits
    (retrying with backoff) and stops cleanly on SIGTERM meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = s.getsockname()[1]
    worker = pipeline.worker("agents.app", KAFKA_BROKER=f"kafka://127.0.0.1:{nobody}").start(wait=False)
    worker.wait_for_log("Kafka not reachable", 30)
    await asyncio.sleep(3)
    assert worker.proc is not None and worker.proc.poll() is None, worker.log_text()[-2000:]
    assert worker.stop(timeout_s=30) == 0
