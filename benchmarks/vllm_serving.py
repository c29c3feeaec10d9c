#!/usr/bin/env python3
"""What vLLM's CPU build costs in the lab: the inference image's build time and size, and the served
model's start-up time (launch to /health answering) and memory on a lab node.

The build is timed from a missing image (the wheelhouse cached: downloads are not the build); the
start-up by restarting the serve stage on a lab that `npufleet up` served (the default lab
inventory), --repeat times, reading llm_launch's own wait from each run. Prints a table and writes
the figures as JSON (benchmarks/results/ by default) with the machine they were taken on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import docker
import results_io
import yaml
from rich.console import Console
from rich.table import Table

from npufleet.api import run_playbook
from npufleet.collection import default_inventory
from npufleet.lab import inference_image, workload_image


def build_figures(client: docker.DockerClient) -> list[dict]:
    inference_image.wheelhouse()  # a download, not part of the build
    tag = inference_image.build_image(client)
    client.images.remove(tag, force=True)
    start = time.perf_counter()
    tag = inference_image.build_image(client)
    seconds = time.perf_counter() - start
    size = client.images.get(tag).attrs["Size"]
    archive = workload_image.archive(client, tag)
    return [
        {"what": "inference image build (offline, wheels cached)", "value": seconds, "unit": "s"},
        {"what": "inference image size", "value": size / 2**30, "unit": "GiB"},
        {"what": "inference image archive", "value": archive.stat().st_size / 2**30, "unit": "GiB"},
    ]


def start_up_figures(inventory: Path, repeat: int) -> list[dict]:
    settings = yaml.safe_load(inventory.read_text())["all"]["vars"]
    node = next(iter(yaml.safe_load(inventory.read_text())["all"]["children"]["npu_nodes"]["hosts"]))
    waits = []
    for _ in range(repeat):
        result = run_playbook("serve.yml", inventory, limit=node, extravars={"serve_restart": True})
        if not result.succeeded:
            raise SystemExit(f"serving failed during the benchmark: {result.first_failure()}")
        launches = [item.result for item in result.module_results("llm_launch")]
        waits.append(next(launch["elapsed"] for launch in launches if launch.get("status") == "ready"))
    container = docker.from_env().containers.get(node)
    name = settings["npu_inference_container_name"]
    stats = container.exec_run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", name])
    used = stats.output.decode().split("/")[0].strip()
    return [
        {"what": f"vLLM start-up, launch to /health ({node})", "value": statistics.median(waits), "unit": "s",
         "runs": waits},
        {"what": f"vLLM memory, {name} container (server, engine, worker, 1 GiB KV cache)", "value": used,
         "unit": ""},
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--inventory", type=Path, default=default_inventory(), help="a lab that npufleet up served"
    )
    parser.add_argument("--repeat", type=int, default=3, help="server starts (median reported)")
    parser.add_argument("--skip-build", action="store_true", help="only the start-up and memory figures")
    parser.add_argument("--output", type=Path, default=results_io.RESULTS)
    args = parser.parse_args()
    client = docker.from_env()
    rows = [] if args.skip_build else build_figures(client)
    rows += start_up_figures(args.inventory, args.repeat)
    machine = results_io.machine() | {"docker": client.version().get("Version")}
    table = Table("measurement", "value", title=f"on {machine['host']} ({machine['cpus']} CPUs)")
    for row in rows:
        value = f"{row['value']:.1f} {row['unit']}" if isinstance(row["value"], float) else str(row["value"])
        table.add_row(row["what"], value)
    Console().print(table)
    print(f"wrote {results_io.write('vllm_serving', machine, rows, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
