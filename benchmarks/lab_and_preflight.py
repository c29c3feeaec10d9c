#!/usr/bin/env python3
"""How long the lab and the preflight play take: `lab up` of 2 nodes cold (image built) and warm
(image cached), then the preflight play on 2 and on 4 nodes.

Prints a table and writes the figures as JSON (benchmarks/results/ by default). Each figure is the
median of --repeat runs; the machine it ran on is recorded beside them, because these machines are
noisy and only figures from one run on one machine compare.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import docker
import results_io
from rich.console import Console
from rich.table import Table

from npufleet.api import run_playbook
from npufleet.lab import lifecycle, node_base_image

LAB = "npufleet-bench"


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def preflight(inventory: Path) -> None:
    result = run_playbook("preflight.yml", inventory)
    if not result.succeeded:
        raise SystemExit(f"preflight failed during the benchmark: {result.first_failure()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per warm figure (median reported)")
    parser.add_argument("--skip-cold", action="store_true", help="keep the cached image; no cold figure")
    parser.add_argument("--output", type=Path, default=results_io.RESULTS)
    args = parser.parse_args()

    client = docker.from_env()
    inventory = Path("/tmp") / f"{LAB}-hosts.yml"
    lifecycle.down(LAB, inventory)
    rows: list[dict] = []

    if not args.skip_cold:
        tag = node_base_image.Recipe(flavour="bare").tag
        if node_base_image.image_exists(client, tag):
            client.images.remove(tag)
        seconds = timed(lambda: lifecycle.up(LAB, nodes=2, inventory=inventory))
        rows.append({"what": "lab up, 2 nodes, cold (image built)", "runs": 1, "median_s": seconds})
        lifecycle.down(LAB, inventory)

    warm = []
    for _ in range(args.repeat):
        warm.append(timed(lambda: lifecycle.up(LAB, nodes=2, inventory=inventory)))
        lifecycle.down(LAB, inventory)
    rows.append(
        {
            "what": "lab up, 2 nodes, warm (image cached)",
            "runs": len(warm),
            "median_s": statistics.median(warm),
        }
    )

    for count in (2, 4):
        lifecycle.up(LAB, nodes=count, inventory=inventory)
        runs = [timed(lambda: preflight(inventory)) for _ in range(args.repeat)]
        rows.append(
            {
                "what": f"preflight play, {count} nodes",
                "runs": len(runs),
                "median_s": statistics.median(runs),
                "all_s": runs,
            }
        )
        lifecycle.down(LAB, inventory)

    machine = results_io.machine() | {"docker": client.version().get("Version")}
    table = Table("measurement", "runs", "median s", title=f"on {machine['host']} ({machine['cpus']} CPUs)")
    for row in rows:
        table.add_row(row["what"], str(row["runs"]), f"{row['median_s']:.1f}")
    Console().print(table)
    print(f"wrote {results_io.write('lab_and_preflight', machine, rows, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
