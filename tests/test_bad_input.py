"""Each kind of bad input is dead-lettered with its own reason, through Kafka,
while the messages after it are processed."""

from __future__ import annotations

import json

from tests.kafka_helpers import consume_all, produce
from tests.pipeline import Pipeline
from tests.test_offsets import committed
from tests.waiting import wait_until

BAD = [
    # (key, value, headers, expected message id, expected reason)
    (b"k", b"{not json", [("message-id", b"bad-json")], "bad-json", "invalid_json"),
    (b"k", b'{"seq": "seven"}', [("message-id", b"bad-shape")], "bad-shape", "schema_mismatch"),
    (b"k", None, [("message-id", b"bad-null")], "bad-null", "null_value"),
    (None, b'{"seq": 1}', [("message-id", b"bad-key")], "bad-key", "null_key"),
    (b"k", b'{"seq": 1, "pad": "' + b"x" * 3000 + b'"}', [("message-id", b"bad-size")], "bad-size",
     "payload_too_large"),
    (b"k", b'{"seq": "\xff\xfe"}', [("message-id", b"bad-utf8")], "bad-utf8", "invalid_utf8"),
    (b"k", b'{"seq": 1}', [("message-id", b"")], None, "invalid_message_id"),
    (b"k", b'{"seq": 1}', [("message-id", b"x" * 300)], None, "invalid_message_id"),
    (b"k", b'{"seq": 1}', [("message-id", b"\xc3\x28")], None, "invalid_message_id"),
    (b"k", b'{"seq": 99, "emit_to": "not-declared"}', [("message-id", b"bad-emit")], "bad-emit",
     "handler_error"),
]


async def test_each_bad_input_gets_its_reason_and_the_stream_goes_on(pipeline: Pipeline) -> None:
    await pipeline.create_topics(["in", "out", "in.dlq"], partitions=1)
    good = [(b"k", json.dumps({"seq": i}).encode(), [("message-id", f"good-{i}".encode())]) for i in range(5)]
    records = [(k, v, h) for k, v, h, _, _ in BAD]
    await produce(pipeline.bootstrap, pipeline.topic("in"), good[:2] + records + good[2:])
    worker = pipeline.worker("tests.apps.flaky", STREAMPROC_MAX_MESSAGE_BYTES="2000").start()
    total = len(good) + len(BAD)
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == total, 60, f"offset {total}")
    worker.stop()

    letters = await pipeline.rows('SELECT message_id, reason, "offset", value, error_message FROM {s}.dead_letter ORDER BY "offset"')
    assert [r["reason"] for r in letters] == [reason for *_, reason in BAD]
    for row, (_, value, _, message_id, _) in zip(letters, BAD):
        assert row["value"] == value  # the raw bytes are kept whole
        assert row["message_id"] == (message_id or f"{pipeline.topic('in')}/0/{row['offset']}")
        assert row["error_message"]
    assert "not-declared" in letters[-1]["error_message"]
    effects = await pipeline.rows("SELECT message_id FROM {s}.effect ORDER BY seq")
    assert [r["message_id"] for r in effects] == [f"good-{i}" for i in range(5)]
    dlq = await consume_all(pipeline.bootstrap, pipeline.topic("in.dlq"), len(BAD) + 1, 5)
    assert sorted(dict(m.headers)["dlq-reason"].decode() for m in dlq) == sorted(r for *_, r in BAD)
