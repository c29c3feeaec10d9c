"""``npufleet bench``: with --url, the load generator from here, through the benchmark's one entry
point (the one the llm_benchmark action calls); without --url, the bench stage on the inventory."""

from __future__ import annotations

import argparse
from pathlib import Path

from npufleet import collection
from npufleet.api import STAGES
from npufleet.cli.output import EXIT_FAILED, console
from npufleet.cli.stages import run_stage


def numbers(text: str, kind=float) -> list:
    try:
        return [kind(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise ValueError(f"{text!r} is not a comma-separated list of numbers") from error


def bench_role_vars(args: argparse.Namespace) -> dict:
    """The bench role's variables for the load options given on the command line."""
    given = {
        "bench_concurrency": numbers(args.concurrency, int) if args.concurrency else None,
        "bench_rate": numbers(args.rate) if args.rate else None,
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


def benchmark_params(args: argparse.Namespace) -> dict:
    """run_benchmark's parameters (the llm_benchmark module's options, and the command line's own)
    for the options given with --url."""
    slo = {key: value for key, value in (("ttft_ms", args.slo_ttft_ms), ("tpot_ms", args.slo_tpot_ms),
                                         ("e2e_ms", args.slo_e2e_ms)) if value is not None}  # fmt: skip
    return {
        "url": args.url,
        "model": args.model,
        "endpoint": args.endpoint,
        "stream": not args.no_stream,
        "concurrency": numbers(args.concurrency, int) if args.concurrency else [],
        "rate": numbers(args.rate) if args.rate else [],
        "arrival": args.arrival,
        "requests": args.requests,
        "input_tokens": args.input_tokens,
        "output_tokens": args.output_tokens,
        "dataset": args.dataset,
        "warmup": args.warmup,
        "slo": slo,
        "timeout": args.timeout_per_request,
        "dest": args.out or str(collection.project_root() / "reports" / "bench" / "latest"),
        "seed": args.seed,
        "max_concurrency": args.max_concurrency,
        "ignore_eos": not args.no_ignore_eos,
        "image": args.image,
        "text": args.text,
        "stop_token_ids": args.stop_token_ids,
    }


def _entry_point():
    """The collection's run_benchmark (aiohttp and the load generator load only here)."""
    collection.importable()
    try:
        from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.entry import (  # noqa: PLC0415
            run_benchmark,
        )
    except ImportError as error:
        raise RuntimeError(
            f"the load generator is not importable ({error}): run npufleet from the project's virtualenv,"
            " with the checkout installed (pip install -e .)"
        ) from error
    return run_benchmark


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark an OpenAI-compatible server (the metric definitions: the llm_benchmark module's docs)."""
    if not args.url:
        return run_stage(STAGES["bench"], args, bench_role_vars(args), print_reports=True)
    if not args.model or not (args.concurrency or args.rate):
        raise ValueError("with --url, give --model and one of --concurrency or --rate")
    run_benchmark = _entry_point()
    with console.status(f"benchmarking {args.model} at {args.url}"):
        done = run_benchmark(benchmark_params(args))
    data, files = done["data"], {key: Path(value) for key, value in done["files"].items()}
    if args.json:
        print(files["json"].read_text(encoding="utf-8"))
    else:
        print(files["markdown"].read_text(encoding="utf-8"), end="")
        others = ", ".join(path.name for key, path in files.items() if key != "markdown")
        console.print(f"report: {files['markdown']} ({others})")
    completed = sum(run["summary"]["completed"] for run in data["runs"])
    if not completed:
        console.print("[red]npufleet: every request failed: is the server up at that address?[/red]")
        return EXIT_FAILED
    return 0
