"""Polling with a deadline: tests wait for effects, never for fixed sleeps alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout_s: float, what: str
) -> Any:
    """Await ``probe()`` until ``done(value)``; fail with the last value after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {value!r}")
