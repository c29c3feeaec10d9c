"""The benchmark's one entry point, on the controller: the action plugin npufleet.ascend.llm_benchmark
(backend npufleet) and the ``npufleet bench`` command both call ``run_benchmark``.

It takes the module's options (plugins/modules/llm_benchmark.py), checked by the same argument spec
and completed with the same defaults, plus a few the command line has and the module does not.
"""

from __future__ import annotations

from pathlib import Path

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.npufleet.ascend.plugins.modules.llm_benchmark import SPEC

from . import prompts as bench_prompts
from . import report
from .run import Settings, benchmark

# Controller-only keys (the CLI's options), not module options: the action plugin refuses them.
EXTRA_OPTIONS = {
    "seed": {"type": "int", "default": 0},
    "max_concurrency": {"type": "int"},
    "ignore_eos": {"type": "bool", "default": True},
    "image": {"type": "path"},
    "text": {"type": "str", "default": "What is in the image?"},
    "stop_token_ids": {"type": "list", "elements": "int"},
}


def options(params: dict) -> dict:
    """``params`` checked against the module's argument spec (and EXTRA_OPTIONS), converted to the
    options' types, and completed with their defaults. Keys set to None, and an empty concurrency or
    rate (their default), count as not given.

    Raises ValueError with Ansible's message (a missing, unknown or mistyped option, or concurrency
    and rate both or neither given)."""
    given = {
        key: value
        for key, value in params.items()
        if value is not None and not (key in ("concurrency", "rate") and value == [])
    }
    validator = ArgumentSpecValidator(
        SPEC["argument_spec"] | EXTRA_OPTIONS,
        mutually_exclusive=SPEC["mutually_exclusive"],
        required_one_of=SPEC["required_one_of"],
    )
    result = validator.validate(given)
    if result.error_messages:
        raise ValueError(f"llm_benchmark: {'; '.join(result.error_messages)}")
    checked = dict(result.validated_parameters)
    # What the spec cannot say: no requests, or no time to answer, measures nothing.
    lowest = {"requests": 1, "input_tokens": 1, "output_tokens": 1, "warmup": 0}
    problems = [
        f"{name} must be at least {low}, got {checked[name]}"
        for name, low in lowest.items()
        if checked.get(name) is not None and checked[name] < low
    ]
    if checked.get("timeout") is not None and checked["timeout"] <= 0:
        problems.append(f"timeout must be a number of seconds above 0, got {checked['timeout']}")
    if problems:
        raise ValueError(f"llm_benchmark: {'; '.join(problems)}")
    if checked["backend"] != "npufleet":
        raise ValueError(
            f"run_benchmark runs backend npufleet on the controller, got backend {checked['backend']!r}:"
            " backend vllm runs on the node, through the module npufleet.ascend.llm_benchmark"
        )
    return checked


def prepare(params: dict) -> tuple[dict, Settings, list]:
    """``params`` checked (``options``), the prompts read or made and the load's settings checked, as a
    run starts with: what a check run does (the llm_benchmark action in check mode) before it would send."""
    checked = options(params)
    count, output_tokens = checked["requests"], checked["output_tokens"]
    if checked["image"]:
        image = Path(checked["image"])
        stop = checked["stop_token_ids"]
        prompts = bench_prompts.multimodal(count, checked["text"], image, output_tokens, stop_token_ids=stop)
    elif checked["dataset"]:
        prompts = bench_prompts.from_jsonl(Path(checked["dataset"]), count, output_tokens)
    else:
        prompts = bench_prompts.synthetic(count, checked["input_tokens"], output_tokens, seed=checked["seed"],
                                          ignore_eos=checked["ignore_eos"])  # fmt: skip
    settings = Settings(
        url=checked["url"],
        model=checked["model"],
        endpoint=checked["endpoint"],
        stream=checked["stream"],
        concurrencies=checked["concurrency"],
        rates=checked["rate"],
        arrival=checked["arrival"],
        seed=checked["seed"],
        max_concurrency=checked["max_concurrency"],
        warmup=checked["warmup"],
        timeout=checked["timeout"],
        slo=checked["slo"],
        api_key=checked["api_key"],
    )
    settings.check()
    return checked, settings, prompts


def run_benchmark(params: dict) -> dict:
    """Run the load generator against ``params["url"]`` and write its report into ``params["dest"]``.

    ``params`` holds the llm_benchmark module's options: url, model and dest are required, one of
    concurrency (a list of ints) or rate (a list of floats); endpoint, stream, arrival, requests,
    input_tokens, output_tokens, dataset, warmup, slo, timeout and api_key (sent as a bearer token, never
    written in the report) take the module's defaults when missing. The command line may add seed,
    max_concurrency, ignore_eos, and image with text and stop_token_ids (multimodal chat requests).

    Returns ``{"data": <the report's data: config, warmup, runs>, "files": {"json": ..., "markdown": ...,
    "png": ...}}`` (paths as strings). Raises ValueError on bad input; a server that does not answer is
    no error here: its requests are counted as failed in the data.
    """
    checked, settings, prompts = prepare(params)
    data = benchmark(settings, prompts)
    files = report.write(data, Path(checked["dest"]))
    return {"data": data, "files": {key: str(value) for key, value in files.items()}}
