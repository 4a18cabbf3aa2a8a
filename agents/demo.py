"""``make demo``: run the shop pipeline end to end and summarise it.

Starts a worker with the faust CLI (``faust -A agents.app worker``), produces
sample orders (with duplicates and two malformed records), shows a live
progress line, stops the worker with SIGTERM and prints, per processor,
events in, duplicates dropped, rows written and events out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamproc import Settings
from streamproc.config import mask_url

TOPICS = ["orders", "payments", "shipments", "notifications", "orders.dlq"]
STAGES = [("reserve_stock", "shop_reservation"), ("charge_payment", "shop_payment"), ("ship_order", "shop_shipment")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000, help="distinct orders to send")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of orders sent twice")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the pipeline")
    args = parser.parse_args()
    return asyncio.run(run(args.orders, args.duplicates, args.timeout))


async def run(n_orders: int, duplicate_share: float, timeout_s: float) -> int:
    settings = Settings.from_env()
    run_id = time.strftime("%H%M%S") + "-" + uuid.uuid4().hex[:4]
    prefix, app_id = f"demo-{run_id}.", f"demo-{run_id}"
    work = Path(".stack/demo") / run_id
    work.mkdir(parents=True, exist_ok=True)
    print(f"demo run {run_id}: Kafka {settings.broker}, PostgreSQL {mask_url(settings.database_url)}")

    await create_topics(settings, [prefix + t for t in TOPICS])

    env = {**os.environ, "SHOP_TOPIC_PREFIX": prefix, "SHOP_APP_ID": app_id, "PYTHONUNBUFFERED": "1"}
    log_path = work / "worker.log"
    faust_bin = str(Path(sys.executable).parent / "faust")
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [faust_bin, "--datadir", str(work / "data"), "-A", "agents.app", "worker", "-l", "info", "--without-web"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    print(f"worker pid {worker.pid} started: faust -A agents.app worker -l info (log: {log_path})")
    pg = await asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        sent = await produce(settings, prefix + "orders", run_id, n_orders, duplicate_share)
        print(f"sent {sent} records: {n_orders} orders, {sent - n_orders - 2} duplicates, 2 malformed")
        ok = await follow(pg, settings.schema, run_id, n_orders, timeout_s, worker)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        summary = await summarise(pg, settings.schema, run_id, log_path)
        await pg.close()
    print(summary)
    if not ok:
        print(f"the pipeline did not finish within {timeout_s:.0f}s; see {log_path}", file=sys.stderr)
    return 0 if ok else 1


async def create_topics(settings: Settings, names: list[str]) -> None:
    """Create the run's topics and wait until every partition has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 4, 1) for name in names])
        for _ in range(100):
            described = await admin.describe_topics(names)
            if all(p["leader"] >= 0 for t in described for p in t["partitions"]) and all(
                t["partitions"] for t in described
            ):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def produce(settings: Settings, topic: str, run_id: str, n: int, duplicate_share: float) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    sent = 0
    try:
        pending = []
        every = max(1, round(1 / duplicate_share)) if duplicate_share > 0 else 0
        for i in range(n):
            order_id = f"{run_id}-{i}"
            value = json.dumps({"order_id": order_id, "sku": f"sku-{i % 25}", "quantity": 1 + i % 4,
                                "amount_cents": 499 + i}).encode()
            headers = [("message-id", f"order-{order_id}".encode())]
            copies = 2 if every and i % every == 0 else 1
            for _ in range(copies):
                pending.append(await producer.send(topic, value, key=order_id.encode(), headers=headers))
                sent += 1
        for bad in (b"this is not JSON", b'{"order_id": "x", "quantity": "many"}'):
            pending.append(await producer.send(topic, bad, key=b"bad"))
            sent += 1
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def table_count(pg: asyncpg.Connection, schema: str, table: str, run_id: str) -> int:
    return await pg.fetchval(f'SELECT count(*) FROM "{schema}".{table} WHERE order_id LIKE $1', f"{run_id}-%")


async def follow(
    pg: asyncpg.Connection, schema: str, run_id: str, n: int, timeout_s: float, worker: subprocess.Popen[bytes]
) -> bool:
    started = time.monotonic()
    shipped = 0
    tty = sys.stdout.isatty()
    last_print = 0.0
    while time.monotonic() - started < timeout_s and worker.poll() is None:
        rows = [await table_count(pg, schema, table, run_id) for _, table in STAGES]
        shipped = rows[-1]
        elapsed = time.monotonic() - started
        line = f"[{elapsed:5.1f}s] reserved {rows[0]:>6}/{n}  paid {rows[1]:>6}/{n}  shipped {rows[2]:>6}/{n}"
        if tty:
            print("\r" + line, end="", flush=True)
        elif shipped >= n or elapsed - last_print >= 2:  # a log file gets a line every 2 s
            print(line, flush=True)
            last_print = elapsed
        if shipped >= n:
            break
        await asyncio.sleep(0.5)
    if tty:
        print()
    return shipped >= n


async def summarise(pg: asyncpg.Connection, schema: str, run_id: str, log_path: Path) -> str:
    stats: dict[str, dict[str, int]] = {}
    found = re.findall(r"streamproc stats (\{.*\})", log_path.read_text(errors="replace"))
    if found:
        stats = json.loads(found[-1])
    lines = ["", "processor        events in  duplicates  dead letters  rows written  events out"]
    for processor, table in STAGES:
        s = stats.get(processor, {})
        rows = await table_count(pg, schema, table, run_id)
        lines.append(
            f"{processor:<16} {s.get('events_in', 0):>9}  {s.get('duplicates', 0):>10}  "
            f"{s.get('dead_lettered', 0):>12}  {rows:>12}  {s.get('emitted', 0):>10}"
        )
    relay = stats.get("relay", {})
    lines.append(f"relay published {relay.get('published', 0)} messages to Kafka")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
