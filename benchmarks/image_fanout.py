#!/usr/bin/env python3
"""Image delivery to 1, 2 and 4 lab nodes: every node pulling from the registry vs the two fan-out
methods (relay: every node pulls at once through the seed, which fetches each blob once; stream: the
seed pulls, then docker save into docker load), with an image of at least 1 GiB. Bytes served by the
registry come from its access log; wall time is the image play's.

Before the runs it times the steps fan-out is made of, on nodes whose engines do not hold the image:
one node pulling alone, two nodes pulling at once, and one docker save streamed into another node's
docker load. The stream method costs about the first plus the last; the relay about the first.

The lab registry sits on the same bridge as the nodes, so by default it is measured twice: with no
cap, and with its sending capped (--registry-mbit, default 800 and 400 Mbit/s) as a remote registry's
bandwidth caps real pulls, while node-to-node traffic stays uncapped as inside a cluster.

Prints a table and writes JSON (benchmarks/results/). Both modes run on the same nodes in one run,
alternating, so their ratio is measured side by side on one machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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
    """Remove the image from the nodes' engines under every name it has (the relay's loopback name too)."""
    client = docker.from_env()
    for name in names:
        script = f"id=$(docker image inspect --format '{{{{.Id}}}}' {ref} 2>/dev/null) && docker rmi -f $id"
        client.containers.get(name).exec_run(["sh", "-c", f"{script} >/dev/null 2>&1; true"])


MODES = {"every node pulls": None, "fan-out relay": "relay", "fan-out stream": "stream"}


def steps(names: list[str], ref: str) -> dict:
    """Seconds of the steps fan-out is made of, each on engines that lack the image."""
    client = docker.from_env()
    nodes = [client.containers.get(name) for name in names[:2]]

    def timed(*commands: list[str]) -> float:
        start = time.perf_counter()
        running = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for command in commands]
        if any(process.wait() for process in running):
            raise SystemExit(f"a step of the benchmark failed: {commands}")
        return time.perf_counter() - start

    found = {}
    forget(names, ref)
    found["one node pulls alone"] = timed(["docker", "exec", nodes[0].name, "docker", "pull", "-q", ref])
    forget(names, ref)
    found["two nodes pull at once"] = timed(
        *(["docker", "exec", node.name, "docker", "pull", "-q", ref] for node in nodes)
    )
    forget(names[1:], ref)
    save = f"docker exec {nodes[0].name} docker save {ref} | docker exec -i {nodes[1].name} docker load -q"
    found["docker save | docker load, node to node"] = timed(["sh", "-c", save])
    forget(names, ref)
    return found


def deliver(inventory: Path, names: list[str], image: dict, method: str | None, lab_registry) -> dict:
    reg = docker.from_env().containers.get(lab_registry.name)
    forget(names, f"{image['image_name']}:{image['image_tag']}")
    since = float(reg.exec_run(["date", "+%s.%N"]).output.decode())
    start = time.perf_counter()
    result = run_playbook(
        "image.yml",
        inventory,
        extravars=image
        | {"image_fanout": bool(method), "image_fanout_method": method or "relay", "image_min_free_gib": 3},
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
        all_names = [lifecycle.node_name(LAB, index) for index in range(1, max(args.nodes) + 1)]
        why = steps(all_names, f"{image['image_name']}@{image['image_digest']}")
        for cap in args.registry_mbit:
            registry.limit_egress(reg, cap)
            for count in args.nodes:
                names = [lifecycle.node_name(LAB, index) for index in range(1, count + 1)]
                runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
                for _ in range(args.repeat):
                    for mode, method in MODES.items():
                        runs[mode].append(deliver(inventory, names, image, method, lab_registry))
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
    steps_table = Table("step (no registry cap)", "seconds", title="what fan-out is made of")
    for step, seconds in why.items():
        steps_table.add_row(step, f"{seconds:.1f}")
    Console().print(steps_table)
    machine = results_io.machine() | {"image_mib": args.size_mib, "steps_s": why}
    path = results_io.write("image_fanout", machine, rows, args.output)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
