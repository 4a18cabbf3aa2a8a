"""The checker: what happened, read only from the database and the topics.

It never looks at the framework's counters. For every distinct order id on
the orders topic it follows the chain through the headers (``causation-id``
of an output = ``message-id`` of its input):

    order m ──► inbox(reserve_stock, m), shop_reservation(order_id)
            ──► exactly one payments message id p with causation m (≥ 1 copy on the topic)
            ──► inbox(charge_payment, p), shop_payment(order_id)
            ──► exactly one shipments message id s and one notifications message id n
                with causation p (≥ 1 copy each)
            ──► inbox(ship_order, s), shop_shipment(order_id)

An order with a missing link is *lost*; an order with more than one inbox
row, business row or distinct downstream message at any link is a *double
effect*. Messages on a consumed topic that their processor never recorded,
rows and messages that belong to no order, dead letters, leftover outbox rows
and content that does not match the order are problems too.
``duplicates_absorbed``: copies on the consumed topics beyond one per
message id, all of which the inboxes (or the cache in front of them) took
without a second effect, as the exact counts above prove.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

CHAIN = [("reserve_stock", "orders"), ("charge_payment", "payments"), ("ship_order", "shipments")]
BUSINESS = ["shop_reservation", "shop_payment", "shop_shipment"]


@dataclass
class Message:
    key: bytes | None
    value: bytes | None
    message_id: str | None
    causation_id: str | None


@dataclass
class Topic:
    """Every copy on a topic, grouped by message id."""

    copies: int = 0
    by_id: dict[str, list[Message]] = field(default_factory=dict)
    without_id: int = 0
    by_cause: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @property
    def duplicates(self) -> int:
        return self.copies - self.without_id - len(self.by_id)


@dataclass
class Report:
    distinct: int = 0  # distinct order ids on the orders topic
    copies: dict[str, int] = field(default_factory=dict)  # messages per topic
    lost: int = 0
    lost_at: Counter[str] = field(default_factory=Counter)
    double_effects: int = 0
    double_at: Counter[str] = field(default_factory=Counter)
    duplicates_absorbed: int = 0
    duplicates_by_topic: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    outbox_left: int = 0
    dlq_messages: int = 0
    acked_not_on_topic: int = 0  # ids the producer had acknowledged, missing on the topic
    unconsumed: dict[str, int] = field(default_factory=dict)  # ids on a topic without an inbox row
    mismatches: Counter[str] = field(default_factory=Counter)
    strays: Counter[str] = field(default_factory=Counter)  # rows/messages that belong to no order
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.double_effects or self.dead_letters or self.outbox_left or self.dlq_messages
            or self.acked_not_on_topic or self.unconsumed or self.mismatches or self.strays or self.distinct == 0
        )

    def example(self, text: str) -> None:
        if len(self.examples) < 25:
            self.examples.append(text)

    def explain(self) -> str:
        return json.dumps(
            {
                "distinct": self.distinct, "copies": self.copies, "lost": self.lost, "lost_at": self.lost_at,
                "double_effects": self.double_effects, "double_at": self.double_at,
                "dead_letters": self.dead_letters, "outbox_left": self.outbox_left,
                "dlq_messages": self.dlq_messages, "acked_not_on_topic": self.acked_not_on_topic,
                "unconsumed": self.unconsumed,
                "mismatches": self.mismatches, "strays": self.strays, "examples": self.examples,
            },
            indent=1,
        )


async def read_topic(bootstrap: str, topic: str) -> Topic:
    """Every record of ``topic`` up to its end offsets now (read_committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [meta] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert meta["error_code"] == 0, f"topic {topic}: {meta}"
    tps = [TopicPartition(topic, p["partition"]) for p in meta["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed", max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    result = Topic()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=20_000)
            for tp, records in batch.items():
                for rec in records:
                    headers = dict(rec.headers or ())
                    mid = headers.get("message-id")
                    cause = headers.get("causation-id")
                    msg = Message(rec.key, rec.value, mid.decode() if mid else None, cause.decode() if cause else None)
                    result.copies += 1
                    if msg.message_id is None:
                        result.without_id += 1
                        continue
                    result.by_id.setdefault(msg.message_id, []).append(msg)
                    if msg.causation_id is not None:
                        result.by_cause[msg.causation_id].add(msg.message_id)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return result


async def check(bootstrap: str, dsn: str, schema: str, prefix: str, acked_ids: set[str]) -> Report:
    """Check one pipeline (topics ``<prefix>*``, tables in ``schema``)."""
    names = ["orders", "payments", "shipments", "notifications", "orders.dlq"]
    topics = dict(zip(names, await asyncio.gather(*(read_topic(bootstrap, prefix + n) for n in names))))
    conn = await asyncpg.connect(dsn)
    try:
        s = f'"{schema}"'
        inbox_rows = await conn.fetch(
            f"SELECT processor, message_id, topic, count(*) AS n FROM {s}.inbox GROUP BY 1, 2, 3"
        )
        business = {
            t: {r["order_id"]: r for r in await conn.fetch(
                f"SELECT order_id, count(*) OVER (PARTITION BY order_id) AS n, * FROM {s}.{t}")}
            for t in BUSINESS
        }
        dead = await conn.fetchval(f"SELECT count(*) FROM {s}.dead_letter")
        outbox_left = await conn.fetchval(f"SELECT count(*) FROM {s}.outbox")
    finally:
        await conn.close()

    report = Report()
    report.copies = {n: t.copies for n, t in topics.items()}
    report.dead_letters = dead
    report.outbox_left = outbox_left
    report.dlq_messages = topics["orders.dlq"].copies
    for n in ("orders", "payments", "shipments", "notifications"):
        report.duplicates_by_topic[n] = topics[n].duplicates
        if topics[n].without_id:
            report.strays[f"{n} messages without a message-id"] += topics[n].without_id
    report.duplicates_absorbed = sum(topics[n].duplicates for n in ("orders", "payments", "shipments"))
    report.acked_not_on_topic = len(acked_ids - topics["orders"].by_id.keys())
    if report.acked_not_on_topic:
        report.example(f"acknowledged by the broker but not on the orders topic: {sorted(acked_ids - topics['orders'].by_id.keys())[:5]}")

    inbox: dict[str, dict[str, int]] = defaultdict(dict)
    for row in inbox_rows:
        inbox[row["processor"]][row["message_id"]] = inbox[row["processor"]].get(row["message_id"], 0) + row["n"]
    for processor, topic in CHAIN:
        for row in inbox_rows:
            if row["processor"] == processor and row["topic"] != prefix + topic:
                report.strays[f"inbox {processor} rows from topic {row['topic']}"] += 1
        unconsumed = topics[topic].by_id.keys() - inbox[processor].keys()
        if unconsumed:
            report.unconsumed[topic] = len(unconsumed)
            report.example(f"{topic}: ids that {processor} never recorded in its inbox: {sorted(unconsumed)[:3]}")
        strays = inbox[processor].keys() - topics[topic].by_id.keys()
        if strays:
            report.strays[f"inbox {processor} rows for ids not on {topic}"] += len(strays)
            report.example(f"inbox {processor}: ids not on {topic}: {sorted(strays)[:3]}")
    for processor in inbox.keys() - {p for p, _ in CHAIN}:
        report.strays[f"inbox rows of unknown processor {processor}"] += len(inbox[processor])

    orders = topics["orders"]
    report.distinct = len(orders.by_id)
    order_ids: set[str] = set()
    for m, copies in orders.by_id.items():
        values = {c.value for c in copies}
        if len(values) != 1 or len({c.key for c in copies}) != 1:
            report.mismatches["orders: copies of one message id differ"] += 1
        order = json.loads(copies[0].value or b"null")
        if not isinstance(order, dict) or "order_id" not in order:
            report.mismatches["orders: not an order"] += 1
            continue
        oid = order["order_id"]
        order_ids.add(oid)
        lost, double = _follow(report, topics, inbox, business, m, order)
        if lost:
            report.lost += 1
            report.lost_at[lost] += 1
            report.example(f"lost: order {m} ({oid}) at {lost}")
        if double:
            report.double_effects += 1
            for where in double:
                report.double_at[where] += 1
            report.example(f"double effect: order {m} ({oid}) at {double}")

    for table, rows in business.items():
        strays = rows.keys() - order_ids
        if strays:
            report.strays[f"{table} rows of no order"] += len(strays)
    for n, parent in (("payments", "orders"), ("shipments", "payments"), ("notifications", "payments")):
        causes = topics[n].by_cause.keys() - topics[parent].by_id.keys()
        if causes:
            report.strays[f"{n} messages caused by no {parent} message"] += len(causes)
    return report


def _one(report: Report, found: int, where: str, double: list[str]) -> bool:
    """True when exactly one; records a double effect when more."""
    if found > 1:
        double.append(where)
    return found >= 1


def _pick(ids: set[str], consumed: dict[str, int]) -> str:
    """Of several downstream ids (a double effect, already recorded), follow one
    that its processor consumed, so that the order is lost only if no branch goes on."""
    return min(ids, key=lambda i: (consumed.get(i, 0) == 0, i))


def _follow(
    report: Report, topics: dict[str, Topic], inbox: dict[str, dict[str, int]],
    business: dict[str, dict[str, Any]], m: str, order: dict[str, Any],
) -> tuple[str | None, list[str]]:
    """Follow order ``m`` down the chain: (first missing link or None, links with doubles)."""
    oid = order["order_id"]
    double: list[str] = []
    expected = {
        "shop_reservation": {"sku": order["sku"], "quantity": order["quantity"]},
        "shop_payment": {"amount_cents": order["amount_cents"]},
        "shop_shipment": {"sku": order["sku"], "quantity": order["quantity"]},
    }

    def business_row(table: str) -> bool:
        row = business[table].get(oid)
        if row is None:
            return False
        _one(report, row["n"], table, double)
        if any(row[k] != v for k, v in expected[table].items()):
            report.mismatches[f"{table} content"] += 1
        return True

    if not _one(report, inbox["reserve_stock"].get(m, 0), "inbox reserve_stock", double):
        return "inbox reserve_stock", double
    if not business_row("shop_reservation"):
        return "shop_reservation", double
    payments = topics["payments"].by_cause.get(m, set())
    if not _one(report, len(payments), "payments (distinct ids)", double):
        return "payments topic", double
    p = _pick(payments, inbox["charge_payment"])
    copy = topics["payments"].by_id[p][0]
    want = {"order_id": oid, "amount_cents": order["amount_cents"], "sku": order["sku"], "quantity": order["quantity"]}
    if copy.key != oid.encode() or json.loads(copy.value or b"null") != want:
        report.mismatches["payments message content"] += 1
    if not _one(report, inbox["charge_payment"].get(p, 0), "inbox charge_payment", double):
        return "inbox charge_payment", double
    if not business_row("shop_payment"):
        return "shop_payment", double
    notifications = topics["notifications"].by_cause.get(p, set())
    if not _one(report, len(notifications), "notifications (distinct ids)", double):
        return "notifications topic", double
    shipments = topics["shipments"].by_cause.get(p, set())
    if not _one(report, len(shipments), "shipments (distinct ids)", double):
        return "shipments topic", double
    s = _pick(shipments, inbox["ship_order"])
    if not _one(report, inbox["ship_order"].get(s, 0), "inbox ship_order", double):
        return "inbox ship_order", double
    if not business_row("shop_shipment"):
        return "shop_shipment", double
    return None, double
