"""Test base: the real Kafka broker and PostgreSQL server, nothing mocked.

Each test gets its own topics (``new_topic``) and its own database schema
(``db_schema``), created before and dropped after it, so tests never see each
other's data.  The services come from ``KAFKA_BROKER`` and ``DATABASE_URL``
(defaults: the stack of ``make services``).  When one is not reachable the
tests fail with a message that says how to start it; they never skip.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.kafka_helpers import wait_topic_visible
from tests.pipeline import pipeline  # noqa: F401 - the per-test pipeline fixture

DEFAULT_KAFKA_BROKER = "kafka://127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://streamproc:streamproc@127.0.0.1:5433/streamproc"

KAFKA_BROKER = os.environ.get("KAFKA_BROKER") or DEFAULT_KAFKA_BROKER
DATABASE_URL = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def kafka_bootstrap_servers(url: str) -> str:
    """``kafka://h1:9092;kafka://h2:9092`` or ``h1:9092,h2`` -> ``h1:9092,h2:9092``."""
    servers = []
    for item in re.split(r"[,;\s]+", url.strip()):
        if not item:
            continue
        if "://" in item:
            item = item.split("://", 1)[1]
        item = item.strip("/")
        if ":" not in item.rsplit("]", 1)[-1]:
            item += ":9092"
        servers.append(item)
    return ",".join(servers)


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL ``postgresql+asyncpg://...`` as a libpq/asyncpg DSN."""
    return url.replace("+asyncpg", "", 1)


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


KAFKA_BOOTSTRAP = kafka_bootstrap_servers(KAFKA_BROKER)
PG_DSN = asyncpg_dsn(DATABASE_URL)


async def _kafka_problem() -> str | None:
    client = AIOKafkaClient(bootstrap_servers=KAFKA_BOOTSTRAP, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=20)
        if not client.cluster.brokers():
            return "no brokers in the metadata"
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()


async def _postgres_problem() -> str | None:
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=10)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    try:
        await conn.fetchval("SELECT 1")
        return None
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def services() -> None:
    """Both services are reachable (checked once per session), else the test fails."""
    problem = await _kafka_problem()
    if problem:
        pytest.fail(
            f"Kafka is not reachable at {KAFKA_BOOTSTRAP} ({problem}): "
            "start it with `make services` (or set KAFKA_BROKER)",
            pytrace=False,
        )
    problem = await _postgres_problem()
    if problem:
        pytest.fail(
            f"PostgreSQL is not reachable at {redacted(DATABASE_URL)} ({problem}): "
            "start it with `make services` (or set DATABASE_URL)",
            pytrace=False,
        )


@pytest.fixture
def kafka_bootstrap(services: None) -> str:
    """Bootstrap servers for aiokafka, e.g. ``127.0.0.1:9092``."""
    return KAFKA_BOOTSTRAP


@pytest.fixture
def kafka_broker_url(services: None) -> str:
    """The broker URL for Faust, e.g. ``kafka://127.0.0.1:9092``."""
    return KAFKA_BROKER


@pytest.fixture
def database_url(services: None) -> str:
    """The SQLAlchemy URL, e.g. ``postgresql+asyncpg://...``."""
    return DATABASE_URL


@pytest.fixture
def pg_dsn(services: None) -> str:
    """The same database as a plain asyncpg/libpq DSN."""
    return PG_DSN


@pytest.fixture
async def pg(services: None) -> AsyncIterator[asyncpg.Connection]:
    """An asyncpg connection for the test, closed after it."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def db_schema(services: None) -> AsyncIterator[str]:
    """A schema of the test's own, ``t_<12 hex>``, dropped with CASCADE after it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    try:
        yield name
    finally:
        conn = await asyncpg.connect(PG_DSN)
        try:
            # Fail loudly rather than hang when a leaked connection holds locks.
            await conn.execute("SET lock_timeout = '30s'")
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()


NewTopicFactory = Callable[..., Awaitable[str]]


def _topic_prefix(test_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", test_name).strip("-.")[:40] or "t"


@pytest.fixture
async def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> AsyncIterator[NewTopicFactory]:
    """Factory: ``await new_topic(partitions=1)`` creates a uniquely named topic.

    It returns once the topic's metadata (all partitions with a leader) is
    visible; every topic it created is deleted after the test.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=30_000)
    await admin.start()
    created: list[str] = []
    prefix = _topic_prefix(request.node.name)

    async def make(partitions: int = 1, *, config: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        response = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
        for error in response.to_object()["topic_errors"]:
            if error["error_code"] != 0:
                raise RuntimeError(f"creating topic {name} failed: {error}")
        created.append(name)
        await wait_topic_visible(admin, name, partitions)
        return name

    try:
        yield make
    finally:
        try:
            if created:
                await admin.delete_topics(created)
        finally:
            await admin.close()
