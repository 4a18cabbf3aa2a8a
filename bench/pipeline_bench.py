"""Through Kafka with real faust workers: a plain Faust agent (the ceiling of
Faust's fetch path) beside a streamproc processor, and the three-processor chain.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamproc import Settings

FAUST = str(Path(sys.executable).parent / "faust")


async def _topics(settings: Settings, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def _produce(settings: Settings, topic: str, n: int, value: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=10,
                                max_batch_size=512 * 1024, acks=1)
    await producer.start()
    try:
        pending = []
        for i in range(n):
            body = json.dumps(value(i)).encode()
            pending.append(await producer.send(topic, body, key=str(i % 1000).encode(),
                                               headers=[("message-id", f"{topic}-{i}".encode())]))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _run_worker(
    app: str, env: dict[str, str], work: Path, done: Callable[[str], Awaitable[bool]], timeout_s: float
) -> float:
    """Start the worker; seconds from its 'Ready' until ``done(log text)`` holds."""
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / f"{app.rsplit('.', 1)[-1]}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [FAUST, "--datadir", str(work / "data"), "-A", app, "worker", "-l", "info", "--without-web"],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
        )
    ready_at = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            if ready_at is None and "[^Worker]: Ready" in text:
                ready_at = time.monotonic()
            if ready_at is not None and await done(text):
                return time.monotonic() - ready_at
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited: see {log_path}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{app} did not finish in {timeout_s}s: see {log_path}")
    finally:
        proc.terminate()
        proc.wait(60)


def _log_says(needle: str) -> Callable[[str], Awaitable[bool]]:
    async def done(text: str) -> bool:
        return needle in text

    return done


def _rows_reach(database_url: str, sql: str, n: int) -> Callable[[str], Awaitable[bool]]:
    async def done(text: str) -> bool:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return bool(await conn.fetchval(sql) >= n)
        except asyncpg.UndefinedTableError:
            return False  # the worker has not created its tables yet
        finally:
            await conn.close()

    return done


async def run(tmp: Path, messages: int, chain_orders: int) -> dict[str, Any]:
    settings = Settings.from_env()
    results: dict[str, Any] = {}
    tag = uuid.uuid4().hex[:8]
    topic = f"bench-{tag}.in"
    await _topics(settings, [topic], 4)
    await _produce(settings, topic, messages, lambda i: {"n": i})

    env = {"BENCH_TOPIC": topic, "BENCH_MESSAGES": str(messages), "STREAMPROC_SCHEMA": f"bench_{tag}"}
    plain = await _run_worker("bench.apps.counter", {**env, "BENCH_APP_ID": f"bench-{tag}-plain"},
                              tmp / "plain", _log_says("BENCH_DONE"), 300)
    single = await _run_worker("bench.apps.single", {**env, "BENCH_APP_ID": f"bench-{tag}-single"},
                               tmp / "single", _log_says("BENCH_LAST"), 600)
    results["through_kafka"] = {
        "messages": messages,
        "plain_faust_msg_per_s": round(messages / plain),
        "streamproc_processor_msg_per_s": round(messages / single),
        "streamproc_over_plain_faust": round(plain / single, 3),
    }

    # The shop chain: orders -> payments -> shipments (+ notifications), relay included.
    prefix = f"bench-{tag}-shop."
    await _topics(settings, [prefix + t for t in ("orders", "payments", "shipments", "notifications",
                                                  "orders.dlq")], 4)
    await _produce(settings, prefix + "orders", chain_orders, lambda i: {
        "order_id": f"o{i}", "sku": "s", "quantity": 1, "amount_cents": i})
    shop_env = {"SHOP_TOPIC_PREFIX": prefix, "SHOP_APP_ID": f"bench-{tag}-shop",
                "STREAMPROC_SCHEMA": f"bench_{tag}"}
    elapsed = await _run_worker(
        "agents.app", shop_env, tmp / "chain",
        _rows_reach(settings.database_url, f'SELECT count(*) FROM "bench_{tag}".shop_shipment', chain_orders),
        600,
    )
    results["chain"] = {
        "orders": chain_orders,
        "orders_per_s_end_to_end": round(chain_orders / elapsed),
        "note": "3 processors and the relay in one worker process, from Ready to the last shipment row",
    }
    conn = await asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    await conn.execute(f'DROP SCHEMA IF EXISTS "bench_{tag}" CASCADE')
    await conn.close()
    return results
