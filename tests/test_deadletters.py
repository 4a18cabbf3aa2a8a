"""Dead letters through the faust CLI: list, show, replay (fresh attempts), purge."""

from __future__ import annotations

import os
import re
import subprocess

from tests.kafka_helpers import produce
from tests.pipeline import Pipeline
from tests.test_offsets import committed, seqs
from tests.waiting import wait_until
from tests.workers import FAUST


def cli(p: Pipeline, *args: str) -> str:
    done = subprocess.run(
        [FAUST, "-A", "tests.apps.flaky", *args], env={**os.environ, **p.env()},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


async def test_list_show_replay_purge(pipeline: Pipeline) -> None:
    await pipeline.create_topics(["in", "out", "in.dlq"], partitions=1)
    # seq 5 fails four times: dead-lettered after 3 attempts, then succeeds on the
    # second attempt of its replay (attempts start afresh).
    records = seqs(8, **{"5": {"fail_times": 4}})
    records[7] = (b"k", b"garbage", [("message-id", b"m-7")])
    await produce(pipeline.bootstrap, pipeline.topic("in"), records)
    worker = pipeline.worker("tests.apps.flaky").start()
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 8, 60, "offset 8")

    listing = cli(pipeline, "dlq-list")
    assert "m-5" not in listing  # the list names sources, not ids
    assert re.search(r"handler_error", listing) and re.search(r"invalid_json", listing)
    letters = {r["message_id"]: r["id"] for r in await pipeline.rows("SELECT id, message_id FROM {s}.dead_letter")}
    assert set(letters) == {"m-5", "m-7"}

    shown = cli(pipeline, "dlq-show", str(letters["m-5"]))
    assert "flaky failure 3 of seq 5" in shown and "Traceback" in shown and "attempts: 3" in shown

    assert "replayed 1" in cli(pipeline, "dlq-replay", str(letters["m-5"]))
    await wait_until(
        lambda: pipeline.scalar("SELECT count(*) FROM {s}.effect WHERE seq = 5"), lambda n: n == 1, 60,
        "seq 5 handled after the replay",
    )
    assert await pipeline.scalar("SELECT attempt FROM {s}.effect WHERE seq = 5") == 5
    assert await pipeline.scalar("SELECT count(*) FROM {s}.dead_letter") == 1

    assert "purged 1" in cli(pipeline, "dlq-purge", "--all")
    assert await pipeline.scalar("SELECT count(*) FROM {s}.dead_letter") == 0
    # A purged letter stays done: redelivering it does nothing.
    await produce(pipeline.bootstrap, pipeline.topic("in"), [records[7]])
    await wait_until(lambda: committed(pipeline, "in"), lambda c: c == 10, 60, "offset 10")
    worker.stop()
    assert await pipeline.scalar("SELECT count(*) FROM {s}.dead_letter") == 0
    effects = await pipeline.rows("SELECT seq, count(*) AS n FROM {s}.effect GROUP BY seq ORDER BY seq")
    assert [(r["seq"], r["n"]) for r in effects] == [(i, 1) for i in range(7)]
