"""One streamproc processor: claim, one business row per message, commit, ack."""

from __future__ import annotations

import os

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import streamproc


class Base(DeclarativeBase):
    pass


class Seen(Base):
    __tablename__ = "bench_seen"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String)


app = streamproc.App(os.environ["BENCH_APP_ID"], tables=Base.metadata, relay=False)
source = app.topic(os.environ["BENCH_TOPIC"])
TARGET = int(os.environ["BENCH_MESSAGES"])


@app.processor(source)
async def single(ctx: streamproc.Context, value: dict) -> None:
    ctx.session.add(Seen(message_id=ctx.message_id))
    if value["n"] == TARGET - 1:
        print(f"BENCH_LAST {value['n']}", flush=True)
