"""Fault hooks for the fault-injection suite; inert unless enabled.

``STREAMPROC_FAULT=<point>@<n>`` makes the process SIGKILL itself the n-th
time it reaches ``<point>``. Points, in the order a message meets them:

``before_commit``        the batch transaction is written but not committed
``after_commit``         committed, offsets not yet acked
``relay_publish``        the relay handed rows to the producer, acks pending
``relay_after_publish``  the broker acked, the rows are not deleted yet
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "hit"]

POINTS = ("before_commit", "after_commit", "relay_publish", "relay_after_publish")


def _parse(spec: str) -> tuple[str, int] | None:
    if not spec:
        return None
    point, _, count = spec.partition("@")
    if point not in POINTS:
        raise ValueError(f"STREAMPROC_FAULT: unknown point {point!r}; known: {POINTS}")
    return point, int(count or 1)


_PLAN = _parse(os.environ.get("STREAMPROC_FAULT", ""))
_hits = 0


def hit(point: str) -> None:
    """Mark that ``point`` was reached; kills the process if the plan says so."""
    global _hits
    if _PLAN is None or _PLAN[0] != point:
        return
    _hits += 1
    if _hits >= _PLAN[1]:
        os.kill(os.getpid(), signal.SIGKILL)
