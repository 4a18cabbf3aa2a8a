"""Capped exponential backoff with full jitter."""

from __future__ import annotations

import random

__all__ = ["backoff_s"]


def backoff_s(attempt: int, base_ms: int, cap_ms: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): uniform in
    ``[0.5, 1] × min(cap, base × 2^(attempt-1))``, so retries of many workers spread out."""
    ceiling = min(cap_ms, base_ms * 2 ** min(attempt - 1, 30))
    return ceiling * random.uniform(0.5, 1.0) / 1000
