"""JSON codecs turn each kind of bad input into its own decode error."""

import faust
import pydantic
import pytest

from streamproc import (
    InvalidJsonError,
    InvalidUtf8Error,
    JsonCodec,
    SchemaMismatchError,
)
from streamproc.codecs import encode_value


class OrderRecord(faust.Record, validation=True):
    id: str
    qty: int


class OrderModel(pydantic.BaseModel):
    id: str
    qty: int


@pytest.mark.parametrize("model", [OrderRecord, OrderModel])
def test_round_trip(model: type) -> None:
    codec = JsonCodec(model)
    value = codec.decode(b'{"id": "a", "qty": 2}')
    assert isinstance(value, model) and value.id == "a" and value.qty == 2
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize("model", [OrderRecord, OrderModel])
@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xff\xfe", InvalidUtf8Error),
        (b"not json", InvalidJsonError),
        (b'{"id": "a"}', SchemaMismatchError),
        (b'{"id": "a", "qty": "many"}', SchemaMismatchError),
        (b"[1, 2]", SchemaMismatchError),
    ],
)
def test_bad_input(model: type, data: bytes, error: type) -> None:
    with pytest.raises(error):
        JsonCodec(model).decode(data)


def test_plain_json_and_bytes() -> None:
    assert JsonCodec().decode(b'{"a": [1]}') == {"a": [1]}
    assert encode_value(b"raw") == b"raw"
    assert encode_value({"a": 1}) == b'{"a":1}'
