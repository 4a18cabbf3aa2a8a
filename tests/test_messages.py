"""Message ids: header first, then the processor's source, then the position."""

import uuid

import pytest

from streamproc import InvalidMessageIdError, Record
from streamproc.messages import headers_from_json, headers_to_json, message_id_of, new_message_id


def rec(*headers: tuple[str, bytes]) -> Record:
    return Record("orders", 2, 41, b"k", b"{}", list(headers))


def test_id_sources_in_order() -> None:
    assert message_id_of(rec(("message-id", b"m1"), ("x-id", b"x1")), "x-id") == "m1"
    assert message_id_of(rec(("x-id", b"x1")), "x-id") == "x1"
    assert message_id_of(rec(), lambda r: f"fn-{r.offset}") == "fn-41"
    assert message_id_of(rec()) == "orders/2/41"


def test_a_failing_id_function_is_bad_input() -> None:
    with pytest.raises(InvalidMessageIdError, match="id function failed"):
        message_id_of(rec(), lambda r: r.value["id"])


@pytest.mark.parametrize("bad", [b"", b"   ", b"x" * 201, b"\xff\xfe", b"a\x00b"])
def test_bad_id_headers(bad: bytes) -> None:
    with pytest.raises(InvalidMessageIdError):
        message_id_of(rec(("message-id", bad)))


def test_new_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_message_id() for _ in range(100)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 100
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_headers_survive_storage_losslessly() -> None:
    headers = [("message-id", b"m1"), ("binary", b"\xff\x00"), ("message-id", b"m2")]
    assert headers_from_json(headers_to_json(headers)) == headers
