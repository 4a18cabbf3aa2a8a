"""Fault injection against the real broker and database (the chaos stack of
stack/chaos.sh, which these tests stop and restart; never the dev stack).

- ``test_short_fault_suite`` runs inside ``make test``: a few thousand orders,
  a kill at each fault point, a random kill, a PostgreSQL restart, a broker
  restart and a rebalance cycle.
- ``test_long_fault_suite`` is ``make chaos``: ≥ 100,000 orders and ≥ 10 worker
  kills on the single broker, then a run on the three-node cluster (RF 3,
  min ISR 2) while nodes are stopped and restarted one at a time. It prints
  the checker's figures and writes bench/results/chaos.json.

``CHAOS_SEED=<n>`` replays a run's random choices (each run prints its seed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from streamproc.faults import POINTS
from tests.chaos import stack
from tests.chaos.harness import ChaosRun, Plan, Result

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "chaos.json"
SEED = int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else None

SHORT = Plan(
    name="short", cluster=False, distinct=3000, rate=40, kills_per_point=1, random_kills=1,
    pg_restarts=1, broker_restarts=1, rebalance_cycles=1, pause_s=(4, 10), fault_hits=(2, 12),
    drain_timeout_s=180, seed=SEED,
)
LONG_SINGLE = Plan(
    name="single", cluster=False, distinct=100_000, rate=600, kills_per_point=3, random_kills=3,
    pg_restarts=4, broker_restarts=3, rebalance_cycles=3, pause_s=(5, 15), drain_timeout_s=600, seed=SEED,
)
LONG_CLUSTER = Plan(
    name="cluster3", cluster=True, distinct=30_000, rate=400, kills_per_point=1, random_kills=1,
    pg_restarts=1, broker_restarts=3, rebalance_cycles=1, pause_s=(4, 10), drain_timeout_s=600, seed=SEED,
)


def assert_clean(result: Result) -> None:
    """The checker's verdict, then that every planned fault really happened."""
    report = result.report
    assert report is not None
    where = f"(run {result.plan.name}, seed {result.seed}, topics {result.tag}.*, schema {result.schema})"
    assert report.ok, f"the checker found problems {where}:\n{report.explain()}"
    assert report.lost == 0 and report.double_effects == 0 and report.dead_letters == 0
    assert report.distinct >= result.plan.distinct and report.distinct == result.distinct_sent, where
    plan = result.plan
    for point in POINTS:
        assert result.kills[point] >= plan.kills_per_point, (point, result.kills)
    assert result.kills["random"] >= plan.random_kills, result.kills
    assert result.restarts["postgres"] >= plan.pg_restarts, result.restarts
    assert result.restarts["broker"] >= plan.broker_restarts, result.restarts
    assert result.rebalances >= 4 * plan.rebalance_cycles, result.rebalances
    assert result.duplicates_injected > 0 and report.duplicates_by_topic["orders"] >= result.duplicates_injected
    assert result.drained_in_s is not None, f"the pipeline did not drain {where}"
    assert not result.unexpected_exits, f"workers exited unexpectedly {where}:\n" + "\n".join(result.unexpected_exits)
    assert not result.failed_starts, f"workers failed to start {where}:\n" + "\n".join(result.failed_starts)
    assert not result.stop_timeouts, f"workers ignored SIGTERM for 60s {where}:\n" + "\n".join(result.stop_timeouts)


def combined(results: list[Result]) -> dict[str, Any]:
    """bench/results/chaos.json: totals over the runs, then each run's own figures."""
    runs = {r.plan.name: r.summary() for r in results}
    total: dict[str, Any] = {
        "sent": sum(s["sent"] for s in runs.values()),
        "distinct": sum(s["distinct"] for s in runs.values()),
        "kills": {k: sum(s["kills"][k] for s in runs.values()) for k in (*POINTS, "random")},
        "restarts": {k: sum(s["restarts"][k] for s in runs.values()) for k in ("postgres", "broker")},
        "rebalances": sum(s["rebalances"] for s in runs.values()),
        "lost": sum(s["lost"] for s in runs.values()),
        "double_effects": sum(s["double_effects"] for s in runs.values()),
        "duplicates_absorbed": sum(s["duplicates_absorbed"] for s in runs.values()),
        "dead_letters": sum(s["dead_letters"] for s in runs.values()),
        "cache_hits": sum(s["cache_hits"] for s in runs.values()),
    }
    total["kills_total"] = sum(total["kills"].values())
    total["runs"] = runs
    total["notes"] = {
        "kills": "SIGKILLs of workers: at each fault point (STREAMPROC_FAULT) and at random",
        "restarts.broker": "single broker: restarts (SIGTERM or SIGKILL); cluster3: one node stopped or killed, then started",
        "rebalances": "workers w2/w3 joining or leaving the consumer group on purpose (kills not counted)",
        "duplicates_absorbed": "copies on orders/payments/shipments beyond one per message-id (injected + republished)",
        "cache_hits": "from the workers' own stats lines; a lower bound (a killed worker's last 30 s are not logged)",
        "everything else": "from the database and the topics only",
    }
    return total


@pytest.mark.timeout(480)
async def test_short_fault_suite(tmp_path: Path) -> None:
    endpoints = await stack.require("pg", "kafka")
    with stack.exclusive():
        run = ChaosRun(SHORT, endpoints, tmp_path)
        result = await run.execute()
    print(json.dumps(result.summary(), indent=1))
    assert_clean(result)
    await run.cleanup()


@pytest.mark.chaos
@pytest.mark.timeout(7200)
async def test_long_fault_suite(tmp_path: Path) -> None:
    endpoints = await stack.require("pg", "kafka", "cluster")
    runs, results = [], []
    with stack.exclusive():
        for plan in (LONG_SINGLE, LONG_CLUSTER):
            runs.append(ChaosRun(plan, endpoints, tmp_path))
            results.append(await runs[-1].execute())
    figures = combined(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print("\nchaos figures (bench/results/chaos.json):\n" + json.dumps(figures, indent=2))
    assert figures["sent"] >= 100_000 and figures["kills_total"] >= 10
    for result in results:
        assert_clean(result)
    for run in runs:
        await run.cleanup()
