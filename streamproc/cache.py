"""The hot-id cache: a local RocksDB (rocksdict) set of message ids known done.

A hint, never the truth. It is written only after the transaction that
claimed the ids committed, so a hit always means "done". A miss means
nothing: PostgreSQL's inbox decides. Deleting the directory costs round
trips, never correctness. Bounded in entries (oldest evicted first) and in
age (entries older than the inbox retention are ignored and evicted, because
past that the inbox forgets the id too).

Layout: ``i<id>`` -> added-at (ms, 8 bytes) and ``t<added-at><id>`` -> ``b""``,
the second an index in age order for eviction; ``c`` holds the entry count,
written in the same batch as the entries it counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

__all__ = ["HotIdCache"]

_COUNT_KEY = b"c"
_BLOCK_CACHE_BYTES = 16 * 1024 * 1024
_WRITE_BUFFER_BYTES = 8 * 1024 * 1024


class HotIdCache:
    """Ids of messages a processor finished, kept on local disk."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_entries: int,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self.max_age_ms = int(max_age_s * 1000)
        self._clock = clock
        self._db = Rdict(str(self.path), _options())
        self._closed = False
        stored = self._db.get(_COUNT_KEY)
        self._count = int.from_bytes(stored, "big") if stored is not None else 0

    def __len__(self) -> int:
        return self._count

    def known(self, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` recorded as done and not older than the retention."""
        oldest = self._now_ms() - self.max_age_ms
        found = set()
        for message_id in ids:
            stamp = self._db.get(b"i" + message_id.encode())
            if stamp is not None and int.from_bytes(stamp, "big") >= oldest:
                found.add(message_id)
        return found

    def add(self, ids: Iterable[str]) -> None:
        """Record ``ids`` as done (call only after their transaction committed)."""
        stamp = self._now_ms().to_bytes(8, "big")
        batch = WriteBatch(raw_mode=True)
        added = 0
        for message_id in ids:
            key = message_id.encode()
            batch.put(b"i" + key, stamp)
            batch.put(b"t" + stamp + key, b"")
            added += 1
        if added:
            self._count += added
            batch.put(_COUNT_KEY, self._count.to_bytes(8, "big"))
            self._db.write(batch)
        self._evict()

    def close(self) -> None:
        """Flush and close the database (again: no-op)."""
        if not self._closed:
            self._closed = True
            self._db.close()

    def _evict(self) -> None:
        oldest = self._now_ms() - self.max_age_ms
        excess = self._count - self.max_entries
        batch = WriteBatch(raw_mode=True)
        removed = 0
        for raw in self._db.keys(from_key=b"t"):
            key = cast(bytes, raw)  # raw mode: keys are bytes
            if not key.startswith(b"t"):
                break
            if removed >= excess and int.from_bytes(key[1:9], "big") >= oldest:
                break
            batch.delete(key)
            batch.delete(b"i" + key[9:])
            removed += 1
        if removed:
            self._count = max(0, self._count - removed)
            batch.put(_COUNT_KEY, self._count.to_bytes(8, "big"))
            self._db.write(batch)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _options() -> Options:
    # Sized deliberately: rocksdict's defaults give every database a large block cache.
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(_WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(_BLOCK_CACHE_BYTES))
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    return options
