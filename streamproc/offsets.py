"""A Faust consumer that never commits an offset past an unprocessed message.

faust-streaming 0.15.3 computes the next commit from the acked offsets only
(``Consumer._new_offset``); its guard against a gap at the head is off by one
and skipped when nothing was committed yet (faust-streaming issue #606). With
an unacked message at the head and later ones acked, it commits past the head
and the message is lost on the next restart. This consumer remembers the
offsets delivered and not yet acked (as plain numbers: a crashed stream's
events must not be kept alive, or shutdown's ``wait_empty`` would wait on
them forever) and holds the commit below the lowest of them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from weakref import WeakSet

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message

__all__ = ["GuardedConsumer"]


class _TrackedMessages(WeakSet[Message]):
    """Faust's weak set of unacked messages that also records their offsets.

    Faust adds to this set from three places (``Consumer.track_message`` and
    the Python and Cython stream iterators, which inline it), so recording
    here sees every delivered message.
    """

    def __init__(self, offsets: defaultdict[TP, set[int]]) -> None:
        super().__init__()
        self.offsets = offsets

    def add(self, message: Message) -> None:
        self.offsets[message.tp].add(message.offset)
        super().add(message)


class GuardedConsumer(Consumer):
    """Faust's aiokafka consumer with a commit that stops at the first unacked offset."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight: defaultdict[TP, set[int]] = defaultdict(set)
        self._unacked_messages = _TrackedMessages(self._in_flight)

    def ack(self, message: Message) -> bool:
        """Acknowledge ``message``; its offset no longer holds the commit back."""
        done = super().ack(message)
        if message.acked:
            in_flight = self._in_flight.get(message.tp)
            if in_flight is not None:
                in_flight.discard(message.offset)
        return done

    def _new_offset(self, tp: TP) -> int | None:
        in_flight = self._in_flight.get(tp)
        acked = self._acked[tp]
        if in_flight and acked and min(acked) > min(in_flight):
            return None
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Forget what was in flight on partitions this worker no longer owns."""
        for tp in revoked:
            self._in_flight.pop(tp, None)
        await super().on_partitions_revoked(revoked)
