"""A processor: one source topic, one handler, exactly-once effects.

:meth:`Processor.process` runs one batch; its docstring is the commit protocol.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from . import deadletter, faults, inbox, outbox
from .cache import HotIdCache
from .codecs import Codec
from .config import Settings
from .context import Context
from .deadletter import DeadLetter
from .errors import (
    DecodeError,
    NullKeyError,
    NullValueError,
    PayloadTooLargeError,
    SessionMisuseError,
    is_transient,
)
from .messages import IdSource, Record, message_id_of
from .outbox import OutboxMessage
from .retry import backoff_s

__all__ = ["Handler", "Host", "Processor", "ProcessorOptions", "ProcessorStats"]

log = logging.getLogger(__name__)

_IN_HANDLER = "streamproc.in_handler"


@event.listens_for(Session, "before_commit")
def _refuse_commit_in_handler(session: Session) -> None:
    # A handler's commit would split the batch: its rows would commit apart
    # from the inbox claims and outbox rows that must go with them.
    if session.info.get(_IN_HANDLER):
        raise SessionMisuseError("a handler must not commit ctx.session: streamproc commits the batch")

#: ``async def handler(ctx, value) -> None``
Handler = Callable[[Context, Any], Awaitable[None]]


class Event(Protocol):
    """The part of a Faust event a processor uses."""

    message: Any

    def ack(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ProcessorOptions:
    """How one processor batches, identifies, decodes and retries."""

    name: str
    topic: str
    codec: Codec
    batch_size: int
    batch_timeout_ms: int
    max_attempts: int
    max_message_bytes: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    message_id: IdSource = None
    require_key: bool = False
    dead_letter_topic: str | None = None


@dataclass(slots=True)
class ProcessorStats:
    """Counters since the worker started; read by logs, the demo and tests."""

    events_in: int = 0
    cache_hits: int = 0
    duplicates: int = 0
    handled: int = 0
    dead_lettered: int = 0
    emitted: int = 0
    batches: int = 0
    transactions: int = 0
    transactions_saved: int = 0
    handler_failures: int = 0
    batch_retries: int = 0


@dataclass(slots=True)
class _Item:
    event: Event
    record: Record
    message_id: str
    value: Any = None
    error: DecodeError | None = None


@dataclass(slots=True)
class _Failure:
    exc: BaseException
    attempts: int
    first_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))


@dataclass(slots=True)
class _Outcome:
    handled: list[str] = field(default_factory=list)
    emitted: list[OutboxMessage] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0


class _Abandoned(Exception):
    """The worker is stopping: give the batch up unacked; it will be redelivered."""


class _HandlerFailed(Exception):
    def __init__(self, message_id: str | None, exc: BaseException) -> None:
        super().__init__(message_id, exc)
        self.message_id = message_id
        self.exc = exc


class Host(Protocol):
    """What a processor needs from its app (``streamproc.App`` is one)."""

    settings: Settings

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...

    def resolve_topic(self, topic: Any) -> tuple[str, Codec]: ...

    def open_cache(self, processor: str) -> HotIdCache: ...


class Processor:
    """Runs a handler over batches of one topic with exactly-once effects."""

    def __init__(self, options: ProcessorOptions, handler: Handler, host: Host) -> None:
        self.options = options
        self.handler = handler
        self.stats = ProcessorStats()
        self._host = host
        self._schema = host.settings.schema
        self._shards = host.settings.relay_shards
        self._cache: HotIdCache | None = None
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def cache(self) -> HotIdCache:
        """The processor's hot-id cache, opened on first use (in the worker, not at import)."""
        if self._cache is None:
            self._cache = self._host.open_cache(self.name)
        return self._cache

    @property
    def name(self) -> str:
        """The processor's name: its inbox namespace and its Faust agent's name."""
        return self.options.name

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no batch is in flight; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float) -> bool:
        """Take no new batch; let the one in flight commit, or give it up unacked
        if it is waiting on a failure (it will be redelivered). False on timeout."""
        self._stopping.set()
        return await self.wait_idle(timeout_s)

    async def consume(self, stream: Any) -> None:
        """The Faust agent body: batches without auto-ack, each through :meth:`process`."""
        within = self.options.batch_timeout_ms / 1000
        async for events in stream.noack_take(self.options.batch_size, within):
            await self.process(events)

    async def process(self, events: Sequence[Event]) -> None:
        """Process one batch; return when every event is done and acked.

        1. Decode each event: message id and value. A record that cannot be
           decoded becomes a dead letter (it is still claimed in step 4).
        2. Drop repeats inside the batch, then ids the hot-id cache knows as
           done: those need no database round trip.
        3. BEGIN.
        4. Claim the remaining ids in the inbox in one statement
           (``ON CONFLICT DO NOTHING RETURNING``); ids not returned are
           duplicates and are skipped.
        5. Run the handler for each claimed event in offset order; ``ctx.emit``
           stages outbox rows. If a handler raises, roll back and redo the batch
           with a savepoint per event; an event that fails ``max_attempts``
           times becomes a dead letter.
        6. Insert dead letters and outbox rows (one statement each, the outbox
           one also NOTIFYs the relay), then COMMIT.
        7. Add the committed ids to the hot-id cache, then ack every event of
           the batch in offset order: only now may Faust commit their offsets.

        A transient error (database or connection lost, serialization failure,
        deadlock) in steps 3-6 rolls back and retries from step 3 after a
        capped, jittered backoff, without acking: the worker neither skips the
        batch nor crash-loops, and resumes by itself when the service is back.
        """
        if self._stopping.is_set():
            return  # the worker is stopping: leave the events unacked for the next owner
        self._idle.clear()
        try:
            await self._process(events)
        finally:
            self._idle.set()

    async def _process(self, events: Sequence[Event]) -> None:
        self.stats.batches += 1
        self.stats.events_in += len(events)
        fresh: list[_Item] = []
        seen: set[str] = set()
        for item in map(self._decode, events):
            if item.message_id in seen:
                self.stats.duplicates += 1
            else:
                seen.add(item.message_id)
                fresh.append(item)
        known = self.cache.known(seen)
        if known:
            self.stats.cache_hits += len(known)
            self.stats.duplicates += len(known)
            fresh = [item for item in fresh if item.message_id not in known]
        if fresh:
            try:
                outcome = await self._commit(fresh)
            except _Abandoned:
                log.warning(
                    "processor=%s abandoned a batch of %d on shutdown; it will be redelivered",
                    self.name, len(events),
                )
                return
            self.stats.duplicates += outcome.duplicates
            self.stats.handled += len(outcome.handled)
            self.stats.dead_lettered += len(outcome.dead)
            self.stats.emitted += len(outcome.emitted)
            faults.hit("after_commit")
            self.cache.add(outcome.handled)
        elif known:
            self.stats.transactions_saved += 1  # BEGIN, claim and COMMIT: three round trips
        for event in events:
            event.ack()

    def _decode(self, event: Event) -> _Item:
        message = event.message
        record = Record(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            headers=list(message.headers or ()),
            timestamp=message.timestamp,
        )
        try:
            message_id = message_id_of(record, self.options.message_id)
        except DecodeError as exc:
            return _Item(event, record, record.position, error=exc)
        try:
            return _Item(event, record, message_id, value=self._decode_value(record))
        except DecodeError as exc:
            return _Item(event, record, message_id, error=exc)
        except Exception as exc:  # noqa: BLE001 - a custom codec's bug is still bad input, not a crash
            return _Item(event, record, message_id, error=DecodeError(f"codec failed: {exc!r}"))

    def _decode_value(self, record: Record) -> Any:
        if record.value is None:
            raise NullValueError(f"{record.position} has a null value")
        if self.options.require_key and record.key is None:
            raise NullKeyError(f"{record.position} has no key and {self.name} requires one")
        if len(record.value) > self.options.max_message_bytes:
            raise PayloadTooLargeError(
                f"{record.position} value is {len(record.value)} bytes, "
                f"the limit is {self.options.max_message_bytes}"
            )
        return self.options.codec.decode(record.value)

    async def _commit(self, items: list[_Item]) -> _Outcome:
        failures: dict[str, _Failure] = {}
        isolate = False
        retries = 0
        while True:
            try:
                self.stats.transactions += 1
                return await self._transaction(items, isolate, failures)
            except _HandlerFailed as failed:
                self.stats.handler_failures += 1
                if failed.message_id is not None:
                    failures[failed.message_id] = _Failure(failed.exc, attempts=1)
                log.warning(
                    "processor=%s handler failed in a batch of %d, redoing it event by event: %r",
                    self.name, len(items), failed.exc,
                )
                isolate = True
            except Exception as exc:  # noqa: BLE001 - anything else: retry the batch, never skip it
                if self._stopping.is_set():
                    raise _Abandoned from exc
                retries += 1
                self.stats.batch_retries += 1
                delay = backoff_s(retries, self.options.retry_backoff_ms, self.options.retry_backoff_max_ms)
                log.log(
                    logging.WARNING if is_transient(exc) else logging.ERROR,
                    "processor=%s batch of %d failed (attempt %d, %s), retrying in %.2fs: %r",
                    self.name, len(items), retries,
                    "transient" if is_transient(exc) else "unexpected", delay, exc,
                )
                await self._sleep(delay)

    async def _transaction(
        self, items: list[_Item], isolate: bool, failures: dict[str, _Failure]
    ) -> _Outcome:
        outcome = _Outcome()
        async with self._host.sessions() as session, session.begin():
            conn = await session.connection()
            claimed = await inbox.claim(
                conn, self._schema, self.name, [(item.message_id, item.record) for item in items]
            )
            for item in items:
                if item.message_id not in claimed:
                    outcome.duplicates += 1
                elif item.error is not None:
                    outcome.dead.append(
                        DeadLetter.from_exception(
                            self.name, item.message_id, item.record, item.error, attempts=1
                        )
                    )
                elif isolate:
                    await self._run_isolated(session, item, failures, outcome)
                else:
                    ctx = self._context(session, item)
                    try:
                        await self._call_handler(ctx, item.value)
                    except Exception as exc:
                        if is_transient(exc):
                            raise
                        raise _HandlerFailed(item.message_id, exc) from exc
                    outcome.emitted.extend(ctx.emitted)
                    outcome.handled.append(item.message_id)
            if not isolate:
                try:
                    await session.flush()
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    raise _HandlerFailed(None, exc) from exc
            await deadletter.append(conn, self._schema, outcome.dead)
            await outbox.append(
                conn, self._schema, outcome.emitted + self._dead_letter_messages(outcome.dead), self._shards
            )
            faults.hit("before_commit")
        return outcome

    async def _run_isolated(
        self, session: AsyncSession, item: _Item, failures: dict[str, _Failure], outcome: _Outcome
    ) -> None:
        failure = failures.get(item.message_id)
        while True:
            ctx = self._context(session, item)
            try:
                async with session.begin_nested():
                    await self._call_handler(ctx, item.value)
                    await session.flush()
            except Exception as exc:
                if is_transient(exc):
                    raise
                if failure is None:
                    failure = failures[item.message_id] = _Failure(exc, attempts=1)
                else:
                    failure.exc, failure.attempts = exc, failure.attempts + 1
                self.stats.handler_failures += 1
            else:
                outcome.emitted.extend(ctx.emitted)
                outcome.handled.append(item.message_id)
                return
            if failure.attempts >= self.options.max_attempts:
                log.error(
                    "processor=%s topic=%s partition=%d offset=%d message_id=%s dead-lettered "
                    "after %d attempts: %r",
                    self.name, item.record.topic, item.record.partition, item.record.offset,
                    item.message_id, failure.attempts, failure.exc,
                )
                outcome.dead.append(
                    DeadLetter.from_exception(
                        self.name, item.message_id, item.record, failure.exc,
                        attempts=failure.attempts, first_failed_at=failure.first_at,
                    )
                )
                return
            await self._sleep(
                backoff_s(failure.attempts, self.options.retry_backoff_ms, self.options.retry_backoff_max_ms)
            )

    async def _call_handler(self, ctx: Context, value: Any) -> None:
        info = ctx.session.sync_session.info
        info[_IN_HANDLER] = True
        try:
            await self.handler(ctx, value)
        finally:
            info[_IN_HANDLER] = False

    async def _sleep(self, seconds: float) -> None:
        """Back off for ``seconds``; raise :class:`_Abandoned` if the worker starts stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            return
        raise _Abandoned

    def _context(self, session: AsyncSession, item: _Item) -> Context:
        return Context(session, item.record, item.message_id, self.name, self._host.resolve_topic)

    def _dead_letter_messages(self, letters: list[DeadLetter]) -> list[OutboxMessage]:
        topic = self.options.dead_letter_topic
        if topic is None:
            return []
        return [
            OutboxMessage(
                topic,
                letter.record.key,
                letter.record.value,
                [
                    *letter.record.headers,
                    ("dlq-processor", self.name.encode()),
                    ("dlq-reason", letter.reason.encode()),
                    ("dlq-error", letter.error_message[:1000].encode()),
                    ("dlq-source", letter.record.position.encode()),
                ],
            )
            for letter in letters
        ]
