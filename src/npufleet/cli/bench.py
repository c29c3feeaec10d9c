"""``npufleet bench``: with --url, the load generator from here, through the benchmark's one entry
point (the one the llm_benchmark action calls); without --url, the bench stage on the inventory."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.markup import escape

from npufleet import collection
from npufleet.api import STAGES
from npufleet.cli.output import EXIT_FAILED, console
from npufleet.cli.stages import run_stage

# Where --url takes the server's API key from (the variable `npufleet endpoints` reads too): an
# environment variable, never an option, so that the key is on no command line (ps) and in no history.
API_KEY_ENV = "NPUFLEET_API_KEY"


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
        "bench_backend": getattr(args, "backend", None),
        "bench_dataset": dataset_path(args),
        "bench_dest": str(Path(args.out).resolve()) if getattr(args, "out", None) else None,
    }
    if args.rate:
        given["bench_concurrency"] = []
    return {key: value for key, value in given.items() if value is not None}


def dataset_path(args: argparse.Namespace) -> str | None:
    """--dataset for the bench role: a file here made absolute (backend npufleet reads it on the
    controller); with --backend vllm, a path in the serving container, passed as given."""
    dataset = getattr(args, "dataset", None)
    if not dataset or getattr(args, "backend", None) == "vllm":
        return dataset or None
    return str(Path(dataset).resolve())


def api_key(args: argparse.Namespace) -> str:
    """The server's API key, from the environment variable --api-key-env names (NPUFLEET_API_KEY)."""
    return os.environ.get(getattr(args, "api_key_env", None) or API_KEY_ENV, "")


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
        "api_key": api_key(args),
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
        # Through the inventory the key is serve_api_key, from its Vault. A key in this environment is not
        # needed, and ansible-runner records the whole environment in its artifacts (command): drop it.
        for name in {API_KEY_ENV, getattr(args, "api_key_env", None) or API_KEY_ENV}:
            os.environ.pop(name, None)
        return run_stage(STAGES["bench"], args, bench_role_vars(args), print_reports=True)
    if getattr(args, "backend", None) == "vllm":
        raise ValueError(
            "--backend vllm runs vllm bench serve in the serving container on a node: give an inventory"
            " (-i), not --url"
        )
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
        refused = any(run["summary"].get("errors", {}).get("http_401") for run in data["runs"])
        variable = getattr(args, "api_key_env", None) or API_KEY_ENV
        why = (
            f"the server answered 401 Unauthorized: set its API key in the environment variable {variable}"
            if refused
            else "is the server up at that address?"
        )
        console.print(f"[red]npufleet: every request failed: {escape(why)}[/red]", highlight=False)
        return EXIT_FAILED
    return 0
