"""The ``npufleet`` command line.

Exit codes: 0 success; 1 a play or lab step failed (one line on stderr says where and why);
2 bad usage or input; 3 the environment is missing something (no Docker engine, no debootstrap).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from npufleet import __version__
from npufleet.lab import nodes
from npufleet.runner import run_playbook

EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 1, 2, 3
DEFAULT_LAB = "npufleet-lab"

console = Console(stderr=True, soft_wrap=True)


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=dataclasses.asdict))


def _nodes_table(found: list[nodes.Node]) -> Table:
    table = Table("node", "address", "status", "NPUs")
    for node in found:
        table.add_row(
            node.name, node.address or "-", node.status, str(node.npus if node.npus is not None else "-")
        )
    return table


def cmd_lab(args: argparse.Namespace) -> int:
    inventory = Path(args.inventory) if getattr(args, "inventory", None) else None
    if args.action == "up":
        with console.status(f"starting {args.nodes} lab node(s) with {args.npus} x {args.chip} each"):
            found = nodes.up(
                args.lab,
                args.nodes,
                args.npus,
                args.chip,
                inventory=inventory,
                flavour=args.flavour,
                with_registry=args.registry,
                with_training=args.workload == "training",
            )
        if args.json:
            _print_json({"nodes": found, "inventory": str(inventory or nodes.default_inventory())})
        else:
            Console().print(_nodes_table(found))
            console.print(f"inventory: {inventory or nodes.default_inventory()}")
    elif args.action == "status":
        found = nodes.status(args.lab)
        if args.json:
            _print_json({"nodes": found})
        elif found:
            Console().print(_nodes_table(found))
        else:
            console.print(f"lab {args.lab} has no nodes")
    elif args.action == "down":
        removed = nodes.down(args.lab, inventory, purge=args.purge)
        if args.json:
            _print_json(removed)
        else:
            console.print(
                f"removed {len(removed['containers'])} container(s), {len(removed['networks'])} network(s), "
                f"{len(removed['volumes'])} volume(s)" + (", the inventory" if removed.get("files") else "")
            )
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    message = nodes.fault(args.lab, args.node, args.kind, args.npu, args.value)
    if args.json:
        _print_json({"node": args.node, "fault": args.kind, "message": message})
    else:
        console.print(message)
    return 0


def _run(playbook: str, args: argparse.Namespace) -> int:
    inventory = Path(args.inventory) if args.inventory else nodes.default_inventory()
    extravars = {}
    for item in args.extra_vars or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--extra-var {item!r} is not KEY=VALUE")
        extravars[key] = value

    def show(event: dict) -> None:
        data = event.get("event_data", {})
        if event.get("event") == "playbook_on_task_start" and not args.json:
            status.update(f"{playbook}: {data.get('task', '')}")
        # The train role reports each rank's progress every round of waiting.
        if event.get("event") == "runner_on_ok" and data.get("task") == "Show progress" and not args.json:
            status.update(f"{playbook}: {data.get('host', '')}: {(data.get('res') or {}).get('msg', '')}")

    with console.status(f"{playbook}: starting") as status:
        result = run_playbook(
            playbook,
            inventory,
            extravars=extravars,
            check=args.check,
            diff=args.diff,
            limit=args.limit,
            tags=args.tags,
            on_event=show,
        )
    if args.json:
        _print_json(
            {
                "playbook": playbook,
                "status": result.status,
                "rc": result.rc,
                "hosts": result.hosts,
                "artifact_dir": result.artifact_dir,
            }
        )
    else:
        table = Table("host", "ok", "changed", "failed", "unreachable", "skipped")
        for host, res in sorted(result.hosts.items()):
            table.add_row(
                host, str(res.ok), str(res.changed), str(res.failed), str(res.unreachable), str(res.skipped)
            )
        Console().print(table)
        if args.check:
            for host, res in sorted(result.hosts.items()):
                for task in res.changed_tasks:
                    console.print(f"would change on {host}: {task}", highlight=False)
    if not result.succeeded:
        console.print(f"[red]npufleet: {result.first_failure()}[/red]", highlight=False)
        return EXIT_FAILED
    console.print(f"npufleet: {playbook} succeeded on {len(result.hosts)} host(s)")
    return 0


def reports_dir() -> Path:
    return nodes.project_root() / "reports" / "train"


def cmd_report(args: argparse.Namespace) -> int:
    """Print a training report written by the train role (the latest run by default)."""
    folder = Path(args.dir) if args.dir else reports_dir()
    runs = sorted(
        (path.parent for path in folder.glob("*/report.json")), key=lambda path: path.stat().st_mtime
    )
    if args.run:
        chosen = folder / args.run
        if not (chosen / "report.json").is_file():
            known = ", ".join(path.name for path in runs) or "none"
            raise ValueError(f"no report for run {args.run!r} in {folder} (runs with a report: {known})")
    elif runs:
        chosen = runs[-1]
    else:
        raise ValueError(f"no training report in {folder}: run 'npufleet train' (or 'npufleet up') first")
    if args.json:
        print((chosen / "report.json").read_text(encoding="utf-8"))
    else:
        print((chosen / "report.md").read_text(encoding="utf-8"), end="")
        print(f"\n(report: {chosen / 'report.md'}; loss plot: {chosen / 'loss.png'})")
    return 0


def _numbers(text: str, kind=float) -> list:
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise ValueError(f"{text!r} is not a comma-separated list of numbers") from error


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark an OpenAI-compatible server (see npufleet.bench for the metric definitions)."""
    from npufleet.bench import prompts as bench_prompts  # noqa: PLC0415 -- aiohttp loads only here
    from npufleet.bench import report as bench_report  # noqa: PLC0415
    from npufleet.bench.run import Settings, benchmark  # noqa: PLC0415

    if args.dataset:
        prompts = bench_prompts.from_jsonl(Path(args.dataset), args.requests, args.output_tokens)
    elif args.image:
        prompts = bench_prompts.multimodal(args.requests, args.text, Path(args.image), args.output_tokens,
                                           stop_token_ids=args.stop_token_ids)  # fmt: skip
    else:
        prompts = bench_prompts.synthetic(
            args.requests,
            args.input_tokens,
            args.output_tokens,
            seed=args.seed,
            ignore_eos=not args.no_ignore_eos,
        )
    slo = {key: value for key, value in (("ttft_ms", args.slo_ttft_ms), ("tpot_ms", args.slo_tpot_ms),
                                         ("e2e_ms", args.slo_e2e_ms)) if value is not None}  # fmt: skip
    settings = Settings(
        url=args.url,
        model=args.model,
        endpoint=args.endpoint,
        stream=not args.no_stream,
        concurrencies=_numbers(args.concurrency, int) if args.concurrency else [],
        rates=_numbers(args.rate) if args.rate else [],
        arrival=args.arrival,
        seed=args.seed,
        max_concurrency=args.max_concurrency,
        warmup=args.warmup,
        timeout=args.timeout,
        slo=slo,
    )
    settings.check()
    with console.status(f"benchmarking {args.model} at {args.url}"):
        data = benchmark(settings, prompts)
    out = Path(args.out) if args.out else nodes.project_root() / "reports" / "bench" / "latest"
    files = bench_report.write(data, out)
    if args.json:
        print(files["json"].read_text(encoding="utf-8"))
    else:
        print(files["markdown"].read_text(encoding="utf-8"), end="")
        console.print(f"report: {files['markdown']} ({files['json'].name}, {files['png'].name})")
    completed = sum(run["summary"]["completed"] for run in data["runs"])
    if not completed:
        console.print("[red]npufleet: every request failed: is the server up at that address?[/red]")
        return EXIT_FAILED
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npufleet",
        description="Bring up LLM training and inference on Ascend NPU servers, or on a simulated lab.",
        epilog="Exit codes: 0 ok, 1 a step failed, 2 bad usage or input, 3 missing engine or tool.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the lab does")
    sub = parser.add_subparsers(dest="command", required=True)

    lab = sub.add_parser("lab", help="simulated Ascend nodes on the local Docker engine")
    lab_sub = lab.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lab", default=DEFAULT_LAB, help="lab name, prefix of every object it creates")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--inventory", help="the lab's inventory file (default inventories/lab/hosts.yml)")

    up = lab_sub.add_parser("up", parents=[common, where], help="start the nodes (builds the image once)")
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument("--npus", type=int, default=8, help="simulated NPUs per node (default 8)")
    up.add_argument("--chip", default="910B3", help="chip type npu-smi reports (default 910B3)")
    up.add_argument(
        "--flavour",
        default="bare",
        choices=nodes.FLAVOURS,
        help="bare: a fresh server, site.yml installs Docker (default); full: Docker already installed",
    )
    up.add_argument(
        "--no-registry",
        dest="registry",
        action="store_false",
        help="skip the lab registry and its workload image (the image stage then needs your own)",
    )
    up.add_argument(
        "--workload",
        default="training",
        choices=("training", "base"),
        help="training: build the LLaMA-Factory CPU image, a tiny model and datasets, and point the image"
        " and train stages at them (default); base: only the small workload image in the lab registry",
    )
    lab_sub.add_parser("status", parents=[common], help="list the nodes")
    down = lab_sub.add_parser("down", parents=[common, where], help="remove everything the lab made")
    down.add_argument("--purge", action="store_true", help="also remove the cached node images")
    for action in (up, lab_sub.choices["status"], down):
        action.set_defaults(func=cmd_lab)

    fault = lab_sub.add_parser(
        "fault",
        parents=[common],
        help="inject a fault into a node (or clear them)",
        description=(
            "unhealthy: a chip's health (--value, default Alarm); busy: a process on an NPU; held: a "
            "container inside the node holds /dev/davinciN; driver: another driver version; npus: fewer "
            "NPUs; disk: a small work dir (--value MiB); error: npu-smi fails; clear: undo every fault."
        ),
    )
    fault.add_argument("node", help="node name, as 'npufleet lab status' lists it")
    fault.add_argument("kind", choices=nodes.FAULTS)
    fault.add_argument("--npu", type=int, default=0, help="NPU id for unhealthy, busy and held (default 0)")
    fault.add_argument("--value", help="health word, driver version, NPU count, MiB of disk, or error text")
    fault.set_defaults(func=cmd_fault)

    for name, playbook, text in (
        ("up", "site.yml", "run the main job: preflight, node setup, image, NPU container, training"),
        ("check", "preflight.yml", "run the preflight checks only"),
        ("train", "train.yml", "train on the NPU containers and write the report"),
    ):
        run = sub.add_parser(name, help=text)
        run.add_argument("-i", "--inventory", help="inventory (default: the lab's inventories/lab/hosts.yml)")
        run.add_argument("-l", "--limit", help="only these hosts (Ansible pattern)")
        run.add_argument("-t", "--tags", help="only tasks with these tags")
        run.add_argument("-e", "--extra-var", dest="extra_vars", action="append", metavar="KEY=VALUE")
        run.add_argument("--check", action="store_true", help="Ansible check mode: report, change nothing")
        run.add_argument("--diff", action="store_true", help="show what files would change (with --check)")
        run.set_defaults(func=lambda args, playbook=playbook: _run(playbook, args))
    report = sub.add_parser("report", help="print a training report (the latest run by default)")
    report.add_argument("run", nargs="?", help="run name (train_name); default: the latest report")
    report.add_argument("--dir", help="reports folder (default reports/train in the checkout)")
    report.set_defaults(func=cmd_report)

    bench = sub.add_parser(
        "bench", help="benchmark an OpenAI-compatible server (TTFT, TPOT, ITL, throughput)"
    )
    bench.add_argument("--url", required=True, help="server base URL, for example http://127.0.0.1:8000")
    bench.add_argument("--model", required=True, help="model name the server serves")
    bench.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    bench.add_argument("--no-stream", action="store_true", help="ask for whole answers (TTFT = E2E)")
    load = bench.add_mutually_exclusive_group(required=True)
    load.add_argument("--concurrency", help="requests in flight, or a sweep: 1,4,16,64")
    load.add_argument("--rate", help="requests per second, or a sweep: 1,2,4")
    bench.add_argument("--arrival", choices=("poisson", "constant"), default="poisson", help="with --rate")
    bench.add_argument("--max-concurrency", type=int, help="with --rate: at most this many in flight")
    bench.add_argument("--requests", type=int, default=100, help="requests per level (default 100)")
    bench.add_argument("--input-tokens", type=int, default=128, help="synthetic prompt length (words)")
    bench.add_argument("--output-tokens", type=int, default=128, help="max_tokens of each request")
    bench.add_argument("--no-ignore-eos", action="store_true", help="let the model stop before max_tokens")
    bench.add_argument("--dataset", help="JSONL file of prompts ('prompt' or 'messages', 'max_tokens')")
    bench.add_argument("--image", help="send this image (base64) with --text: multimodal chat requests")
    bench.add_argument("--text", default="What is in the image?", help="the text beside --image")
    bench.add_argument(
        "--stop-token-ids", type=int, nargs="+", help="stop_token_ids (InternVL: 0 92543 92542)"
    )
    bench.add_argument("--warmup", type=int, default=2, help="requests sent first and not counted")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--timeout", type=float, default=600, help="seconds one request may take")
    bench.add_argument("--slo-ttft-ms", type=float, help="goodput: TTFT at most this")
    bench.add_argument("--slo-tpot-ms", type=float, help="goodput: TPOT at most this")
    bench.add_argument("--slo-e2e-ms", type=float, help="goodput: E2E latency at most this")
    bench.add_argument("--out", help="report folder (default reports/bench/latest)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except nodes.LabError as error:
        console.print(f"npufleet: {error}", highlight=False)
        return EXIT_ENVIRONMENT if "Docker engine" in str(error) else EXIT_FAILED
    except (ValueError, FileNotFoundError) as error:
        console.print(f"npufleet: {error}", highlight=False)
        return EXIT_USAGE
    except RuntimeError as error:
        console.print(f"npufleet: {error}", highlight=False)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        console.print("npufleet: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
