"""The chaos stack (stack/chaos.sh) seen from Python: endpoints, checks, faults.

The suite stops and restarts these services; they are not the dev stack of
``make services``, which other tests use at the same time.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaClient

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "stack" / "chaos.sh"
RUN_LOCK = ROOT / ".stack" / "chaos" / "run.lock"


class StackError(AssertionError):
    """A chaos service is missing or a stack command failed."""


@dataclass(frozen=True)
class Endpoints:
    database_url: str  # postgresql+asyncpg://...
    kafka: str  # the single broker, host:port
    cluster: str  # the three-node cluster, host:port,host:port,host:port

    @property
    def pg_dsn(self) -> str:
        return self.database_url.replace("+asyncpg", "", 1)


def endpoints() -> Endpoints:
    out = subprocess.run([str(SCRIPT), "endpoints"], check=True, capture_output=True, text=True).stdout
    return Endpoints(**json.loads(out))


def run(*args: str, timeout_s: float = 180) -> float:
    """Run ``stack/chaos.sh args...``; returns how long it took. Fails with its output."""
    t0 = time.monotonic()
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise StackError(f"stack/chaos.sh {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.monotonic() - t0


async def arun(*args: str, timeout_s: float = 180) -> float:
    return await asyncio.to_thread(run, *args, timeout_s=timeout_s)


async def kafka_problem(bootstrap: str, brokers: int) -> str | None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=20)
        found = len(client.cluster.brokers())
        return None if found >= brokers else f"{found} of {brokers} brokers in the metadata"
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()


async def postgres_problem(dsn: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def require(*components: str) -> Endpoints:
    """The endpoints, once every named component ("pg", "kafka", "cluster")
    answers; otherwise an AssertionError that says how to start it."""
    ep = endpoints()
    how = f"start it with `make chaos-services` or `stack/chaos.sh start {' '.join(components)}`"
    if "pg" in components and (problem := await postgres_problem(ep.pg_dsn)):
        raise StackError(f"the chaos PostgreSQL (127.0.0.1:5434) is not reachable ({problem}): {how}")
    if "kafka" in components and (problem := await kafka_problem(ep.kafka, 1)):
        raise StackError(f"the chaos Kafka broker ({ep.kafka}) is not reachable ({problem}): {how}")
    if "cluster" in components and (problem := await kafka_problem(ep.cluster, 3)):
        raise StackError(f"the chaos Kafka cluster ({ep.cluster}) is not complete ({problem}): {how}")
    return ep


@contextmanager
def exclusive(timeout_s: float = 3600) -> Iterator[None]:
    """One chaos run at a time per checkout: runs restart shared chaos services."""
    RUN_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with RUN_LOCK.open("w") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(f"another chaos run has held {RUN_LOCK} for {timeout_s}s") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
