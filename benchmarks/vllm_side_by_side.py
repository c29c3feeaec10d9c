#!/usr/bin/env python3
"""npufleet's load generator and `vllm bench serve` side by side against the same vLLM server.

Both run through `npufleet bench`: npufleet's load generator from here (the controller), with --url, or
through bench.yml on the inventory (--backend npufleet); `vllm bench serve` inside the serving container
on the node, through bench.yml (--backend vllm: the llm_benchmark module's vllm backend). Same server,
same model, the same random prompts (fixed seed 0, the same input and output lengths, every answer as
long as asked: ignore_eos), at each concurrency (default 1, 4, 16), the two tools alternating (npufleet
c=1, vllm c=1, npufleet c=4, ...), --requests each. Each run's bench.json (the normalized schema both
backends write) is kept under the output folder's runs/; the script prints a table of each tool's TTFT,
TPOT and ITL (median and p99), request and output-token throughput, with the difference per metric, and
writes it as JSON (reports/bench/side-by-side/ by default), with the machine it ran on.

The prompts are of the same lengths, not the same text: npufleet's are common words (input tokens ~ words),
vllm's random dataset draws token ids; the table's prompt tokens per request shows how close they came.
ITL differs by definition where a chunk carries several tokens (npufleet divides the gap by the chunk's
tokens, vllm bench serve counts one gap per chunk); with vLLM's one token per chunk they agree.

The server's API key: with --url, from NPUFLEET_API_KEY (or --api-key-env NAME) in this environment; through
the inventory, from serve_api_key in its Vault (--vault-password-file). Never on a command line.

    .venv/bin/python benchmarks/vllm_side_by_side.py                      # the lab, its served model
    .venv/bin/python benchmarks/vllm_side_by_side.py --model tiny-qwen2-sft --requests 64
    .venv/bin/python benchmarks/vllm_side_by_side.py --compare NPUFLEET_BENCH_JSON VLLM_BENCH_JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from results_io import machine
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
NPUFLEET = Path(sys.executable).parent / "npufleet"
TOOLS = ("npufleet", "vllm")
TOOL_NAMES = {"npufleet": "npufleet", "vllm": "vllm bench serve"}
# (label, unit, summary key, statistic); the statistic None: the summary's figure itself.
METRICS = (
    ("completed", "req", "completed", None),
    ("TTFT p50", "ms", "ttft_ms", "p50"),
    ("TTFT p99", "ms", "ttft_ms", "p99"),
    ("TPOT p50", "ms", "tpot_ms", "p50"),
    ("TPOT p99", "ms", "tpot_ms", "p99"),
    ("ITL p50", "ms", "itl_ms", "p50"),
    ("ITL p99", "ms", "itl_ms", "p99"),
    ("request throughput", "req/s", "request_throughput", None),
    ("output token throughput", "tok/s", "output_token_throughput", None),
    ("prompt tokens / request", "tok", "prompt_tokens", "per_request"),
    ("output tokens / request", "tok", "output_tokens", "per_request"),
)


def figure(summary: dict, key: str, statistic: str | None) -> float | None:
    """One figure of a level's summary (bench.json's runs[].summary), or None where it has none."""
    value = summary.get(key)
    if statistic == "per_request":
        completed = summary.get("completed") or 0
        return float(value) / completed if value is not None and completed else None
    if statistic is not None:
        value = value.get(statistic) if isinstance(value, dict) and value.get("count") else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def compare(npufleet: dict, vllm: dict) -> list[dict]:
    """The two tools' figures side by side, from two bench.json documents (several levels each; levels
    are matched by mode and level, and only those both have are compared). Per row: level, metric, unit,
    both figures, ratio (npufleet / vllm) and diff_pct ((npufleet - vllm) / vllm, in %); None where a
    figure is missing or vllm's is 0."""
    theirs = {(run["mode"], run["level"]): run["summary"] for run in vllm["runs"]}
    rows = []
    for run in npufleet["runs"]:
        other = theirs.get((run["mode"], run["level"]))
        if other is None:
            continue
        for label, unit, key, statistic in METRICS:
            ours, its = figure(run["summary"], key, statistic), figure(other, key, statistic)
            ratio = ours / its if ours is not None and its else None
            rows.append(
                {
                    "mode": run["mode"],
                    "level": run["level"],
                    "metric": label,
                    "unit": unit,
                    "npufleet": ours,
                    "vllm": its,
                    "ratio": ratio,
                    "diff_pct": (ratio - 1) * 100 if ratio is not None else None,
                }
            )
    return rows


