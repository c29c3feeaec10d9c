#!/usr/bin/env python3
"""site.yml on fresh lab nodes: the first run and the no-op re-run on 1, 2 and 4 nodes, each re-run
also as a multiple of `ansible -m ping` on the same nodes, with the controller's CPU seconds per node
and how busy the whole machine's CPUs were (the nodes share them with the controller).

The no-op re-run is measured three ways, alternating on the same nodes in one run, so that their
ratios hold on a noisy machine:
- stock: Ansible's own settings (benchmarks/stock.cfg: no pipelining, every fact gathered);
- tuned: the project's ansible.cfg (pipelining, facts limited to what the roles use, forks);
- tuned+mitogen: the same with the strategy mitogen_linear (Mitogen for Ansible, `--mitogen`).

The lab nodes are bare (site.yml installs Docker) with the lab registry, so the run covers preflight,
node setup, the image and the NPU container; `--training` adds the training and serving stages.
Prints a table and writes JSON (benchmarks/results/), with the git revision measured.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import results_io
from rich.console import Console
from rich.table import Table

from npufleet.api import run_playbook
from npufleet.collection import project_root
from npufleet.lab import lifecycle

LAB = "npufleet-bench-setup"
STOCK = {
    "ANSIBLE_CONFIG": str(Path(__file__).with_name("stock.cfg")),
    "ANSIBLE_PIPELINING": "False",
}
MODES = ("stock", "tuned", "tuned+mitogen")
# Mitogen's strategy from the installed package, not the project's shim, so that the same script
# measures revisions from before the shim.
MITOGEN = {"ANSIBLE_STRATEGY": "mitogen_linear"}


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: ansible-playbook and its workers."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu() -> tuple[int, int]:
    """Busy and total jiffies of the whole machine (/proc/stat): the lab's nodes share its CPUs with
    the controller, so a run that keeps them all busy is bound by this machine, not by the nodes."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def site(inventory: Path, mode: str = "tuned", profile: bool = False) -> dict:
    env = STOCK if mode == "stock" else mitogen_env() if mode == "tuned+mitogen" else {}
    if profile:
        env = env | {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_roles,ansible.posix.profile_tasks",
                     "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "25"}  # fmt: skip
    cpu, busy, start = children_cpu(), machine_cpu(), time.perf_counter()
    result = run_playbook(
        "site.yml",
        inventory,
        extravars={"npufleet_gather_all_facts": True} if mode == "stock" else None,
        env=env or None,
    )
    seconds = time.perf_counter() - start
    busy_after = machine_cpu()
    if not result.succeeded:
        raise SystemExit(f"site.yml ({mode}) failed during the benchmark: {result.first_failure()}")
    stdout = (Path(result.artifact_dir) / "stdout").read_text(encoding="utf-8", errors="replace")
    return {
        "profile": stdout[stdout.index("ROLES RECAP") :] if profile and "ROLES RECAP" in stdout else None,
        "seconds": seconds,
        "cpu_s": children_cpu() - cpu,
        "machine_busy_pct": 100.0 * (busy_after[0] - busy[0]) / max(1, busy_after[1] - busy[1]),
        "changed": sum(host.changed for host in result.hosts.values()),
        "tasks": sum(host.ok + host.changed + host.skipped for host in result.hosts.values()),
    }


def mitogen_env() -> dict:
    import ansible_mitogen  # noqa: PLC0415 (only this mode needs it)

    return MITOGEN | {
        "ANSIBLE_STRATEGY_PLUGINS": str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy")
    }


def short_connection_name(inventory: Path) -> None:
    """Mitogen takes over only connections named by their short names; labs written before the lab
    inventory used `docker` name the FQCN."""
    text = inventory.read_text()
    inventory.write_text(
        text.replace("ansible_connection: community.docker.docker", "ansible_connection: docker")
    )


def ping(inventory: Path) -> float:
    """Wall seconds of `ansible all -m ansible.builtin.ping`, the controller's start included, as
    site.yml's are."""
    ansible = Path(sys.executable).with_name("ansible")
    start = time.perf_counter()
    subprocess.run(
        [str(ansible), "all", "-i", str(inventory), "-m", "ansible.builtin.ping", "-o"],
        check=True,
        capture_output=True,
        cwd=project_root(),
        env={
            "ANSIBLE_CONFIG": str(project_root() / "ansible.cfg"),
            "PATH": str(ansible.parent) + ":/usr/bin:/bin",
        },
    )
    return time.perf_counter() - start


def revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], check=True, capture_output=True, text=True, cwd=project_root()
        ).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        " (with uncommitted changes)" if git("status", "--porcelain") else ""
    )


