"""A one-processor app whose handler misbehaves on request, for the tests.

Each input is JSON ``{"seq": n, ...}`` (a :class:`Probe`) with a key;
optional fields ask the handler to fail: ``fail_times`` (raise that many times, then succeed), ``emit_then_fail``
(emit, then always raise), ``transient_for_s`` (raise a retriable error for
that many seconds after first seeing it). Every successful run writes one
``effect`` row (no unique constraint, so a double effect would show as two
rows) and emits ``{"seq": n}`` to ``<prefix>out``.
"""

from __future__ import annotations

import os
import time
from collections import Counter

from pydantic import BaseModel
from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import streamproc

PREFIX = os.environ["TEST_TOPIC_PREFIX"]


class Probe(BaseModel):
    seq: int
    fail_times: int = 0
    emit_then_fail: bool = False
    transient_for_s: float = 0
    emit_to: str | None = None


class Base(DeclarativeBase):
    pass


class Effect(Base):
    __tablename__ = "effect"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String, index=True)
    seq: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)


app = streamproc.App(os.environ["TEST_APP_ID"], tables=Base.metadata)
inputs = app.topic(f"{PREFIX}in", value_type=Probe)
outputs = app.topic(f"{PREFIX}out")
attempts: Counter[str] = Counter()
first_seen: dict[str, float] = {}


@app.processor(inputs, dead_letter_topic=True, require_key=True)
async def flaky(ctx: streamproc.Context, probe: Probe) -> None:
    attempts[ctx.message_id] += 1
    first_seen.setdefault(ctx.message_id, time.monotonic())
    ctx.session.add(Effect(message_id=ctx.message_id, seq=probe.seq, attempt=attempts[ctx.message_id]))
    await ctx.emit(outputs, {"seq": probe.seq}, key=ctx.key)
    if attempts[ctx.message_id] <= probe.fail_times:
        raise RuntimeError(f"flaky failure {attempts[ctx.message_id]} of seq {probe.seq}")
    if probe.emit_then_fail:
        raise ValueError(f"seq {probe.seq} always fails")
    if time.monotonic() - first_seen[ctx.message_id] < probe.transient_for_s:
        raise streamproc.TransientError(f"seq {probe.seq}: database pretends to be down")
    if probe.emit_to:
        await ctx.emit(probe.emit_to, {"seq": probe.seq})
