#!/usr/bin/env python3
"""site.yml (preflight + node setup) on fresh lab nodes: the first run and the no-op re-run on 1, 2
and 4 nodes, and the no-op re-run with Ansible's stock settings beside the project's tuned
ansible.cfg (pipelining, facts limited to what the roles use, forks >= node count).

Prints a table and writes JSON (benchmarks/results/). The stock and tuned re-runs alternate on the
same nodes in one run, so their ratio is measured side by side on one machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import results_io
from rich.console import Console
from rich.table import Table

from npufleet.api import run_playbook
from npufleet.lab import lifecycle

LAB = "npufleet-bench-setup"
STOCK = {
    "ANSIBLE_CONFIG": str(Path(__file__).with_name("stock.cfg")),
    "ANSIBLE_PIPELINING": "False",
}


def site(inventory: Path, stock: bool = False) -> tuple[float, int]:
    start = time.perf_counter()
    result = run_playbook(
        "site.yml",
        inventory,
        extravars={"npufleet_gather_all_facts": True} if stock else None,
        env=STOCK if stock else None,
    )
    seconds = time.perf_counter() - start
    if not result.succeeded:
        raise SystemExit(f"site.yml failed during the benchmark: {result.first_failure()}")
    return seconds, sum(host.changed for host in result.hosts.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=2, help="no-op re-runs of each kind (median reported)")
    parser.add_argument("--output", type=Path, default=results_io.RESULTS)
    args = parser.parse_args()

    inventory = Path("/tmp") / f"{LAB}-hosts.yml"
    rows = []
    for count in args.nodes:
        lifecycle.down(LAB, inventory)
        lifecycle.up(LAB, nodes=count, inventory=inventory, flavour="bare")
        first, first_changed = site(inventory)
        tuned, stock = [], []
        for _ in range(args.repeat):
            seconds, changed = site(inventory)
            assert changed == 0, f"re-run changed {changed} things"
            tuned.append(seconds)
            seconds, changed = site(inventory, stock=True)
            assert changed == 0, f"stock re-run changed {changed} things"
            stock.append(seconds)
        rows.append(
            {
                "nodes": count,
                "first_run_s": first,
                "first_run_changed": first_changed,
                "noop_tuned_s": statistics.median(tuned),
                "noop_stock_s": statistics.median(stock),
                "stock_over_tuned": statistics.median(stock) / statistics.median(tuned),
                "tuned_all_s": tuned,
                "stock_all_s": stock,
            }
        )
        lifecycle.down(LAB, inventory)

    machine = results_io.machine()
    table = Table(
        "nodes",
        "first run s",
        "changed",
        "no-op re-run s (tuned)",
        "no-op re-run s (stock)",
        "stock / tuned",
        title=f"site.yml on lab nodes, {machine['host']} ({machine['cpus']} CPUs)",
    )
    for row in rows:
        table.add_row(
            str(row["nodes"]),
            f"{row['first_run_s']:.1f}",
            str(row["first_run_changed"]),
            f"{row['noop_tuned_s']:.1f}",
            f"{row['noop_stock_s']:.1f}",
            f"{row['stock_over_tuned']:.2f}",
        )
    Console().print(table)
    print(f"wrote {results_io.write('site_setup', machine, rows, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
