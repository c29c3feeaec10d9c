"""``npufleet bench``: with --url, the load generator from here, through the benchmark's one entry
point (the one the llm_benchmark action calls); without --url, the bench stage on the inventory."""

from __future__ import annotations

import argparse
import math
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


# With --url, what a load option not given is: the bench role's defaults (roles/bench/defaults/main.yml),
# so that a benchmark reads the same from here as through the inventory. Through the inventory (-i) the
# options not given are not sent at all: the inventory's bench_* settings, else the role's, apply.
URL_DEFAULTS = {"endpoint": "chat", "stream": True, "arrival": "poisson", "requests": 100,
                "input_tokens": 128, "output_tokens": 128, "warmup": 2, "timeout_per_request": 600, "seed": 0,
                "text": "What is in the image?"}  # fmt: skip

# The options the bench role has no variable for (dest, option): refused with -i rather than ignored.
URL_ONLY = (("max_concurrency", "--max-concurrency"), ("no_ignore_eos", "--no-ignore-eos"),
            ("image", "--image"), ("text", "--text"), ("stop_token_ids", "--stop-token-ids"),
            ("seed", "--seed"))  # fmt: skip


def _given(args: argparse.Namespace, dest: str):
    """An option's value as given, URL_DEFAULTS' where it was not."""
    value = getattr(args, dest, None)
    return URL_DEFAULTS.get(dest) if value is None else value


def _slo(args: argparse.Namespace) -> dict:
    return {key: value for key, value in (("ttft_ms", args.slo_ttft_ms), ("tpot_ms", args.slo_tpot_ms),
                                          ("e2e_ms", args.slo_e2e_ms)) if value is not None}  # fmt: skip


def bench_role_vars(args: argparse.Namespace) -> dict:
    """The bench role's variables (extra vars, over the inventory's) for the load options given on the
    command line, and for those only: an option not given leaves the inventory's setting as it is."""
    given = {
        "bench_model": args.model,
        "bench_concurrency": numbers(args.concurrency, int) if args.concurrency else None,
        "bench_rate": numbers(args.rate) if args.rate else None,
        "bench_endpoint": args.endpoint,
        "bench_stream": args.stream,
        "bench_arrival": args.arrival,
        "bench_requests": args.requests,
        "bench_input_tokens": args.input_tokens,
        "bench_output_tokens": args.output_tokens,
        "bench_warmup": args.warmup,
        # The role's bench_timeout is whole seconds.
        "bench_timeout": math.ceil(args.timeout_per_request)
        if args.timeout_per_request is not None
        else None,
        # Extra vars replace the inventory's bench_slo whole: the limits given are the ones that apply.
        "bench_slo": _slo(args) or None,
        "bench_backend": getattr(args, "backend", None),
        "bench_dataset": dataset_path(args),
        "bench_dest": str(Path(args.out).resolve()) if getattr(args, "out", None) else None,
    }
    # The role runs a rate sweep when bench_rate is set: a sweep given here replaces the inventory's of
    # either kind.
    if args.rate:
        given["bench_concurrency"] = []
    if args.concurrency:
        given["bench_rate"] = []
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
    return {
        "url": args.url,
        "model": args.model,
        "endpoint": _given(args, "endpoint"),
        "stream": _given(args, "stream"),
        "concurrency": numbers(args.concurrency, int) if args.concurrency else [],
        "rate": numbers(args.rate) if args.rate else [],
        "arrival": _given(args, "arrival"),
        "requests": _given(args, "requests"),
        "input_tokens": _given(args, "input_tokens"),
        "output_tokens": _given(args, "output_tokens"),
        "dataset": args.dataset,
        "warmup": _given(args, "warmup"),
        "slo": _slo(args),
        "timeout": _given(args, "timeout_per_request"),
        "api_key": api_key(args),
        "dest": args.out or str(collection.project_root() / "reports" / "bench" / "latest"),
        "seed": _given(args, "seed"),
        "max_concurrency": args.max_concurrency,
        "ignore_eos": not args.no_ignore_eos,
        "image": args.image,
        "text": _given(args, "text"),
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
        ignored = [option for dest, option in URL_ONLY if getattr(args, dest, None) not in (None, False)]
        if ignored:
            raise ValueError(
                f"{', '.join(ignored)} apply with --url only: the bench role (the inventory's bench) has no"
                " such setting; drop them, or benchmark the server from here with --url and --model"
            )
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
