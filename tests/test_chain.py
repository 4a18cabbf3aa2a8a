"""The shop chain (agents.app) against the real broker and database."""

from __future__ import annotations

import json
import random

from tests.kafka_helpers import consume_all, produce
from tests.pipeline import Pipeline
from tests.waiting import wait_until

TOPICS = ["orders", "payments", "shipments", "notifications", "orders.dlq"]
TABLES = ["shop_reservation", "shop_payment", "shop_shipment"]
PROCESSORS = ["reserve_stock", "charge_payment", "ship_order"]


def order(i: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    value = {"order_id": f"o-{i}", "sku": f"sku-{i % 7}", "quantity": 1 + i % 3, "amount_cents": 100 * i}
    return f"o-{i}".encode(), json.dumps(value).encode(), [("message-id", f"order-{i}".encode())]


async def counts(p: Pipeline) -> dict[str, int]:
    result = {t: await p.scalar(f"SELECT count(*) FROM {{s}}.{t}") for t in TABLES}
    for name in PROCESSORS:
        result[f"inbox:{name}"] = await p.scalar("SELECT count(*) FROM {s}.inbox WHERE processor = $1", name)
    result["outbox"] = await p.scalar("SELECT count(*) FROM {s}.outbox")
    result["dead_letter"] = await p.scalar("SELECT count(*) FROM {s}.dead_letter")
    return result


async def test_one_order_gives_one_row_per_processor_and_lineage(pipeline: Pipeline) -> None:
    await pipeline.create_topics(TOPICS, partitions=2)
    worker = pipeline.worker("agents.app").start()
    await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(1)])
    await wait_until(lambda: counts(pipeline), lambda c: c["shop_shipment"] == 1, 60, "the shipment row")
    worker.stop()

    final = await counts(pipeline)
    assert final == {
        "shop_reservation": 1, "shop_payment": 1, "shop_shipment": 1,
        "inbox:reserve_stock": 1, "inbox:charge_payment": 1, "inbox:ship_order": 1,
        "outbox": 0, "dead_letter": 0,
    }
    (payment,) = await consume_all(pipeline.bootstrap, pipeline.topic("payments"), 2, 5)
    (shipment,) = await consume_all(pipeline.bootstrap, pipeline.topic("shipments"), 2, 5)
    (notification,) = await consume_all(pipeline.bootstrap, pipeline.topic("notifications"), 2, 5)
    pay_headers, ship_headers = dict(payment.headers), dict(shipment.headers)
    assert pay_headers["causation-id"] == b"order-1"
    assert ship_headers["causation-id"] == pay_headers["message-id"]
    assert dict(notification.headers)["causation-id"] == pay_headers["message-id"]
    assert payment.key == b"o-1"
    assert json.loads(payment.value) == {"order_id": "o-1", "amount_cents": 100, "sku": "sku-1", "quantity": 2}


async def test_duplicates_never_run_a_handler_twice(pipeline: Pipeline) -> None:
    """1,000 orders plus 20 % duplicates: 100 re-sent with the same message id,
    100 re-sent as the very same raw record. Every count is exact."""
    await pipeline.create_topics(TOPICS, partitions=4)
    originals = [order(i) for i in range(1000)]
    rng = random.Random(7)
    same_id = [(k, v.replace(b'"quantity"', b'"quantity" '), h) for k, v, h in rng.sample(originals, 100)]
    raw_again = rng.sample(originals, 100)
    records = originals + same_id + raw_again
    rng.shuffle(records)  # a duplicate may arrive before its original: the first one wins
    await produce(pipeline.bootstrap, pipeline.topic("orders"), records)

    worker = pipeline.worker("agents.app").start()
    await wait_until(
        lambda: counts(pipeline), lambda c: c["shop_shipment"] >= 1000 and c["outbox"] == 0, 120,
        "1,000 shipments and an empty outbox",
    )
    worker.stop()

    assert await counts(pipeline) == {
        "shop_reservation": 1000, "shop_payment": 1000, "shop_shipment": 1000,
        "inbox:reserve_stock": 1000, "inbox:charge_payment": 1000, "inbox:ship_order": 1000,
        "outbox": 0, "dead_letter": 0,
    }
    for topic in ("payments", "shipments", "notifications"):
        messages = await consume_all(pipeline.bootstrap, pipeline.topic(topic), 1001, 5)
        ids = {dict(m.headers)["message-id"] for m in messages}
        assert len(messages) == 1000 and len(ids) == 1000, topic
    stats = worker.stats()
    assert stats["reserve_stock"]["events_in"] == 1200
    assert stats["reserve_stock"]["handled"] == 1000
    assert stats["reserve_stock"]["duplicates"] == 200
    assert stats["charge_payment"]["handled"] == stats["ship_order"]["handled"] == 1000
    assert stats["relay"]["published"] == 3000
