"""Faust workers in subprocesses, started with the faust CLI exactly as users do."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

FAUST = str(Path(sys.executable).parent / "faust")
_STATS = re.compile(r"streamproc stats (\{.*\})")


class Worker:
    """``faust --datadir <dir> -A <app> worker`` with its log in a file."""

    def __init__(self, app: str, env: dict[str, str], data_dir: Path, name: str = "worker") -> None:
        self.app = app
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, timeout_s: float = 90, wait: bool = True, **extra_env: str) -> Worker:
        """Start the worker and (unless ``wait`` is false) wait until Faust says it is ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**self.env, **extra_env}
        log = self.log_path.open("ab")
        self._log_offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [FAUST, "--datadir", str(self.data_dir), "-A", self.app, "worker", "-l", "info", "--without-web"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent,
        )
        if wait:
            self.wait_for_log("[^Worker]: Ready", timeout_s)
        return self

    def log_text(self) -> str:
        """This run's log (since the last start)."""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def wait_for_log(self, needle: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"worker {self.app} exited ({self.proc.returncode}) before {needle!r}:\n"
                    + self.log_text()[-4000:]
                )
            time.sleep(0.2)
        raise AssertionError(f"worker {self.app}: no {needle!r} in {timeout_s}s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"worker did not stop within {timeout_s}s of SIGTERM:\n{self.log_text()[-4000:]}")
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def wait_exit(self, timeout_s: float) -> int:
        """Wait for the process to end by itself (a fault hook kills it)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {timeout_s}s:\n{self.log_text()[-3000:]}") from None

    def stats(self) -> dict[str, dict[str, int]]:
        """The last counters the worker logged (it logs them when it stops)."""
        found = _STATS.findall(self.log_text())
        assert found, f"no stats line in the worker log:\n{self.log_text()[-3000:]}"
        return json.loads(found[-1])

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
