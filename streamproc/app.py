"""The streamproc App: a ``faust.App`` that also runs processors and the outbox relay."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
from faust.types import TopicT
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import inbox
from .cache import HotIdCache
from .codecs import Codec, JsonCodec
from .config import Settings
from .database import create_engine, create_sessions
from .errors import UndeclaredTopicError, is_transient
from .kafka import faust_credentials, wait_for_broker
from .messages import IdSource
from .offsets import GuardedConsumer
from .processor import Handler, Processor, ProcessorOptions
from .relay import Relay
from .retry import backoff_s
from .schema import create_schema

__all__ = ["App"]

log = logging.getLogger(__name__)

_PURGE_BATCH = 10_000
_PURGE_BUDGET_S = 30
_DRAIN_TIMEOUT_S = 30
_REVOKE_DRAIN_TIMEOUT_S = 10


class App(faust.App):
    """A Faust app whose processors have exactly-once effects.

    Usage::

        app = streamproc.App("shop")                     # KAFKA_BROKER, DATABASE_URL
        orders = app.topic("orders", value_type=Order)

        @app.processor(orders)
        async def reserve_stock(ctx, order: Order) -> None:
            ctx.session.add(Reservation(order_id=order.id))
            await ctx.emit(payments, PaymentRequested(order_id=order.id), key=order.id)

    ``faust -A module worker`` starts every processor and the relay.
    Constructor arguments win over the environment (:class:`Settings`);
    any other keyword is a Faust setting.
    """

    def __init__(
        self,
        id: str,
        *,
        broker: str | None = None,
        database_url: str | None = None,
        schema: str | None = None,
        data_dir: str | None = None,
        relay: bool | None = None,
        tables: MetaData | None = None,
        settings: Settings | None = None,
        **faust_options: Any,
    ) -> None:
        self.settings = settings or Settings.from_env(
            broker=broker, database_url=database_url, schema=schema,
            data_dir=data_dir, relay_enabled=relay,
        )
        credentials = faust_credentials(self.settings)
        if credentials is not None:
            faust_options.setdefault("broker_credentials", credentials)
        faust_options.setdefault("topic_allow_declare", True)
        faust_options.setdefault("producer_acks", -1)
        # Faust's own wait (consumer.wait_empty) waits for every buffered event
        # to be acked and never ends while a batch retries against a database
        # that is down; the processors drain themselves instead (on_stop,
        # _on_partitions_revoked), with a bound.
        faust_options.setdefault("stream_wait_empty", False)
        super().__init__(id, broker=self.settings.faust_broker, **faust_options)
        self.processors: dict[str, Processor] = {}
        self.tables_metadata = tables
        self._codecs: dict[str, Codec] = {}
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._caches: list[HotIdCache] = []
        self.relay: Relay | None = None
        self.timer(60.0, name="streamproc.purge_inbox")(self._purge_inbox)
        self.timer(30.0, name="streamproc.log_stats")(self._log_stats)

    # -- database -----------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The worker's SQLAlchemy async engine (created on first use)."""
        if self._engine is None:
            self._engine = create_engine(self.settings)
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The session factory processors use; handy for reads in user code."""
        if self._sessions is None:
            self._sessions = create_sessions(self.engine)
        return self._sessions

    async def create_schema(self) -> None:
        """Create streamproc's tables and the app's ``tables`` metadata, if missing."""
        await create_schema(self.engine, self.settings.schema)
        if self.tables_metadata is not None:
            async with self.engine.begin() as conn:
                await conn.run_sync(self.tables_metadata.create_all)

    # -- topics -------------------------------------------------------------

    def topic(self, *topics: str, codec: Codec | None = None, **kwargs: Any) -> TopicT:
        """Declare a topic (Faust's ``app.topic``); ``codec`` overrides JSON of ``value_type``.

        Only declared topics may be named in ``ctx.emit``.
        """
        channel = super().topic(*topics, **kwargs)
        for name in topics:
            self._codecs[name] = codec or JsonCodec(kwargs.get("value_type"))
        return channel

    def resolve_topic(self, topic: Any) -> tuple[str, Codec]:
        """Name and codec of a declared topic (a faust topic or its name)."""
        name = topic if isinstance(topic, str) else topic.get_topic_name()
        try:
            return name, self._codecs[name]
        except KeyError:
            raise UndeclaredTopicError(
                f"topic {name!r} is not declared: add app.topic({name!r}, ...)"
            ) from None

    # -- processors ---------------------------------------------------------

    def processor(
        self,
        topic: TopicT | str,
        *,
        name: str | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
        max_attempts: int | None = None,
        message_id: IdSource = None,
        codec: Codec | None = None,
        require_key: bool = False,
        dead_letter_topic: bool | str = False,
    ) -> Callable[[Handler], Processor]:
        """Turn ``async def handler(ctx, value)`` into a processor of ``topic``.

        ``message_id``: where records from outside producers carry their id (a
        header name or a function of the :class:`Record`); the default is
        ``<topic>/<partition>/<offset>``. ``dead_letter_topic``: also publish
        dead letters to ``<topic>.dlq`` (or the given name) through the outbox.
        """
        topic_name, declared_codec = self.resolve_topic(topic)
        partitions = None if isinstance(topic, str) else topic.partitions
        settings = self.settings

        def decorate(handler: Handler) -> Processor:
            processor_name = name or handler.__name__
            dlq = f"{topic_name}.dlq" if dead_letter_topic is True else (dead_letter_topic or None)
            if dlq is not None:
                self.topic(dlq, value_type=bytes, codec=declared_codec)
            options = ProcessorOptions(
                name=processor_name,
                topic=topic_name,
                codec=codec or declared_codec,
                batch_size=batch_size or settings.batch_size,
                batch_timeout_ms=batch_timeout_ms or settings.batch_timeout_ms,
                max_attempts=max_attempts or settings.max_attempts,
                max_message_bytes=settings.max_message_bytes,
                retry_backoff_ms=settings.retry_backoff_ms,
                retry_backoff_max_ms=settings.retry_backoff_max_ms,
                message_id=message_id,
                require_key=require_key,
                dead_letter_topic=dlq,
            )
            processor = Processor(options, handler, self)
            self.processors[processor_name] = processor
            # The agent reads raw bytes: decoding is ours, so bad input is
            # dead-lettered instead of being dropped by Faust's deserializer.
            source = faust.App.topic(
                self, topic_name, key_type=bytes, value_type=bytes,
                key_serializer="raw", value_serializer="raw",
                partitions=partitions, internal=True,
            )
            self.agent(source, name=processor_name)(processor.consume)
            return processor

        return decorate

    def open_cache(self, processor: str) -> HotIdCache:
        """Open ``processor``'s hot-id cache under the data dir (closed with the app)."""
        base = Path(self.settings.data_dir) if self.settings.data_dir else Path(self.conf.datadir) / "streamproc"
        cache = HotIdCache(
            base / processor / "inbox-cache",
            max_entries=self.settings.cache_max_entries,
            max_age_s=self.settings.inbox_retention_s,
        )
        self._caches.append(cache)
        return cache

    # -- lifecycle ----------------------------------------------------------

    def _new_consumer(self) -> Any:
        # Guard the commit against faust-streaming issue #606 (see offsets.py).
        # Set on this app's transport instance only, never on Faust's class.
        self.transport.Consumer = GuardedConsumer  # type: ignore[misc]
        return super()._new_consumer()

    async def on_start(self) -> None:
        """Wait for Kafka and create the schema (retrying until both answer), then start Faust."""
        await wait_for_broker(self.settings)
        attempt = 0
        while True:
            try:
                await self.create_schema()
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise  # a permission or configuration problem: fail loudly, do not loop
                attempt += 1
                delay = backoff_s(attempt, self.settings.retry_backoff_ms, self.settings.retry_backoff_max_ms)
                log.warning("database not ready (%r), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        if self.settings.relay_enabled and self.relay is None:
            self.relay = Relay(self.settings, self.engine, loop=self.loop, beacon=self.beacon)
            await self.add_runtime_dependency(self.relay)
        await super().on_start()

    def stats(self) -> dict[str, Any]:
        """Counters of every processor and of the relay since this worker started."""
        result: dict[str, Any] = {name: asdict(p.stats) for name, p in self.processors.items()}
        if self.relay is not None:
            result["relay"] = asdict(self.relay.stats)
        return result

    async def on_stop(self) -> None:
        """Let in-flight batches commit (or give them up if they wait on a failure),
        then stop Faust, log the final counters, close the caches and the pool."""
        stopped = await asyncio.gather(*(p.stop(_DRAIN_TIMEOUT_S) for p in self.processors.values()))
        if not all(stopped):
            log.warning("a batch was still in flight after %ds; it rolls back and is redelivered", _DRAIN_TIMEOUT_S)
        await super().on_stop()
        log.info("streamproc stats %s", json.dumps(self.stats(), sort_keys=True))
        for cache in self._caches:
            cache.close()
        self._caches.clear()
        if self._engine is not None:
            await self._engine.dispose()

    async def _on_partitions_revoked(self, revoked: set[Any]) -> None:
        # Let the batch in flight commit and ack first, so that its offsets are
        # committed before the partitions move; if it is stuck, the new owner's
        # inbox absorbs the repeat.
        await asyncio.gather(*(p.wait_idle(_REVOKE_DRAIN_TIMEOUT_S) for p in self.processors.values()))
        await super()._on_partitions_revoked(revoked)

    async def _purge_inbox(self) -> None:
        # Any worker may run it: the DELETE is idempotent and takes no lock.
        # Chunks keep each transaction short; the time budget keeps one tick
        # from running into the next.
        removed, deadline = 0, self.loop.time() + _PURGE_BUDGET_S
        try:
            while self.loop.time() < deadline:
                async with self.engine.begin() as conn:
                    chunk = await inbox.purge(
                        conn, self.settings.schema, self.settings.inbox_retention_s, _PURGE_BATCH
                    )
                removed += chunk
                if chunk < _PURGE_BATCH:
                    break
        except Exception as exc:  # noqa: BLE001 - a timer must never crash the worker
            log.warning("inbox purge failed, will retry: %r", exc)
        if removed:
            log.info("inbox: purged %d rows older than %ds", removed, self.settings.inbox_retention_s)

    async def _log_stats(self) -> None:
        log.info("streamproc stats %s", json.dumps(self.stats(), sort_keys=True))