def merge(documents: list[dict]) -> dict:
    """bench.json documents of one tool (one level each) as one document with all their levels."""
    return {"runs": [run for document in documents for run in document["runs"]]}


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if unit == "req" else f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"


def table(rows: list[dict], title: str) -> Table:
    grid = Table(
        "c", "metric", TOOL_NAMES["npufleet"], TOOL_NAMES["vllm"], "npufleet / vllm", "diff", title=title
    )
    previous = None
    for row in rows:
        if previous is not None and row["level"] != previous:
            grid.add_section()
        previous = row["level"]
        diff = f"{row['diff_pct']:+.1f}%" if row["diff_pct"] is not None else "-"
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
        grid.add_row(
            str(row["level"]),
            f"{row['metric']} ({row['unit']})",
            _number(row["npufleet"], row["unit"]),
            _number(row["vllm"], row["unit"]),
            ratio,
            diff,
        )
    return grid


def bench_command(tool: str, level: int, dest: Path, args: argparse.Namespace) -> list[str]:
    """`npufleet bench` for one tool at one concurrency, its report into dest (no secret on it)."""
    load = [
        "--concurrency",
        str(level),
        "--requests",
        str(args.requests),
        "--input-tokens",
        str(args.input_tokens),
        "--output-tokens",
        str(args.output_tokens),
        "--out",
        str(dest),
    ]
    if tool == "npufleet" and args.url:
        return [
            str(NPUFLEET),
            "bench",
            "--url",
            args.url,
            "--model",
            args.model,
            "--seed",
            "0",
            "--api-key-env",
            args.api_key_env,
            *load,
        ]
    command = [str(NPUFLEET), "bench", "--inventory", str(args.inventory), "--backend", tool, *load]
    if args.model:
        command += ["-e", f"bench_model={args.model}"]
    if tool == "vllm" and args.container:
        command += ["-e", f"bench_container={args.container}"]
    if args.vault_password_file:
        command += ["--vault-password-file", str(args.vault_password_file)]
    return command


def environment(command: list[str], args: argparse.Namespace) -> dict:
    """The environment for one `npufleet bench`: the API key's variable only where it is used (--url).
    Through the inventory the key comes from its Vault, and ansible-runner writes the environment it
    was given into its artifacts."""
    env = dict(os.environ)
    if "--url" not in command:
        env.pop(args.api_key_env, None)
    return env


def run_tool(tool: str, level: int, runs: Path, args: argparse.Namespace, console: Console) -> dict:
    """One tool at one concurrency; returns its bench.json. Its output goes to a log beside it."""
    dest = runs / f"{tool}-c{level}"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bench.json").unlink(missing_ok=True)
    command = bench_command(tool, level, dest, args)
    env = environment(command, args)
    log_path = dest / "npufleet-bench.log"
    with (
        console.status(f"{TOOL_NAMES[tool]} at concurrency {level}"),
        log_path.open("w", encoding="utf-8") as log,
    ):
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=ROOT, env=env)
    report = dest / "bench.json"
    if done.returncode != 0 or not report.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip()[-1500:]
        raise SystemExit(
            f"{TOOL_NAMES[tool]} at concurrency {level} failed (exit {done.returncode}):\n{tail}"
        )
    return json.loads(report.read_text(encoding="utf-8"))