def measure(count: int, repeat: int, training: bool) -> dict:
    inventory = Path("/tmp") / f"{LAB}-hosts.yml"
    lifecycle.down(LAB, inventory)
    lifecycle.up(LAB, nodes=count, inventory=inventory, flavour="bare", with_training=training)
    short_connection_name(inventory)
    first = site(inventory)
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    pings = []
    for _ in range(repeat):
        pings.append(ping(inventory))
        for mode in MODES:
            run = site(inventory, mode)
            if run["changed"]:
                raise SystemExit(
                    f"the no-op re-run ({mode}) on {count} node(s) changed {run['changed']} things"
                )
            runs[mode].append(run)
    # One more tuned re-run with Ansible's profile callbacks, not counted in the timings above.
    profile = site(inventory, "tuned", profile=True)["profile"]
    lifecycle.down(LAB, inventory)
    ping_s = statistics.median(pings)
    row = {
        "nodes": count,
        "first_run_s": first["seconds"],
        "first_run_changed": first["changed"],
        "first_run_cpu_s_per_node": first["cpu_s"] / count,
        "ping_s": ping_s,
        "pings_all_s": pings,
        "tuned_profile": profile,
    }
    for mode in MODES:
        seconds = statistics.median(run["seconds"] for run in runs[mode])
        row[mode] = {
            "noop_s": seconds,
            "noop_in_pings": seconds / ping_s,
            "cpu_s_per_node": statistics.median(run["cpu_s"] for run in runs[mode]) / count,
            "machine_busy_pct": statistics.median(run["machine_busy_pct"] for run in runs[mode]),
            "tasks": runs[mode][0]["tasks"],
            "all_s": [run["seconds"] for run in runs[mode]],
        }
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=2, help="no-op re-runs of each kind (median reported)")
    parser.add_argument("--training", action="store_true", help="also the training and serving stages")
    parser.add_argument("--output", type=Path, default=results_io.RESULTS)
    args = parser.parse_args()

    rows = [measure(count, args.repeat, args.training) for count in args.nodes]
    machine = results_io.machine() | {"revision": revision(), "training": args.training}
    table = Table(
        "nodes",
        "first run s",
        "changed",
        "ping s",
        *(f"no-op {mode} s (pings)" for mode in MODES),
        "CPU s/node tuned",
        "CPU s/node mitogen",
        "machine busy % tuned",
        title=f"site.yml on bare lab nodes, {machine['host']} ({machine['cpus']} CPUs), "
        f"revision {machine['revision']}",
    )
    for row in rows:
        table.add_row(
            str(row["nodes"]),
            f"{row['first_run_s']:.1f}",
            str(row["first_run_changed"]),
            f"{row['ping_s']:.2f}",
            *(f"{row[mode]['noop_s']:.1f} ({row[mode]['noop_in_pings']:.0f})" for mode in MODES),
            f"{row['tuned']['cpu_s_per_node']:.1f}",
            f"{row['tuned+mitogen']['cpu_s_per_node']:.1f}",
            f"{row['tuned']['machine_busy_pct']:.0f}",
        )
    print(f"profile of the tuned no-op re-run on {rows[-1]['nodes']} node(s):\n{rows[-1]['tuned_profile']}")
    Console(width=160).print(table)
    if len(rows) > 1:
        base = rows[0]
        for row in rows[1:]:
            scaling = {mode: row[mode]["noop_s"] / base[mode]["noop_s"] for mode in MODES}
            row["noop_over_first_count"] = scaling
            Console().print(
                f"{row['nodes']} nodes / {base['nodes']}: "
                + ", ".join(f"{mode} {value:.2f}x" for mode, value in scaling.items()),
                highlight=False,
            )
    print(f"wrote {results_io.write('site_setup', machine, rows, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
