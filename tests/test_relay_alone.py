"""The relay runs alone (``faust -A app relay``) beside workers that run none."""

from __future__ import annotations

import os
import signal
import subprocess

from tests.kafka_helpers import produce
from tests.pipeline import Pipeline
from tests.test_chain import TOPICS, counts, order
from tests.waiting import wait_until
from tests.workers import FAUST


async def test_workers_without_relay_and_a_separate_relay(pipeline: Pipeline) -> None:
    await pipeline.create_topics(TOPICS, partitions=2)
    worker = pipeline.worker("agents.app", STREAMPROC_RELAY="0").start()
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(100)])
    await wait_until(lambda: counts(pipeline), lambda c: c["shop_reservation"] == 100, 60, "100 reservations")
    await wait_until(lambda: counts(pipeline), lambda c: c["outbox"] == 100, 10, "100 rows waiting")
    assert (await counts(pipeline))["shop_payment"] == 0  # nothing relays them yet

    log = (pipeline.tmp / "relay.log").open("wb")
    relay = subprocess.Popen([FAUST, "-A", "agents.app", "relay"], env={**os.environ, **pipeline.env()},
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_until(
            lambda: counts(pipeline), lambda c: c["shop_shipment"] == 100 and c["outbox"] == 0, 90,
            "the chain to finish through the lone relay",
        )
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(30) == 0
        worker.stop()
    assert "relay running" in (pipeline.tmp / "relay.log").read_text()
