"""streamproc: Kafka Streams-style processors on Faust with exactly-once effects.

A processor consumes a topic, drops duplicates through a PostgreSQL inbox
(with a RocksDB hot-id cache in front), runs its handler, and writes the
handler's rows and outgoing messages in one transaction; a relay drains the
outgoing messages (the outbox) onto Kafka.
"""

from . import cli as _cli  # registers the faust commands
from .app import App
from .codecs import Codec, JsonCodec
from .config import Settings
from .context import Context
from .errors import (
    ConfigurationError,
    DecodeError,
    InvalidJsonError,
    InvalidMessageIdError,
    InvalidUtf8Error,
    NullKeyError,
    NullValueError,
    PayloadTooLargeError,
    SchemaMismatchError,
    SessionMisuseError,
    StreamprocError,
    TransientError,
    UndeclaredTopicError,
)
from .messages import Record
from .processor import Processor

del _cli

__all__ = [
    "App",
    "Codec",
    "ConfigurationError",
    "Context",
    "DecodeError",
    "InvalidJsonError",
    "InvalidMessageIdError",
    "InvalidUtf8Error",
    "JsonCodec",
    "NullKeyError",
    "NullValueError",
    "PayloadTooLargeError",
    "Processor",
    "Record",
    "SchemaMismatchError",
    "SessionMisuseError",
    "Settings",
    "StreamprocError",
    "TransientError",
    "UndeclaredTopicError",
]
