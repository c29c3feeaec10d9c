"""The ``npufleet`` command line.

Exit codes: 0 success; 1 a play or lab step failed (one line on stderr says where and why);
2 bad usage or input; 3 the environment is missing something (no Docker engine, no debootstrap);
4 a play ran past --timeout and was stopped; 130 interrupted (Ctrl-C: the run is cancelled).
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import logging
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from npufleet import __version__
from npufleet.api import run_playbook
from npufleet.lab import nodes

EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 4, 130
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


class LiveView:
    """Per host: the task it is on and its ok/changed/failed/unreachable counts, redrawn as
    ansible-runner's events come (on a terminal; elsewhere rich prints nothing until the end)."""

    def __init__(self, playbook: str) -> None:
        self.playbook = playbook
        self.hosts: dict[str, dict] = {}
        self.task = "starting"

    def event(self, event: dict) -> None:
        data = event.get("event_data", {})
        kind = event.get("event", "")
        if kind == "playbook_on_task_start":
            self.task = data.get("task", "")
            return
        host = data.get("host")
        if not host:
            return
        row = self.hosts.setdefault(host, {"task": "", "ok": 0, "changed": 0, "failed": 0, "unreachable": 0})
        res = data.get("res") or {}
        if kind == "runner_on_start":
            row["task"] = data.get("task", "")
        elif kind == "runner_on_ok":
            row["ok"] += 1
            row["changed"] += 1 if res.get("changed") else 0
            # The train role reports each rank's progress every round of waiting.
            if data.get("task") == "Show progress":
                row["task"] = f"training: {res.get('msg', '')}"
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            row["failed"] += 1
        elif kind == "runner_on_unreachable":
            row["unreachable"] += 1

    def __rich__(self) -> Table:
        table = Table(
            "host", "task", "ok", "changed", "failed", "unreachable", title=f"{self.playbook}: {self.task}"
        )
        for host, row in sorted(self.hosts.items()):
            table.add_row(host, row["task"], str(row["ok"]), str(row["changed"]), str(row["failed"]),
                          str(row["unreachable"]))  # fmt: skip
        return table


def _extra_vars(items: list[str] | None) -> dict:
    extravars = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--extra-var {item!r} is not KEY=VALUE")
        extravars[key] = value
    return extravars


def _vault_password(args: argparse.Namespace) -> str | None:
    """From --vault-password-file (read here, passed in memory) or a prompt (--ask-vault-pass)."""
    if getattr(args, "vault_password_file", None):
        path = Path(args.vault_password_file)
        if not path.is_file():
            raise ValueError(f"--vault-password-file {path} does not exist")
        return path.read_text(encoding="utf-8").strip()
    if getattr(args, "ask_vault_pass", False):
        return getpass.getpass("Vault password: ")
    return None


