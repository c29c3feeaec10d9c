#!/usr/bin/env python3
"""Image delivery to 1, 2 and 4 lab nodes: every node pulling from the registry vs fan-out (one
pull, then node to node), with an image of at least 1 GiB. Bytes served by the registry come from
its access log; wall time is the image play's.

The lab registry sits on the same bridge as the nodes, so by default it is measured twice: with no
cap, and with its sending capped (--registry-mbit, default 800 and 400 Mbit/s) as a remote registry's
bandwidth caps real pulls, while node-to-node traffic stays uncapped as inside a cluster.

Prints a table and writes JSON (benchmarks/results/). Both modes run on the same nodes in one run,
alternating, so their ratio is measured side by side on one machine.
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
from npufleet.lab import lifecycle, registry

LAB = "npufleet-bench-image"
REPOSITORY = "npufleet/workload-big"


def big_image(client: docker.DockerClient, size_mib: int) -> str:
    # Random bytes do not compress: the registry serves about as much as the layer holds.
    extra = f"RUN head -c {size_mib}M /dev/urandom > /opt/weights.bin\n"
    return registry.build_workload(client, extra_dockerfile=extra)


def forget(names: list[str], ref: str) -> None:
    client = docker.from_env()
    for name in names:
        client.containers.get(name).exec_run(["sh", "-c", f"docker rmi -f {ref} >/dev/null 2>&1; true"])


def deliver(inventory: Path, names: list[str], image: dict, fanout: bool, lab_registry) -> dict:
    reg = docker.from_env().containers.get(lab_registry.name)
    forget(names, f"{image['image_name']}:{image['image_tag']}")
    since = float(reg.exec_run(["date", "+%s.%N"]).output.decode())
    start = time.perf_counter()
    result = run_playbook(
        "image.yml",
        inventory,
        extravars=image | {"image_fanout": fanout, "image_min_free_gib": 3},
        limit=",".join(names),
    )
    seconds = time.perf_counter() - start
    if not result.succeeded:
        raise SystemExit(f"image.yml failed during the benchmark: {result.first_failure()}")
    time.sleep(1)  # the journal may lag the last response
    served = registry.bytes_served(registry.access_log(reg, since))
    return {"seconds": seconds, "registry_bytes": served["blob_bytes"] + served["manifest_bytes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the random layer (default 1024)")
    parser.add_argument(
        "--registry-mbit", type=int, nargs="+", default=[0, 800, 400], help="registry send caps, 0 = none"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each mode per node count (median)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--output", type=Path, default=results_io.RESULTS)
    args = parser.parse_args()

    inventory = Path("/tmp") / f"{LAB}-hosts.yml"
    client = docker.from_env()
    lifecycle.up(LAB, nodes=max(args.nodes), inventory=inventory, flavour="full")
    lab_registry = registry.ensure(client, LAB, network=LAB)  # the one 'up' started
    local = big_image(client, args.size_mib)
    version, digest = registry.push(client, lab_registry, local, REPOSITORY)
    image = {
        "image_name": f"{lab_registry.open_endpoint}/{REPOSITORY}",
        "image_tag": version,
        "image_digest": digest,
    }
    rows = []
    reg = client.containers.get(lab_registry.name)
    try:
        for cap in args.registry_mbit:
            registry.limit_egress(reg, cap)
            for count in args.nodes:
                names = [lifecycle.node_name(LAB, index) for index in range(1, count + 1)]
                runs: dict[str, list[dict]] = {"every node pulls": [], "fan-out": []}
                for _ in range(args.repeat):
                    runs["every node pulls"].append(deliver(inventory, names, image, False, lab_registry))
                    runs["fan-out"].append(deliver(inventory, names, image, True, lab_registry))
                for mode, found in runs.items():
                    rows.append(
                        {
                            "registry_mbit": cap,
                            "nodes": count,
                            "mode": mode,
                            "seconds": statistics.median(run["seconds"] for run in found),
                            "registry_bytes": statistics.median(run["registry_bytes"] for run in found),
                        }
                    )
    finally:
        if not args.keep:
            lifecycle.down(LAB, inventory)
    one_copy = min(row["registry_bytes"] for row in rows if row["nodes"] == min(args.nodes))
    for row in rows:
        row["registry_copies"] = row["registry_bytes"] / one_copy
    table = Table(
        "registry cap",
        "nodes", "mode", "wall s", "registry GiB", "copies of the image", "time vs every node pulls",
        title=f"image delivery, {args.size_mib} MiB random layer (machine {results_io.machine()['host']})",
    )  # fmt: skip
    by_key = {(row["registry_mbit"], row["nodes"], row["mode"]): row for row in rows}
    for row in rows:
        base = by_key[(row["registry_mbit"], row["nodes"], "every node pulls")]["seconds"]
        table.add_row(
            f"{row['registry_mbit']} Mbit/s" if row["registry_mbit"] else "none",
            str(row["nodes"]),
            row["mode"],
            f"{row['seconds']:.1f}",
            f"{row['registry_bytes'] / 2**30:.2f}",
            f"{row['registry_copies']:.2f}",
            f"{row['seconds'] / base:.2f}x",
        )
    Console().print(table)
    path = results_io.write(
        "image_fanout", results_io.machine() | {"image_mib": args.size_mib}, rows, args.output
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
