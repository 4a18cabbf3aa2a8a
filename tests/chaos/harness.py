"""One chaos run: the shop chain (agents.app) under a producer that keeps
sending orders while, at the same time,

- a supervisor keeps worker w1 running, each time armed with the next fault
  point (``STREAMPROC_FAULT=<point>@<n>``), so that it SIGKILLs itself there;
- a membership loop starts and stops workers w2 and w3 in the same consumer
  group, forcing rebalances;
- a service loop restarts PostgreSQL (``pg_ctl restart``, fast or immediate),
  restarts the broker (or stops/kills and restarts one node of the three-node
  cluster) and SIGKILLs a random worker.

When every minimum is met the run stops the faults, lets one plain worker drain
the pipeline, stops it and hands over to :mod:`tests.chaos.checker`.
Workers are ``faust -A agents.app worker`` subprocesses (tests/workers.py),
each with its own data dir, so a restarted worker reuses its RocksDB cache.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamproc.faults import POINTS
from tests.chaos import stack
from tests.chaos.checker import Report, check
from tests.chaos.producer import OrderProducer, ProducerStats
from tests.workers import Worker

TOPICS = ["orders", "payments", "shipments", "notifications", "orders.dlq"]
CONSUMED = ["orders", "payments", "shipments"]
PARTITIONS = 4
_STATS = re.compile(r"streamproc stats (\{.*\})")


@dataclass(frozen=True)
class Plan:
    """What one run does; every count is a minimum the run reaches before it stops."""

    name: str
    cluster: bool  # False: the single broker; True: the three-node cluster (RF 3, min ISR 2)
    distinct: int  # distinct orders to send at least
    rate: float  # records per second the producer sends (duplicates included)
    kills_per_point: int
    random_kills: int
    pg_restarts: int
    broker_restarts: int  # single broker restarts, or stop-and-start of one cluster node
    rebalance_cycles: int  # one cycle: start w2, start w3, stop w3, stop w2
    dup_ratio: float = 0.1
    pause_s: tuple[float, float] = (4.0, 12.0)  # between two service faults
    member_pause_s: tuple[float, float] = (3.0, 8.0)  # between two membership changes
    fault_hits: tuple[int, int] = (2, 25)  # w1 is armed to die at the n-th hit, n in this range
    node_down_s: tuple[float, float] = (8.0, 20.0)  # how long a cluster node stays down
    drain_timeout_s: float = 300.0
    batch_size: int = 200
    seed: int | None = None


@dataclass
class Result:
    plan: Plan
    seed: int
    tag: str
    schema: str
    sent: int = 0
    distinct_sent: int = 0
    duplicates_injected: int = 0
    producer: ProducerStats | None = None
    kills: dict[str, int] = field(default_factory=lambda: {p: 0 for p in (*POINTS, "random")})
    restarts: dict[str, int] = field(default_factory=lambda: {"postgres": 0, "broker": 0})
    rebalances: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    # A worker started while a broker is down may exit (1) before it is ready:
    # Faust cannot bootstrap (single broker), or declares its topics through
    # the metadata's "controller" node, which can be the node just stopped.
    # No data is touched; counted and reported, not a failure.
    broker_down_exits: int = 0
    failed_starts: list[str] = field(default_factory=list)
    stop_timeouts: list[str] = field(default_factory=list)
    worker_runs: int = 0
    worker_stats: dict[str, Any] = field(default_factory=dict)
    drained_in_s: float | None = None
    chaos_s: float = 0.0
    total_s: float = 0.0
    report: Report | None = None

    def summary(self) -> dict[str, Any]:
        """The figures of this run, in the shape of bench/results/chaos.json."""
        assert self.report is not None
        r = self.report
        return {
            "sent": self.sent,
            "distinct": r.distinct,
            "kills": dict(self.kills),
            "restarts": dict(self.restarts),
            "rebalances": self.rebalances,
            "lost": r.lost,
            "double_effects": r.double_effects,
            "duplicates_absorbed": r.duplicates_absorbed,
            "duplicates_by_topic": dict(r.duplicates_by_topic),
            "duplicates_injected": self.duplicates_injected,
            "dead_letters": r.dead_letters,
            "cache_hits": self.worker_stats.get("cache_hits", 0),
            "worker_runs": self.worker_runs,
            "unexpected_exits": len(self.unexpected_exits),
            "exits_at_start_broker_down": self.broker_down_exits,
            "stop_timeouts": len(self.stop_timeouts),
            "drained_in_s": self.drained_in_s,
            "chaos_s": round(self.chaos_s, 1),
            "total_s": round(self.total_s, 1),
            "seed": self.seed,
            "brokers": 3 if self.plan.cluster else 1,
        }


class Slot:
    """One worker name (w1, w2, w3): its data dir survives restarts."""

    def __init__(self, name: str, env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.worker = Worker("agents.app", env, tmp / f"data-{name}", name=name)
        self.run_offsets: list[int] = []
        self.killed_by_us = False
        self.fault: str | None = None

    @property
    def running(self) -> bool:
        return self.worker.proc is not None and self.worker.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.worker.proc is None else self.worker.proc.poll()

    async def start(self, fault: str | None = None, wait: bool = True) -> None:
        path = self.worker.log_path
        self.run_offsets.append(path.stat().st_size if path.exists() else 0)
        self.killed_by_us = False
        self.fault = fault
        extra: dict[str, str] = {}
        if fault:
            extra["STREAMPROC_FAULT"] = fault
        await asyncio.to_thread(self.worker.start, 90, wait, **extra)

    async def stop(self) -> None:
        await asyncio.to_thread(self.worker.stop, 60)

    async def kill(self) -> None:
        self.killed_by_us = True
        await asyncio.to_thread(self.worker.kill)

    def stats_per_run(self) -> list[dict[str, Any]]:
        """The last stats line of every run (a killed run's last 30 s are missing)."""
        path = self.worker.log_path
        if not path.exists():
            return []
        data = path.read_bytes()
        bounds = [*self.run_offsets, len(data)]
        found = []
        for start, end in zip(bounds, bounds[1:]):
            lines = _STATS.findall(data[start:end].decode(errors="replace"))
            if lines:
                found.append(json.loads(lines[-1]))
        return found


class ChaosRun:
    """Sets up a pipeline of its own (topics, group, schema), runs the plan, checks."""

    def __init__(self, plan: Plan, endpoints: stack.Endpoints, tmp: Path) -> None:
        self.plan = plan
        self.ep = endpoints
        self.bootstrap = endpoints.cluster if plan.cluster else endpoints.kafka
        self.seed = plan.seed if plan.seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        tag = f"c{uuid.uuid4().hex[:8]}"
        self.tag = tag
        self.prefix = f"{tag}."
        self.schema = f"chaos_{tag}"
        self.result = Result(plan, self.seed, tag, self.schema)
        env = {
            "KAFKA_BROKER": ";".join(f"kafka://{s}" for s in self.bootstrap.split(",")),
            "DATABASE_URL": endpoints.database_url,
            "STREAMPROC_SCHEMA": self.schema,
            "SHOP_TOPIC_PREFIX": self.prefix,
            "SHOP_APP_ID": tag,
            "SHOP_PARTITIONS": str(PARTITIONS),
            "STREAMPROC_BATCH_SIZE": str(plan.batch_size),
            "STREAMPROC_RETRY_BACKOFF_MAX_MS": "2000",
            "TOPIC_REPLICATION_FACTOR": "3" if plan.cluster else "1",
            # A SIGKILLed member leaves the group after 8 s instead of 60 s.
            "BROKER_SESSION_TIMEOUT": "8",
            "BROKER_HEARTBEAT_INTERVAL": "1",
        }
        self.tmp = tmp / plan.name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.slots = {name: Slot(name, env, self.tmp) for name in ("w1", "w2", "w3")}
        self.producer = OrderProducer(
            self.bootstrap, f"{self.prefix}orders", tag, minimum=plan.distinct, rate=plan.rate,
            dup_ratio=plan.dup_ratio, seed=self.seed,
        )
        self.stopping = asyncio.Event()
        self.t0 = time.monotonic()
        self.broker_down = False
        self.broker_back_at = -1e9

    # -- reporting ------------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"[chaos {self.plan.name} {time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    def minimums_met(self) -> bool:
        r, p = self.result, self.plan
        return (
            all(r.kills[point] >= p.kills_per_point for point in POINTS)
            and r.kills["random"] >= p.random_kills
            and r.restarts["postgres"] >= p.pg_restarts
            and r.restarts["broker"] >= p.broker_restarts
            and r.rebalances >= 4 * p.rebalance_cycles
        )

    def _status(self) -> str:
        r = self.result
        kills = " ".join(f"{k}={v}" for k, v in r.kills.items())
        return (
            f"sent={self.producer.stats.sent} distinct={self.producer.stats.distinct} kills[{kills}] "
            f"restarts={r.restarts} rebalances={r.rebalances}"
        )

    # -- set-up -----------------------------------------------------------------

    async def create_topics(self) -> None:
        rf = 3 if self.plan.cluster else 1
        config = {"min.insync.replicas": "2" if self.plan.cluster else "1"}
        names = [f"{self.prefix}{t}" for t in TOPICS]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            topics = [NewTopic(n, PARTITIONS, rf, topic_configs=config) for n in names]
            # Faust's leader topic, made here so that it has the same replication.
            topics.append(NewTopic(f"{self.tag}-__assignor-__leader", 1, rf, topic_configs=config))
            response = await admin.create_topics(topics)
            for error in response.to_object()["topic_errors"]:
                assert error["error_code"] == 0, f"creating topic failed: {error}"
            deadline = time.monotonic() + 60
            while True:
                metas = await admin.describe_topics(names)
                if all(
                    m["error_code"] == 0 and len(m["partitions"]) == PARTITIONS
                    and all(p["leader"] >= 0 and len(p["replicas"]) == rf for p in m["partitions"])
                    for m in metas
                ):
                    break
                assert time.monotonic() < deadline, f"topics not ready: {metas}"
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    # -- the loops --------------------------------------------------------------

    def busy(self) -> bool:
        """Faults go on, beyond their minimums, as long as the producer is below its own."""
        return not self.producer.done_minimum()

    async def supervise_w1(self) -> None:
        """Keep w1 running; arm it with the next fault point while kills are due
        (or the producer is still below its minimum), else run it plain."""
        w1 = self.slots["w1"]
        r, p = self.result, self.plan
        while not self.stopping.is_set():
            due = [point for point in POINTS if r.kills[point] < p.kills_per_point]
            fault = point = None
            if due or self.busy():
                point = min(due or POINTS, key=lambda pt: (r.kills[pt], POINTS.index(pt)))
                n = self.rng.randint(*p.fault_hits)
                fault = f"{point}@{n}"
            self.say(f"w1: start armed with STREAMPROC_FAULT={fault}" if fault else "w1: start (plain)")
            await w1.start(fault=fault, wait=False)
            started = time.monotonic()
            while w1.running and not self.stopping.is_set():
                if fault and time.monotonic() - started > 180:
                    raise AssertionError(f"w1 armed with {fault} did not reach it in 180s:\n{w1.worker.log_text()[-3000:]}")
                await asyncio.sleep(0.2)
            if w1.running:  # the run is ending
                await self._stop(w1)
                break
            code = w1.returncode
            if code == -9 and w1.killed_by_us:
                pass  # the random kill, counted where it happened
            elif code == -9 and point is not None:
                r.kills[point] += 1
                self.say(f"w1: killed itself at {point} (hit {n}) after {time.monotonic() - started:.1f}s; {self._status()}")
            elif self._no_broker_at_start(w1):
                r.broker_down_exits += 1
                self.say(f"w1: exited with {code}: no broker to bootstrap from (it was restarting)")
            else:
                r.unexpected_exits.append(f"w1 ({fault or 'plain'}) exited {code}: {w1.worker.log_text()[-1500:]}")
                self.say(f"w1: exited with {code} (unexpected)")
            await asyncio.sleep(self.rng.uniform(0, 1))

    async def membership(self) -> None:
        """Start and stop w2 and w3 in the same group: four rebalances a cycle.
        A start that fails (a random kill landed on it) is retried."""
        r, p = self.result, self.plan
        steps = [("start", "w2"), ("start", "w3"), ("stop", "w3"), ("stop", "w2")]
        while not self.stopping.is_set():
            if r.rebalances >= 4 * p.rebalance_cycles and not self.busy():
                await self._pause(1)
                continue
            await self._pause(self.rng.uniform(*p.member_pause_s))
            for action, name in steps:
                slot = self.slots[name]
                while action == "start" and not self.stopping.is_set():
                    try:
                        await slot.start()
                    except AssertionError as exc:
                        if self._no_broker_at_start(slot):
                            r.broker_down_exits += 1
                        elif not slot.killed_by_us:  # not the random kill landing during the start
                            r.failed_starts.append(f"{name}: {exc}"[:2000])
                        self.say(f"{name}: did not start ({'SIGKILL' if slot.killed_by_us else str(exc)[:120]}); again")
                        await self._pause(2)
                        continue
                    r.rebalances += 1
                    self.say(f"{name}: joined the group; rebalances={r.rebalances}")
                    break
                if self.stopping.is_set():
                    return
                if action == "stop" and slot.running:
                    await self._stop(slot)
                    if not slot.killed_by_us:  # else the random kill got there first
                        r.rebalances += 1
                        self.say(f"{name}: left the group; rebalances={r.rebalances}")
                await self._pause(self.rng.uniform(*p.member_pause_s))

    async def services(self) -> None:
        """PostgreSQL restarts, broker restarts and random kills, in turns."""
        r, p = self.result, self.plan
        while not self.stopping.is_set():
            due = []
            if r.restarts["postgres"] < p.pg_restarts:
                due.append("pg")
            if r.restarts["broker"] < p.broker_restarts:
                due.append("broker")
            if r.kills["random"] < p.random_kills:
                due.append("kill")
            if not due and not self.busy():
                await self._pause(1)
                continue
            await self._pause(self.rng.uniform(*p.pause_s))
            if self.stopping.is_set():
                break
            action = self.rng.choice(due or ["pg", "broker", "kill"])
            if action == "pg":
                mode = "fast" if r.restarts["postgres"] % 2 == 0 else "immediate"
                took = await stack.arun("restart", "pg", mode)
                r.restarts["postgres"] += 1
                self.say(f"postgres: pg_ctl restart -m {mode} ({took:.1f}s); {self._status()}")
            elif action == "broker":
                await self._broker_fault()
            else:
                running = [s for s in self.slots.values() if s.running]
                if not running:
                    continue
                victim = self.rng.choice(running)
                await victim.kill()
                r.kills["random"] += 1
                self.say(f"{victim.name}: SIGKILL (random); {self._status()}")

    def _no_broker_at_start(self, slot: Slot) -> bool:
        """Did ``slot``'s last run die before it was ready, on a Kafka connection
        error, while a broker was down (or had just come back)?"""
        recent = self.broker_down or time.monotonic() - self.broker_back_at < 20
        text = slot.worker.log_text()
        return (
            recent and "[^Worker]: Ready" not in text
            and any(e in text for e in ("Unable to bootstrap", "NodeNotReadyError", "KafkaConnectionError"))
        )

    async def _broker_fault(self) -> None:
        r = self.result
        how = "term" if r.restarts["broker"] % 2 == 0 else "kill"
        if not self.plan.cluster:
            self.broker_down = True
            try:
                took = await stack.arun("restart", "kafka", how)
            finally:
                self.broker_down = False
                self.broker_back_at = time.monotonic()
            r.restarts["broker"] += 1
            what = "stopped (SIGTERM)" if how == "term" else "SIGKILLed"
            self.say(f"kafka: broker {what} and restarted ({took:.1f}s); {self._status()}")
            return
        node = 1 + r.restarts["broker"] % 3
        self.broker_down = True
        await stack.arun("node", "stop" if how == "term" else "kill", str(node))
        down = self.rng.uniform(*self.plan.node_down_s)
        self.say(f"cluster: node {node} {'stopped' if how == 'term' else 'SIGKILLed'}; up again in {down:.0f}s")
        await asyncio.sleep(down)  # not cut short: the node always comes back
        try:
            took = await stack.arun("node", "start", str(node))
        finally:
            self.broker_down = False
            self.broker_back_at = time.monotonic()
        r.restarts["broker"] += 1
        self.say(f"cluster: node {node} back ({took:.1f}s); {self._status()}")

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _stop(self, slot: Slot) -> None:
        try:
            await slot.stop()
        except AssertionError as exc:  # it did not stop within 60 s of SIGTERM (then killed)
            self.result.stop_timeouts.append(f"{slot.name}: {exc}"[:3000])
            self.say(f"{slot.name}: did not stop within 60s of SIGTERM; killed")

    # -- the run ------------------------------------------------------------------

    async def execute(self) -> Result:
        r, p = self.result, self.plan
        self.say(f"plan {p}; seed {self.seed}; topics {self.prefix}*, schema {self.schema}, logs in {self.tmp}")
        await self.create_topics()
        self.producer.keep_going = lambda: not self.minimums_met()
        producing = asyncio.create_task(self.producer.run())
        loops = [
            asyncio.create_task(self.supervise_w1()),
            asyncio.create_task(self.membership()),
            asyncio.create_task(self.services()),
        ]
        try:
            shown = time.monotonic()
            while not (producing.done() or any(t.done() for t in loops)):
                await asyncio.sleep(1)
                if time.monotonic() - shown >= 15:
                    shown = time.monotonic()
                    self.say(self._status())
            if producing.done():
                producing.result()  # raise what the producer raised
            for task in loops:
                if task.done():
                    task.result()  # a loop must not end before it is told to
        finally:
            r.chaos_s = time.monotonic() - self.t0
            self.producer.stopped.set()
            self.stopping.set()
            results = await asyncio.gather(producing, *loops, return_exceptions=True)
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            raise errors[0]
        stats = self.producer.stats
        r.producer, r.sent, r.distinct_sent, r.duplicates_injected = stats, stats.sent, stats.distinct, stats.duplicates_injected
        self.say(f"faults over: {self._status()}; draining with w1 alone")
        await self._drain()
        self._collect_worker_stats()
        self.say("checking the database and the topics")
        r.report = await check(self.bootstrap, self.ep.pg_dsn, self.schema, self.prefix, stats.acked_ids)
        r.total_s = time.monotonic() - self.t0
        self.say(f"figures: {json.dumps(r.summary())}")
        return r

    async def cleanup(self) -> None:
        """Delete the run's topics and schema (after a clean run; a failed one keeps them)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            await admin.delete_topics([f"{self.prefix}{t}" for t in TOPICS] + [f"{self.tag}-__assignor-__leader"])
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.ep.pg_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()

    async def _drain(self) -> None:
        for slot in self.slots.values():
            if slot.running:
                await self._stop(slot)
        w1 = self.slots["w1"]
        await w1.start()
        r = self.result
        t0 = time.monotonic()
        quiet = 0
        last = None
        while time.monotonic() - t0 < self.plan.drain_timeout_s:
            state = await self._pipeline_state()
            if state == last and state["outbox"] == 0 and state["lag"] == 0:
                quiet += 1
                if quiet >= 3:
                    r.drained_in_s = round(time.monotonic() - t0, 1)
                    break
            else:
                quiet = 0
            last = state
            await asyncio.sleep(1)
        self.say(f"drain: {last} after {time.monotonic() - t0:.1f}s" + ("" if r.drained_in_s else " (timed out)"))
        await self._stop(w1)

    async def _pipeline_state(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.ep.pg_dsn)
        try:
            outbox = await conn.fetchval(f'SELECT count(*) FROM "{self.schema}".outbox')
            inbox = await conn.fetchval(f'SELECT count(*) FROM "{self.schema}".inbox')
        finally:
            await conn.close()
        return {"outbox": outbox, "inbox": inbox, "lag": await self._lag()}

    async def _lag(self) -> int:
        """Records of the consumed topics past the group's committed offsets."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.tag)
            tps = [TopicPartition(f"{self.prefix}{t}", i) for t in CONSUMED for i in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
            return sum(max(0, ends[tp] - max(0, committed[tp].offset if tp in committed else 0)) for tp in tps)
        finally:
            await consumer.stop()
            await admin.close()

    def _collect_worker_stats(self) -> None:
        """Sum the workers' own counters over every run (the cache figure comes from here)."""
        totals: dict[str, int] = {"cache_hits": 0, "duplicates": 0, "handled": 0, "events_in": 0}
        relay = {"published": 0, "failures": 0}
        runs = 0
        for slot in self.slots.values():
            for stats in slot.stats_per_run():
                runs += 1
                for name, counters in stats.items():
                    if name == "relay":
                        for k in relay:
                            relay[k] += counters.get(k, 0)
                    else:
                        for k in totals:
                            totals[k] += counters.get(k, 0)
        self.result.worker_stats = {**totals, "relay": relay, "runs_with_stats": runs}
        self.result.worker_runs = sum(len(slot.run_offsets) for slot in self.slots.values())