def _run(
    playbook: str, args: argparse.Namespace, extravars: dict | None = None, print_reports: bool = False
) -> int:
    """Run ``playbook`` with the CLI's options; ``print_reports`` prints the Markdown reports it wrote."""
    inventory = Path(args.inventory) if args.inventory else nodes.default_inventory()
    extravars = _extra_vars(args.extra_vars) | (extravars or {})
    vault_password = _vault_password(args)  # prompted for before the live view takes the terminal
    view = LiveView(playbook)
    # Ctrl-C cancels the run through ansible-runner (which stops ansible-playbook), then exits 130.
    cancelled = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancelled.set())
    try:
        with Live(view, console=console, refresh_per_second=4, transient=True, redirect_stdout=False) as live:

            def show(event: dict) -> None:
                view.event(event)
                if not args.json:
                    live.refresh()

            result = run_playbook(
                playbook,
                inventory,
                extravars=extravars,
                check=args.check,
                diff=args.diff,
                limit=args.limit,
                tags=args.tags,
                on_event=show,
                vault_password=vault_password,
                timeout=args.timeout,
                cancel=cancelled,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        _print_json(
            {
                "playbook": playbook,
                "status": result.status,
                "rc": result.rc,
                "hosts": result.hosts,
                "artifact_dir": result.artifact_dir,
                "reports": result.reports,
                "results": result.results,
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
        if print_reports:
            for path in result.reports:
                if path.endswith(".md") and Path(path).is_file():
                    print(Path(path).read_text(encoding="utf-8").rstrip("\n"), flush=True)
        for path in result.reports:
            console.print(f"report: {path}", highlight=False)
    if not result.succeeded:
        console.print(f"[red]npufleet: {result.first_failure()}[/red]", highlight=False)
        if result.status == "canceled":
            return EXIT_INTERRUPTED
        return EXIT_TIMEOUT if result.status == "timeout" else EXIT_FAILED
    console.print(f"npufleet: {playbook} succeeded on {len(result.hosts)} host(s)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    flags = {"teardown_images": args.images, "teardown_work_dir": args.work_dir,
             "teardown_system_settings": args.system_settings}  # fmt: skip
    return _run("teardown.yml", args, {key: True for key, value in flags.items() if value})


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


def serve_records_dir() -> Path:
    return nodes.project_root() / "reports" / "serve"


def _answers(url: str, timeout: float = 3.0) -> str:
    """What ``GET {url}/models`` says: "yes", or why not (servers with an API key answer 401)."""
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=timeout) as response:
            return "yes" if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"no ({getattr(error, 'reason', error)})"


def cmd_endpoints(args: argparse.Namespace) -> int:
    """Where each served model answers (the records the serve role wrote), and a request to try."""
    folder = Path(args.dir) if args.dir else serve_records_dir()
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            url = str(record["url"]).rstrip("/")
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a service record ({error}): delete it, then run 'npufleet serve'"
            ) from None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{path}: url {url!r} is not http(s): delete it, then run 'npufleet serve'")
        records.append(record | {"url": url, "answers": _answers(url)})
    if not records:
        raise ValueError(
            f"no served model is recorded in {folder}: run 'npufleet serve' (or 'npufleet up') first"
        )
    if args.json:
        _print_json(records)
    else:
        # Lines, not a table: URLs and the curl line must stay whole on a narrow or piped terminal.
        for record in records:
            where = f"{record.get('name', '?')} on {record.get('host', '?')} ({record.get('engine', '?')})"
            print(
                f"{where}: model {record.get('model', '?')} at {record['url']}, answers: {record['answers']}"
            )
        first = next((record for record in records if record["answers"] == "yes"), records[0])
        body = json.dumps(
            {
                "model": first.get("model", ""),
                "messages": [{"role": "user", "content": "Hello!"}],
                "max_tokens": 32,
            }
        )
        print("try it:")
        print(f"  curl -s {first['url']}/chat/completions -H 'Content-Type: application/json' -d '{body}'")
    return 0 if any(record["answers"] == "yes" for record in records) else EXIT_FAILED


def _numbers(text: str, kind=float) -> list:
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise ValueError(f"{text!r} is not a comma-separated list of numbers") from error


def _bench_role_vars(args: argparse.Namespace) -> dict:
    """The bench role's variables for the load options given on the command line."""
    given = {
        "bench_concurrency": _numbers(args.concurrency, int) if args.concurrency else None,
        "bench_rate": _numbers(args.rate) if args.rate else None,
        "bench_endpoint": args.endpoint,
        "bench_stream": not args.no_stream,
        "bench_arrival": args.arrival,
        "bench_requests": args.requests,
        "bench_input_tokens": args.input_tokens,
        "bench_output_tokens": args.output_tokens,
        "bench_warmup": args.warmup,
        "bench_timeout": args.timeout_per_request,
    }
    if args.rate:
        given["bench_concurrency"] = []
    return {key: value for key, value in given.items() if value is not None}


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark an OpenAI-compatible server (see npufleet.bench for the metric definitions)."""
    if not args.url:
        return _run("bench.yml", args, _bench_role_vars(args), print_reports=True)
    if not args.model or not (args.concurrency or args.rate):
        raise ValueError("with --url, give --model and one of --concurrency or --rate")
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
        timeout=args.timeout_per_request,
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
        epilog="Exit codes: 0 ok, 1 a step failed, 2 bad usage or input, 3 missing engine or tool, "
        "4 a play ran past --timeout, 130 interrupted.",
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

    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-i", "--inventory", help="inventory (default: the lab's inventories/lab/hosts.yml)")
    options.add_argument("-l", "--limit", help="only these hosts (Ansible pattern)")
    options.add_argument("-t", "--tags", help="only tasks with these tags")
    options.add_argument("-e", "--extra-var", dest="extra_vars", action="append", metavar="KEY=VALUE")
    options.add_argument("--check", action="store_true", help="Ansible check mode: report, change nothing")
    options.add_argument("--diff", action="store_true", help="show what files would change (with --check)")
    options.add_argument("--timeout", type=float, help="stop the play after this many seconds (exit 4)")
    vault = options.add_mutually_exclusive_group()
    vault.add_argument("--vault-password-file", help="file holding the Ansible Vault password")
    vault.add_argument("--ask-vault-pass", action="store_true", help="prompt for the Vault password")

    for name, playbook, text in (
        (
            "up",
            "site.yml",
            "run the main job: preflight, node setup, image, NPU container, training, serving",
        ),
        ("check", "preflight.yml", "run the preflight checks only"),
        ("train", "train.yml", "train on the NPU containers and write the report"),
        ("serve", "serve.yml", "serve a model from the NPU containers behind health gates"),
        ("down", "teardown.yml", "stop what npufleet started on the nodes (processes, NPU container)"),
    ):
        run = sub.add_parser(name, help=text, parents=[options])
        run.set_defaults(func=lambda args, playbook=playbook: _run(playbook, args))
        if name == "down":
            run.add_argument("--images", action="store_true", help="also remove the workload image")
            run.add_argument("--work-dir", action="store_true", help="also delete the work dir on the nodes")
            run.add_argument(
                "--system-settings",
                action="store_true",
                help="also remove the metadata guard and the ip_forward sysctl file",
            )
            run.set_defaults(func=cmd_down)
    endpoints = sub.add_parser(
        "endpoints",
        help="where the served models answer (URL, model, a curl line to try)",
        description="Reads the records the serve role writes for each service that passed its health"
        " gates, asks each for /v1/models, and prints a request to try. Exit 1 when none answers.",
    )
    endpoints.add_argument("--dir", help="records folder (default reports/serve in the checkout)")
    endpoints.set_defaults(func=cmd_endpoints)
    report = sub.add_parser("report", help="print a training report (the latest run by default)")
    report.add_argument("run", nargs="?", help="run name (train_name); default: the latest report")
    report.add_argument("--dir", help="reports folder (default reports/train in the checkout)")
    report.set_defaults(func=cmd_report)

    bench = sub.add_parser(
        "bench",
        parents=[options],
        help="benchmark an OpenAI-compatible server (TTFT, TPOT, ITL, throughput)",
        description="With --url and --model: the load generator, from here. Without --url: bench.yml, "
        "the served model of the inventory (-i), with the load options given here.",
    )
    bench.add_argument("--url", help="server base URL, for example http://127.0.0.1:8000")
    bench.add_argument("--model", help="model name the server serves (with --url)")
    bench.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    bench.add_argument("--no-stream", action="store_true", help="ask for whole answers (TTFT = E2E)")
    load = bench.add_mutually_exclusive_group()
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
    bench.add_argument("--request-timeout", dest="timeout_per_request", type=float, default=600,
                       help="seconds one request may take")  # fmt: skip
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
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
