"""``make bench``: run every benchmark in one go and write bench/results/bench.json.

Throughput figures depend on the machine and are reported side by side as
ratios; the counters (statements per batch, transactions) are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

from bench import pipeline_bench, processor_bench
from streamproc import Settings

RESULTS = Path(__file__).parent / "results" / "bench.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--chain-orders", type=int, default=10_000)
    args = parser.parse_args()
    settings = Settings.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="streamproc-bench-"))
    started = time.time()
    results = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "processor": asyncio.run(processor_bench.run(settings.database_url, tmp, args.messages)),
        "pipeline": asyncio.run(pipeline_bench.run(tmp, args.messages, args.chain_orders)),
    }
    results["seconds"] = round(time.time() - started)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
