"""The one exception tree of streamproc.

::

    StreamprocError                      root; ``retriable`` says whether a retry can help
    ├── ConfigurationError               a setting is missing or malformed
    ├── UndeclaredTopicError             ``ctx.emit`` to a topic the app never declared
    ├── SessionMisuseError               a handler tried to commit ``ctx.session``
    ├── DecodeError                      input that cannot become an event (dead-lettered)
    │   ├── NullValueError               the record has no value
    │   ├── NullKeyError                 the processor needs a key and the record has none
    │   ├── PayloadTooLargeError         value over ``max_message_bytes``
    │   ├── InvalidUtf8Error             value bytes are not UTF-8
    │   ├── InvalidJsonError             value is not JSON
    │   ├── SchemaMismatchError          JSON of the wrong shape for the topic's model
    │   └── InvalidMessageIdError        message-id header empty, too long or not text
    └── TransientError                   retriable: the database or broker is unavailable

Retry code reads ``retriable`` (via :func:`is_transient`), never a list of types
at the call site.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import errors as kafka_errors
from sqlalchemy import exc as sa_exc

__all__ = [
    "ConfigurationError",
    "DecodeError",
    "InvalidJsonError",
    "InvalidMessageIdError",
    "InvalidUtf8Error",
    "NullKeyError",
    "NullValueError",
    "PayloadTooLargeError",
    "SchemaMismatchError",
    "SessionMisuseError",
    "StreamprocError",
    "TransientError",
    "UndeclaredTopicError",
    "is_transient",
]


class StreamprocError(Exception):
    """Root of every error streamproc raises."""

    retriable: bool = False


class ConfigurationError(StreamprocError):
    """A setting is missing or malformed."""


class UndeclaredTopicError(StreamprocError):
    """``ctx.emit`` named a topic that the app never declared with ``app.topic``."""


class SessionMisuseError(StreamprocError):
    """A handler called ``ctx.session.commit()``: the batch transaction is streamproc's."""


class DecodeError(StreamprocError):
    """An input record that cannot become an event; it is dead-lettered.

    ``reason`` is a short stable code stored with the dead letter.
    """

    reason: str = "decode_error"


class NullValueError(DecodeError):
    """The record has no value (a tombstone or a producer bug)."""

    reason = "null_value"


class NullKeyError(DecodeError):
    """The processor requires a key and the record has none."""

    reason = "null_key"


class PayloadTooLargeError(DecodeError):
    """The value is larger than ``max_message_bytes``."""

    reason = "payload_too_large"


class InvalidUtf8Error(DecodeError):
    """The value bytes are not valid UTF-8."""

    reason = "invalid_utf8"


class InvalidJsonError(DecodeError):
    """The value is not JSON."""

    reason = "invalid_json"


class SchemaMismatchError(DecodeError):
    """The value is JSON but not of the shape the topic's model needs."""

    reason = "schema_mismatch"


class InvalidMessageIdError(DecodeError):
    """The message-id header is empty, too long or not text."""

    reason = "invalid_message_id"


class TransientError(StreamprocError):
    """A service is unavailable for now; the work is retried in place."""

    retriable = True


_TRANSIENT_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same work later can succeed.

    True for streamproc errors marked ``retriable``, lost or refused database
    connections, serialization failures and deadlocks, and Kafka errors that
    aiokafka marks retriable.
    """
    if isinstance(exc, StreamprocError):
        return exc.retriable
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(
            exc, kafka_errors.KafkaConnectionError
        )
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return exc.orig is not None and is_transient(_driver_error(exc.orig))
    if isinstance(exc, (sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    return isinstance(exc, _TRANSIENT_DRIVER_ERRORS)


def _driver_error(orig: BaseException) -> BaseException:
    # SQLAlchemy's asyncpg adapter wraps the asyncpg error once more.
    cause = orig.__cause__
    return cause if cause is not None else orig
