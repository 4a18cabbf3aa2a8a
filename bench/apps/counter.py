"""Baseline: a plain Faust agent that only takes batches and acks them (no database)."""

from __future__ import annotations

import os

import faust

from streamproc import Settings

settings = Settings.from_env()
app = faust.App(os.environ["BENCH_APP_ID"], broker=settings.faust_broker, web_enabled=False)
source = app.topic(os.environ["BENCH_TOPIC"], value_type=bytes, value_serializer="raw",
                   key_type=bytes, key_serializer="raw")
BATCH = int(os.environ.get("STREAMPROC_BATCH_SIZE", "500"))
count = 0


@app.agent(source)
async def counter(stream: faust.StreamT) -> None:
    global count
    async for events in stream.noack_take(BATCH, 0.05):
        count += len(events)
        for event in events:
            event.ack()
        if count >= int(os.environ["BENCH_MESSAGES"]):
            print(f"BENCH_DONE {count}", flush=True)
