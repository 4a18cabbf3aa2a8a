"""The checker itself: it passes a correct pipeline state and catches a lost
message, a double effect and stray rows (hand-made state on the chaos stack)."""

from __future__ import annotations

import json
import uuid

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.models import Base
from streamproc.config import Settings
from streamproc.database import create_engine
from streamproc.schema import create_schema
from tests.chaos import stack
from tests.chaos.checker import check
from tests.chaos.producer import order_record
from tests.kafka_helpers import produce


async def test_checker_catches_lost_and_double_effects() -> None:
    ep = await stack.require("pg", "kafka")
    tag = f"k{uuid.uuid4().hex[:8]}"
    prefix, schema = f"{tag}.", f"chaos_{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=ep.kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(prefix + t, 2, 1) for t in ("orders", "payments", "shipments", "notifications", "orders.dlq")]
        )
    finally:
        await admin.close()
    engine = create_engine(Settings(database_url=ep.database_url, schema=schema))
    await create_schema(engine, schema)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()

    orders = [order_record(tag, i) for i in range(10)]
    await produce(ep.kafka, prefix + "orders", [*orders, orders[0]])  # one injected duplicate
    payments, shipments, notifications = [], [], []
    inbox: list[tuple[str, str, str]] = []
    rows: dict[str, list[tuple]] = {"shop_reservation": [], "shop_payment": [], "shop_shipment": []}
    for key, value, headers in orders:
        order, m = json.loads(value), headers[0][1].decode()
        p, s, n = f"p-{m}", f"s-{m}", f"n-{m}"
        payments.append((key, json.dumps({k: order[k] for k in ("order_id", "amount_cents", "sku", "quantity")}).encode(),
                         [("message-id", p.encode()), ("causation-id", m.encode())]))
        shipments.append((key, b"{}", [("message-id", s.encode()), ("causation-id", p.encode())]))
        notifications.append((key, b"{}", [("message-id", n.encode()), ("causation-id", p.encode())]))
        inbox += [("reserve_stock", m, "orders"), ("charge_payment", p, "payments"), ("ship_order", s, "shipments")]
        rows["shop_reservation"].append((order["order_id"], order["sku"], order["quantity"]))
        rows["shop_payment"].append((order["order_id"], order["amount_cents"]))
        rows["shop_shipment"].append((order["order_id"], order["sku"], order["quantity"]))
    await produce(ep.kafka, prefix + "payments", [*payments, payments[1]])  # one republished copy
    await produce(ep.kafka, prefix + "shipments", shipments)
    await produce(ep.kafka, prefix + "notifications", notifications)
    pg = await asyncpg.connect(ep.pg_dsn)
    try:
        await pg.executemany(
            f'INSERT INTO "{schema}".inbox (processor, message_id, topic, partition, "offset") VALUES ($1, $2, $3, 0, 0)',
            [(proc, mid, prefix + topic) for proc, mid, topic in inbox],
        )
        await pg.executemany(f'INSERT INTO "{schema}".shop_reservation (order_id, sku, quantity) VALUES ($1, $2, $3)', rows["shop_reservation"])
        await pg.executemany(f'INSERT INTO "{schema}".shop_payment (order_id, amount_cents) VALUES ($1, $2)', rows["shop_payment"])
        await pg.executemany(f'INSERT INTO "{schema}".shop_shipment (order_id, sku, quantity) VALUES ($1, $2, $3)', rows["shop_shipment"])
        acked = {h[0][1].decode() for _, _, h in orders}

        good = await check(ep.kafka, ep.pg_dsn, schema, prefix, acked)
        assert good.ok, good.explain()
        assert (good.distinct, good.lost, good.double_effects) == (10, 0, 0)
        assert good.duplicates_by_topic == {"orders": 1, "payments": 1, "shipments": 0, "notifications": 0}
        assert good.duplicates_absorbed == 2

        # Break it: order 3's shipment row is gone (lost), order 5 got a second
        # payment request (a double effect), an inbox row belongs to nothing.
        oid3 = json.loads(orders[3][1])["order_id"]
        await pg.execute(f'DELETE FROM "{schema}".shop_shipment WHERE order_id = $1', oid3)
        m5 = orders[5][2][0][1]
        await produce(ep.kafka, prefix + "payments", [(orders[5][0], payments[5][1], [("message-id", b"p-extra"), ("causation-id", m5)])])
        await pg.execute(
            f'INSERT INTO "{schema}".inbox (processor, message_id, topic, partition, "offset") VALUES ($1, $2, $3, 0, 0)',
            "ship_order", "s-nowhere", prefix + "shipments",
        )
        bad = await check(ep.kafka, ep.pg_dsn, schema, prefix, acked | {"never-sent"})
        assert not bad.ok
        assert bad.lost == 1 and dict(bad.lost_at) == {"shop_shipment": 1}, bad.explain()
        assert bad.double_effects == 1 and dict(bad.double_at) == {"payments (distinct ids)": 1}, bad.explain()
        assert bad.strays["inbox ship_order rows for ids not on shipments"] == 1, bad.explain()
        assert bad.unconsumed == {"payments": 1}, bad.explain()
        assert bad.acked_not_on_topic == 1
    finally:
        await pg.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pg.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=ep.kafka)
        await admin.start()
        try:
            await admin.delete_topics([prefix + t for t in ("orders", "payments", "shipments", "notifications", "orders.dlq")])
        finally:
            await admin.close()
