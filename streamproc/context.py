"""What a handler sees: the transaction's session, the input's identity, and emit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from .codecs import Codec
from .messages import (
    CAUSATION_ID_HEADER,
    MESSAGE_ID_HEADER,
    TRACEPARENT_HEADER,
    Record,
    new_message_id,
)
from .outbox import OutboxMessage

__all__ = ["Context", "TopicResolver"]

#: Maps a topic (a faust topic or its name) to its name and value codec;
#: raises :class:`UndeclaredTopicError` for a topic the app did not declare.
TopicResolver = Callable[[Any], tuple[str, Codec]]


class Context:
    """The handler's view of one input message.

    ``session`` is the SQLAlchemy async session of the batch transaction: add
    business rows to it, never commit it. ``emit`` stages an outgoing message
    in the outbox of the same transaction.
    """

    __slots__ = ("session", "record", "message_id", "processor", "emitted", "_resolve")

    def __init__(
        self,
        session: AsyncSession,
        record: Record,
        message_id: str,
        processor: str,
        resolve: TopicResolver,
    ) -> None:
        self.session = session
        self.record = record
        self.message_id = message_id
        self.processor = processor
        self.emitted: list[OutboxMessage] = []
        self._resolve = resolve

    @property
    def key(self) -> bytes | None:
        """The input record's key bytes."""
        return self.record.key

    async def emit(
        self,
        topic: Any,
        value: Any,
        *,
        key: str | bytes | None = None,
        headers: dict[str, str | bytes] | None = None,
    ) -> str:
        """Stage ``value`` for ``topic``; it is published after the transaction commits.

        Returns the new message's id. Raises :class:`UndeclaredTopicError` for a
        topic the app did not declare, which fails the handler (and rolls back).
        """
        name, codec = self._resolve(topic)
        message_id = new_message_id()
        out: list[tuple[str, bytes]] = [
            (MESSAGE_ID_HEADER, message_id.encode()),
            (CAUSATION_ID_HEADER, self.message_id.encode()),
        ]
        traceparent = self.record.header(TRACEPARENT_HEADER)
        if traceparent is not None:
            out.append((TRACEPARENT_HEADER, traceparent))
        for header, header_value in (headers or {}).items():
            out.append((header, header_value.encode() if isinstance(header_value, str) else header_value))
        self.emitted.append(
            OutboxMessage(
                topic=name,
                key=key.encode() if isinstance(key, str) else key,
                value=codec.encode(value),
                headers=out,
            )
        )
        return message_id
