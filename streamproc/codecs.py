"""Value codecs: bytes on Kafka <-> the objects handlers see.

JSON is the default. A model is a pydantic ``BaseModel`` or a ``faust.Record``
class; without a model a value is plain JSON (dict, list, …). A processor or
an emit can take any object with ``encode``/``decode`` (:class:`Codec`).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import faust
import pydantic

from .errors import InvalidJsonError, InvalidUtf8Error, SchemaMismatchError

__all__ = ["Codec", "JsonCodec", "encode_value"]


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back. ``decode`` raises a :class:`DecodeError`."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON, optionally validated into ``model`` (pydantic model or faust Record)."""

    def __init__(self, model: type[Any] | None = None) -> None:
        self.model = model

    def encode(self, value: Any) -> bytes:
        return encode_value(value)

    def decode(self, data: bytes) -> Any:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidUtf8Error(f"value is not UTF-8: {exc}") from exc
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise InvalidJsonError(f"value is not JSON: {exc}") from exc
        model = self.model
        if model is None or model in (bytes, str):
            return obj
        if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
            try:
                return model.model_validate(obj)
            except pydantic.ValidationError as exc:
                raise SchemaMismatchError(
                    f"value does not fit {model.__name__}: {exc.error_count()} error(s): "
                    f"{exc.errors(include_url=False)[:3]}"
                ) from exc
        if isinstance(model, type) and issubclass(model, faust.Record):
            return _decode_record(model, obj)
        raise SchemaMismatchError(f"no JSON decoding for model {model!r}")


def _decode_record(model: type[faust.Record], obj: Any) -> faust.Record:
    if not isinstance(obj, dict):
        raise SchemaMismatchError(
            f"value does not fit {model.__name__}: expected an object, got {type(obj).__name__}"
        )
    known = set(model._options.fields)
    unknown = set(obj) - known - {"__faust"}
    if unknown:
        raise SchemaMismatchError(f"value does not fit {model.__name__}: unknown fields {sorted(unknown)}")
    try:
        record = model(**{k: v for k, v in obj.items() if k != "__faust"})
        record.validate_or_raise()
    except (TypeError, ValueError, faust.exceptions.ValidationError) as exc:
        raise SchemaMismatchError(f"value does not fit {model.__name__}: {exc}") from exc
    return record


def encode_value(value: Any) -> bytes:
    """JSON bytes of a pydantic model, a faust Record, ``bytes`` (as is) or plain data."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json().encode()
    if isinstance(value, faust.Record):
        return json.dumps(value.asdict(), separators=(",", ":"), default=str).encode()
    return json.dumps(value, separators=(",", ":"), default=str).encode()
