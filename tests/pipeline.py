"""A fixture that gives each test its own pipeline: topics, consumer group, schema, data dir."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.kafka_helpers import committed_offsets, wait_topic_visible
from tests.workers import Worker


@dataclass
class Pipeline:
    """Names and settings of one isolated pipeline, and its workers."""

    prefix: str
    app_id: str
    schema: str
    tmp: Path
    kafka_broker: str
    database_url: str
    bootstrap: str
    pg: asyncpg.Connection
    workers: list[Worker] = field(default_factory=list)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BROKER": self.kafka_broker,
            "DATABASE_URL": self.database_url,
            "STREAMPROC_SCHEMA": self.schema,
            "SHOP_TOPIC_PREFIX": self.prefix,
            "SHOP_APP_ID": self.app_id,
            "TEST_TOPIC_PREFIX": self.prefix,
            "TEST_APP_ID": self.app_id,
            **extra,
        }

    def worker(self, app: str, name: str = "w1", **extra_env: str) -> Worker:
        worker = Worker(app, self.env(**extra_env), self.tmp / f"data-{name}", name=name)
        self.workers.append(worker)
        return worker

    async def create_topics(self, names: Iterable[str], partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic(n), partitions, 1) for n in names])
            for name in names:
                await wait_topic_visible(admin, self.topic(name), partitions)
        finally:
            await admin.close()

    async def committed(self, topic: str) -> dict[int, int]:
        """This pipeline's consumer group's committed offsets on ``topic`` (by partition)."""
        return await committed_offsets(self.bootstrap, self.app_id, self.topic(topic))

    async def scalar(self, sql: str, *args: Any) -> Any:
        return await self.pg.fetchval(sql.replace("{s}", f'"{self.schema}"'), *args)

    async def rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pg.fetch(sql.replace("{s}", f'"{self.schema}"'), *args)


@pytest.fixture
async def pipeline(services: Any, kafka_bootstrap: str, database_url: str, tmp_path: Path) -> AsyncIterator[Pipeline]:
    """An isolated pipeline; its workers are killed and its schema dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    pg = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    p = Pipeline(
        prefix=f"t{tag}.",
        app_id=f"t{tag}",
        schema=f"t_{tag}",
        tmp=tmp_path,
        kafka_broker="kafka://" + kafka_bootstrap.replace(",", ";kafka://"),
        database_url=database_url,
        bootstrap=kafka_bootstrap,
        pg=pg,
    )
    try:
        yield p
    finally:
        for worker in p.workers:
            worker.kill()
        await pg.execute(f'DROP SCHEMA IF EXISTS "{p.schema}" CASCADE')
        await pg.close()
