"""The library type-checks (it ships py.typed, so users' checkers read it)."""

import subprocess
import sys
from pathlib import Path


def test_mypy_finds_nothing() -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