def write(out: Path, document: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"vllm_side_by_side-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--inventory",
        type=Path,
        default=ROOT / "inventories" / "lab" / "hosts.yml",
        help="the inventory whose served model both tools benchmark (default: the lab's)",
    )
    parser.add_argument(
        "--url",
        help="npufleet's load generator against this URL (from here) instead of the"
        " inventory's; vllm bench serve still runs in the serving container",
    )
    parser.add_argument(
        "--model", help="model name (default: the inventory's served model; needed with --url)"
    )
    parser.add_argument(
        "--container", help="the serving container for vllm bench serve (default: the role's)"
    )
    parser.add_argument("--requests", type=int, default=32, help="requests per tool and level (default 32)")
    parser.add_argument("--concurrency", default="1,4,16", help="levels, comma-separated (default 1,4,16)")
    parser.add_argument("--input-tokens", type=int, default=128, help="prompt length (default 128)")
    parser.add_argument("--output-tokens", type=int, default=128, help="max_tokens, ignore_eos (default 128)")
    parser.add_argument(
        "--api-key-env",
        default="NPUFLEET_API_KEY",
        metavar="NAME",
        help="with --url: the variable holding the server's API key (default NPUFLEET_API_KEY)",
    )
    parser.add_argument(
        "--vault-password-file", type=Path, help="the inventory's Vault password (serve_api_key)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "reports" / "bench" / "side-by-side",
        help="folder for the JSON and the runs' reports (default reports/bench/side-by-side)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("NPUFLEET_JSON", "VLLM_JSON"),
        help="run nothing: compare two bench.json files already written",
    )
    args = parser.parse_args(argv)
    try:
        args.levels = [int(item) for item in args.concurrency.split(",") if item.strip()]
    except ValueError:
        parser.error(f"--concurrency {args.concurrency!r} is not a comma-separated list of integers")
    if not args.levels or any(level < 1 for level in args.levels):
        parser.error(f"--concurrency must give levels of at least 1, got {args.concurrency!r}")
    if args.requests < 1 or args.input_tokens < 1 or args.output_tokens < 1:
        parser.error("--requests, --input-tokens and --output-tokens must be at least 1")
    if args.url and not args.model:
        parser.error("--url needs --model (the name the server serves)")
    if not args.compare and not args.inventory.is_file():
        parser.error(f"inventory {args.inventory} does not exist: run 'npufleet lab up' or pass --inventory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console()
    host = machine()
    if args.compare:
        documents = {
            tool: json.loads(path.read_text(encoding="utf-8"))
            for tool, path in zip(TOOLS, args.compare, strict=True)
        }
        run_files = {tool: [str(path)] for tool, path in zip(TOOLS, args.compare, strict=True)}
    else:
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        runs_dir = args.out / "runs" / stamp
        collected: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
        run_files = {tool: [] for tool in TOOLS}
        for level in args.levels:  # alternating: npufleet c=1, vllm c=1, npufleet c=4, ...
            for tool in TOOLS:
                collected[tool].append(run_tool(tool, level, runs_dir, args, console))
                run_files[tool].append(str(runs_dir / f"{tool}-c{level}" / "bench.json"))
        documents = {tool: merge(collected[tool]) for tool in TOOLS}
    rows = compare(documents["npufleet"], documents["vllm"])
    config = documents["npufleet"].get("config") or {}
    server = args.url or config.get("url") or "the inventory's server"
    model = args.model or config.get("model") or "the inventory's model"
    console.print(
        table(
            rows,
            f"{model} at {server}: npufleet and vllm bench serve, on {host['host']} ({host['cpus']} CPUs)",
        )
    )
    document = {
        "machine": host,
        "server": {"url": server, "model": model, "inventory": None if args.compare else str(args.inventory)},
        "config": {
            "requests": args.requests,
            "concurrency": args.levels,
            "input_tokens": args.input_tokens,
            "output_tokens": args.output_tokens,
            "seed": 0,
            "ignore_eos": True,
            "order": "alternating, npufleet first at each level",
        },
        "runs": run_files,
        "results": rows,
    }
    if args.compare:
        document["config"] = {"compared": [str(path) for path in args.compare]}
    print(f"wrote {write(args.out, document)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
