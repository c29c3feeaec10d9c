# Copyright: npufleet contributors
# Apache License 2.0
"""`vllm bench serve` inside the serving container: its command line, and its result JSON
normalized into the summary npufleet's own load generator writes (times in milliseconds).

Runs on the node (Python 3.8 and later): no dict merge operator, no newer syntax outside annotations."""

from __future__ import annotations

import shlex


def command(
    *,
    url: str,
    model: str,
    endpoint: str,
    concurrency: int | None,
    rate: float | None,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    result_dir: str,
    result_file: str,
    tokenizer: str | None = None,
    dataset: str | None = None,
) -> str:
    """The shell line for one level (a concurrency, or a request rate). It holds no API key: vllm bench
    serve reads that from OPENAI_API_KEY in its environment.

    Without ``dataset``, vllm bench serve's random dataset (token ids of ``input_tokens``). With it (a
    path in the container), its prompts in the file's order (--disable-shuffle), each sent as written
    (the server applies its chat template, as to npufleet's) and asking for ``output_tokens``: a ``.json``
    file in ShareGPT's format (``[{"conversations": [{"from": "human", "value": PROMPT}, {"from": "gpt",
    "value": ""}]}, ...]``, --dataset-name sharegpt; prompts of 4 to 1024 tokens), else a JSONL file with
    a "prompt" per line (--dataset-name custom --skip-chat-template; vllm needs pandas for it)."""
    backend, path = (
        ("openai-chat", "/v1/chat/completions") if endpoint == "chat" else ("vllm", "/v1/completions")
    )
    args = [
        "vllm", "bench", "serve", "--backend", backend, "--base-url", url, "--endpoint", path,
        "--model", model, *_dataset(dataset, input_tokens, output_tokens), "--num-prompts", str(requests),
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--result-dir", result_dir, "--result-filename", result_file,
        # Every answer as long as asked, as the npufleet backend's synthetic prompts ask (ignore_eos).
        "--ignore-eos", "--seed", "0",
    ]  # fmt: skip
    if tokenizer:
        # vllm bench serve loads the tokenizer from --model unless told: a served name (a LoRA adapter's)
        # is no tokenizer, the base model's path in the container is.
        args += ["--tokenizer", tokenizer]
    if concurrency:
        args += ["--max-concurrency", str(concurrency), "--request-rate", "inf"]
    elif rate:
        args += ["--request-rate", str(rate)]
    return shlex.join(args)


def _dataset(dataset: str | None, input_tokens: int, output_tokens: int) -> list:
    if not dataset:
        return ["--dataset-name", "random", "--random-input-len", str(input_tokens),
                "--random-output-len", str(output_tokens)]  # fmt: skip
    if dataset.endswith(".json"):
        return ["--dataset-name", "sharegpt", "--dataset-path", dataset, "--sharegpt-output-len",
                str(output_tokens), "--disable-shuffle"]  # fmt: skip
    return ["--dataset-name", "custom", "--dataset-path", dataset, "--custom-output-len", str(output_tokens),
            "--skip-chat-template", "--disable-shuffle"]  # fmt: skip


def _stats(result: dict, metric: str) -> dict:
    stats = {}
    for ours, theirs in (("mean", "mean"), ("p50", "median"), ("p90", "p90"), ("p99", "p99")):
        key = f"{theirs}_{metric}_ms"
        if key in result:
            stats[ours] = float(result[key])
    if not stats:
        return {"count": 0}
    return dict({"count": int(result.get("completed", 0))}, **stats)


def normalize(result: dict) -> dict:
    """A `vllm bench serve --save-result` JSON as npufleet's summary (missing figures are left out)."""
    completed = int(result.get("completed", 0))
    requests = int(result.get("num_prompts", completed + int(result.get("failed", 0) or 0)))
    duration = float(result.get("duration", 0) or 0)
    return {
        "requests": requests,
        "completed": completed,
        "failed": requests - completed,
        "errors": {"vllm": requests - completed} if requests > completed else {},
        "duration_s": duration,
        "request_throughput": float(result.get("request_throughput", 0)),
        "output_token_throughput": float(result.get("output_throughput", 0)),
        "total_token_throughput": float(result.get("total_token_throughput", 0)),
        "output_tokens": int(result.get("total_output_tokens", 0)),
        "prompt_tokens": int(result.get("total_input_tokens", 0)),
        "ttft_ms": _stats(result, "ttft"),
        "tpot_ms": _stats(result, "tpot"),
        "itl_ms": _stats(result, "itl"),
        "e2e_ms": _stats(result, "e2el"),
        "goodput": result.get("request_goodput"),
        "achieved_rate": None,
        "source": "vllm bench serve",
    }
