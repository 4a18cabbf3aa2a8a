"""Message identity and lineage, carried in Kafka headers, never in the value.

Every message the relay publishes has a ``message-id`` header (a UUIDv7 made
when the handler emitted it) and a ``causation-id`` header (the id of the
message whose handler emitted it); ``traceparent`` is passed on when present.
An input's id is, in order: the ``message-id`` header; the processor's own
id source (another header name or a function of the record); else
``<topic>/<partition>/<offset>``, which is stable across redeliveries.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .errors import InvalidMessageIdError

__all__ = [
    "CAUSATION_ID_HEADER",
    "MESSAGE_ID_HEADER",
    "MAX_MESSAGE_ID_LENGTH",
    "TRACEPARENT_HEADER",
    "headers_from_json",
    "headers_to_json",
    "IdSource",
    "Record",
    "message_id_of",
    "new_message_id",
]

MESSAGE_ID_HEADER = "message-id"
CAUSATION_ID_HEADER = "causation-id"
TRACEPARENT_HEADER = "traceparent"
MAX_MESSAGE_ID_LENGTH = 200

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    """A raw input record as read from Kafka: position, key, value and headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: float | None = None

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    @property
    def position(self) -> str:
        """``topic/partition/offset``."""
        return f"{self.topic}/{self.partition}/{self.offset}"


#: Where a processor finds the id of records from outside producers: a header
#: name, or a function of the record returning the id.
IdSource = Union[str, Callable[[Record], Any], None]


def message_id_of(record: Record, source: IdSource = None) -> str:
    """The record's message id; raises :class:`InvalidMessageIdError` for a bad header."""
    raw = record.header(MESSAGE_ID_HEADER)
    if raw is not None:
        return _valid_id(raw, MESSAGE_ID_HEADER)
    if isinstance(source, str):
        raw = record.header(source)
        if raw is not None:
            return _valid_id(raw, source)
    elif source is not None:
        try:
            value = source(record)
        except Exception as exc:  # noqa: BLE001 - the user's function failing is bad input
            raise InvalidMessageIdError(f"id function failed: {exc!r}") from exc
        if value is not None:
            return _valid_id(str(value).encode() if not isinstance(value, bytes) else value, "id function")
    return record.position


def _valid_id(raw: bytes, where: str) -> str:
    try:
        text = raw.decode("utf-8")
    except (UnicodeDecodeError, AttributeError) as exc:
        raise InvalidMessageIdError(f"{where} is not UTF-8 text") from exc
    if not text.strip():
        raise InvalidMessageIdError(f"{where} is empty")
    if len(text) > MAX_MESSAGE_ID_LENGTH:
        raise InvalidMessageIdError(
            f"{where} is {len(text)} characters long, the limit is {MAX_MESSAGE_ID_LENGTH}"
        )
    if not text.isprintable():
        raise InvalidMessageIdError(f"{where} has control characters")
    return text


def new_message_id() -> str:
    """A UUIDv7 (RFC 9562) string: time-ordered, unique without coordination."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 random bits: 12 for rand_a, 62 for rand_b
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 68) << 64  # rand_a
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b
    return str(uuid.UUID(int=value))


def headers_to_json(headers: Headers) -> str:
    """Headers as a JSON list, lossless: text values as ``v``, other bytes as base64 ``b``."""
    items = []
    for name, value in headers:
        try:
            items.append({"k": name, "v": value.decode("utf-8")})
        except UnicodeDecodeError:
            items.append({"k": name, "b": base64.b64encode(value).decode()})
    return json.dumps(items, separators=(",", ":"))


def headers_from_json(text: str | list[dict[str, str]]) -> list[tuple[str, bytes]]:
    """The inverse of :func:`headers_to_json`."""
    items = json.loads(text) if isinstance(text, str) else text
    return [
        (item["k"], item["v"].encode() if "v" in item else base64.b64decode(item["b"]))
        for item in items
    ]
