"""Plain Faust agents that ack the way DESIGN.md warns about, for the offset tests.

``TEST_MODE=out_of_order``: take 10 events, ack all but the first, commit, log
``STEP1``, wait, ack the first, commit, log ``STEP2``.
``TEST_MODE=raise``: a plain ``async for`` whose body raises on seq 5.
``TEST_GUARDED=1`` builds the app with ``streamproc.App`` (guarded consumer),
otherwise with ``faust.App`` (stock consumer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

import faust

import streamproc

log = logging.getLogger(__name__)
PREFIX = os.environ["TEST_TOPIC_PREFIX"]

if os.environ.get("TEST_GUARDED") == "1":
    app: faust.App = streamproc.App(os.environ["TEST_APP_ID"], relay=False)
else:
    app = faust.App(
        os.environ["TEST_APP_ID"], broker=os.environ["KAFKA_BROKER"], web_enabled=False,
    )
source = app.topic(f"{PREFIX}in", value_type=bytes, value_serializer="raw")


if os.environ["TEST_MODE"] == "out_of_order":

    @app.agent(source)
    async def out_of_order(stream: faust.StreamT) -> None:
        held = []
        async for event in stream.noack().events():
            held.append(event)
            if len(held) == 10:
                for later in held[1:]:
                    later.ack()
                await app.consumer.commit()
                log.warning("STEP1")
                await asyncio.sleep(6)
                held[0].ack()
                await app.consumer.commit()
                log.warning("STEP2")

else:

    @app.agent(source)
    async def raises(stream: faust.StreamT) -> None:
        async for value in stream:
            seq = json.loads(value)["seq"]
            if seq == 5:
                raise RuntimeError("seq 5 fails")
            log.warning("DONE %d", seq)
