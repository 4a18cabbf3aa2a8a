"""The hot-id cache: bounded in entries and age, durable across reopen."""

from pathlib import Path

from streamproc.cache import HotIdCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_known_ids_and_age_bound(tmp_path: Path) -> None:
    clock = Clock()
    cache = HotIdCache(tmp_path, max_entries=100, max_age_s=60, clock=clock)
    cache.add(["a", "b"])
    assert cache.known(["a", "b", "c"]) == {"a", "b"}
    clock.now += 61
    assert cache.known(["a", "b"]) == set()
    cache.add(["c"])  # eviction runs on add
    assert len(cache) == 1
    cache.close()


def test_entry_bound_evicts_oldest_first(tmp_path: Path) -> None:
    clock = Clock()
    cache = HotIdCache(tmp_path, max_entries=3, max_age_s=3600, clock=clock)
    for name in "abcde":
        clock.now += 1
        cache.add([name])
    assert len(cache) == 3
    assert cache.known("abcde") == {"c", "d", "e"}
    cache.close()


def test_reopen_keeps_entries_and_count(tmp_path: Path) -> None:
    clock = Clock()
    cache = HotIdCache(tmp_path, max_entries=10, max_age_s=3600, clock=clock)
    cache.add([f"id-{i}" for i in range(7)])
    cache.close()
    again = HotIdCache(tmp_path, max_entries=10, max_age_s=3600, clock=clock)
    assert len(again) == 7
    assert again.known(["id-0", "id-6", "id-7"]) == {"id-0", "id-6"}
    again.close()


def test_deleting_the_directory_only_forgets(tmp_path: Path) -> None:
    import shutil

    cache = HotIdCache(tmp_path / "c", max_entries=10, max_age_s=3600)
    cache.add(["a"])
    cache.close()
    shutil.rmtree(tmp_path / "c")
    fresh = HotIdCache(tmp_path / "c", max_entries=10, max_age_s=3600)
    assert fresh.known(["a"]) == set() and len(fresh) == 0
    fresh.close()
