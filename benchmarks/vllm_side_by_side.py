#!/usr/bin/env python3
"""npufleet's load generator and `vllm bench serve` side by side against the same vLLM server.

Both run through `npufleet bench`: npufleet's load generator from here (the controller), with --url, or
through bench.yml on the inventory (--backend npufleet); `vllm bench serve` inside the serving container
on the node, through bench.yml (--backend vllm: the llm_benchmark module's vllm backend). Same server,
same model, the SAME prompts, at each concurrency (default 1, 4, 16), the two tools alternating (npufleet
c=1, vllm c=1, npufleet c=4, ...), --requests each. The script first builds one prompt set: --requests
prompts of random token ids (seed 0) drawn from the server's own tokenizer (its /tokenize and /detokenize:
ordinary tokens only, no special token nor partial byte), each trimmed or padded until its text is exactly
--input-tokens tokens long; it writes them as npufleet's JSONL dataset (max_tokens --output-tokens,
ignore_eos) and as vllm bench serve's ShareGPT .json (its custom JSONL dataset needs pandas, which the
lab's vLLM image lacks; --sharegpt-output-len, --ignore-eos, --disable-shuffle: the file's order), and,
lab-oriented, copies the latter with `docker cp` into the node's work dir (--node, default the inventory's
first host, a lab node's container; /home/ma-user/ws, the serving container's /workspace). Each prompt is
sent as written by both; with the chat endpoint (default) the server applies its chat template to both
alike, so the prompt tokens per request are --input-tokens plus the template's (146 = 128 + 18 for the
lab's tiny-qwen2). Before the runs each prompt is sent once (max_tokens 1) to each served model: vLLM's
prefix cache (on in the lab) then holds the prompts for every run alike, where otherwise the first run
(npufleet at c=1) alone met them first. Without it, two of that run's 32 requests took ~450 ms in each of
two lab runs (TTFT p99 475-563 ms against vllm's 25-40 ms); with it, none (p99 46 against 50 ms). Which
first-time cost of the server's that was (the cache, or a first pass through new shapes) is not isolated.

Each run's bench.json (the normalized schema both backends write) is kept under the output folder's
runs/ with the two prompt files; the script prints a table of each tool's TTFT, TPOT and ITL (median and
p99), request and output-token throughput, prompt and output tokens per request, with the difference per
metric, and writes it as JSON (reports/bench/side-by-side/ by default), with the machine it ran on.

What still differs, per metric, with the same requests (each tool's definitions: npufleet's in
plugins/plugin_utils/bench/__init__.py and its bench.md; vllm bench serve 0.32's in
vllm/benchmarks/serve.py and lib/endpoint_request_func.py):

- completed, prompt and output tokens per request: equal by construction. Both count tokens from the
  server's usage chunk (vllm bench serve overwrites its own prompt_len with usage.prompt_tokens, and takes
  usage.completion_tokens), and ignore_eos makes every answer --output-tokens long.
- TTFT. vllm bench serve: from time.perf_counter() just before session.post (so it includes aiohttp's
  connection acquisition and the request's serialization and write) to the moment its coroutine has read
  and json-parsed the first SSE message with any `choices`, for chat vLLM's role-only first chunk (content
  ""), which vLLM sends in the same step as the first token. npufleet: from the write of the request's body
  to the arrival of the first chunk with non-empty content, stamped when the connection received the
  bytes (before the reading coroutine wakes); its own delay before the write is reported apart
  (send_delay_ms). So vllm's TTFT holds the client's own queueing and event-loop lag, npufleet's does not:
  at 16 in flight vllm's median was the higher in each of three lab runs (npufleet / vllm 0.77-0.88).
  At 1 and 4 npufleet's median was the higher (1.06-1.25), which no definition explains: npufleet talks
  to the node's address over the lab's docker bridge from the controller, vllm bench serve to 127.0.0.1
  inside the serving container (host network), so the network path differs (likely cause, not measured
  apart). p99 of 32 requests is about their worst one: a server stall (another engineer's load on the 2
  cores) moves it for either tool.
- TPOT: the same formula per request, (latency - TTFT) / (output tokens - 1), median and p99 over the
  requests; vllm's latency ends at the last chunk with `choices` (the last token; the usage chunk and
  [DONE] not counted), npufleet's E2E at the end of the response (a chunk or two later). Medians within
  about 10% at 1 and 4 in flight; at 16 the sign changed from run to run (0.73 to 1.23): that is the
  server's speed during each tool's turn (noise), not the definitions.
- ITL. vllm bench serve: every gap between two consecutive chunks with `choices`, one sample per chunk,
  whatever tokens it carries; for chat that includes the near-zero gap from the role-only chunk to the
  first token (output tokens samples per request instead of output tokens - 1). npufleet: the gap between
  two content chunks divided by the tokens the later one carries; vLLM sends one token per chunk, so the
  two agree by definition but for the stamping: medians within ~25% (one run at 16: 1.63). npufleet's p99
  was 1.6-5.9x vllm's in every run (mostly 2.5-4x): its stamps are the bytes' arrival over the docker
  bridge, so a chunk held up on the way (the busy cores) shows as one long gap, where vllm's
  coroutine-side stamps on loopback are taken as it works through its backlog and spread the delay over
  several gaps (likely; not measured apart: the report keeps no per-gap samples).
- Request and output-token throughput: completed requests (output tokens) over the run's duration.
  vllm bench serve's duration runs from before its first request task is made to when all have returned
  (its test request before that not counted); npufleet's from the first send to the last response's end
  (its warm-up requests not counted). Within ~11% at 1 and 4 in flight; at 16, 32 requests are two waves
  of about 2 s, so the ratio swung from run to run (1.39, 1.01, 0.82): noise of the shared 2 cores (both
  clients run on them beside the CPU server, vllm bench serve inside its container), not a definition.

Ratios measured side by side in one run are what to read; absolute figures on this 2-core lab are noisy.

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
import random
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import yaml
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
    """bench.json documents of one tool (one level each) as one document with all their levels (and the
    first one's config: its server and model)."""
    merged = {"runs": [run for document in documents for run in document["runs"]]}
    if documents and documents[0].get("config"):
        merged["config"] = documents[0]["config"]
    return merged


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


def post(server: str, path: str, body: dict, timeout: float = 30) -> dict:
    """POST a JSON body to the vLLM server (its /tokenize, /detokenize), its JSON answer."""
    request = urllib.request.Request(
        server.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **api_key_header()},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def api_key_header() -> dict:
    key = os.environ.get("NPUFLEET_API_KEY", "")
    return {"Authorization": f"Bearer {key}"} if key else {}


def served_models(server: str) -> list[dict]:
    request = urllib.request.Request(server.rstrip("/") + "/v1/models", headers=api_key_header())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def prime(server: str, models: list[str], texts: list[str], endpoint: str, post=post) -> int:
    """Each prompt sent once (max_tokens 1) to each served model, before the measured runs: vLLM's prefix
    cache (on in the lab) then holds them for every run alike, not only for those after the first. Returns
    the requests sent."""
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    for model in models:
        for text in texts:
            body = {"model": model, "max_tokens": 1}
            body.update(
                {"messages": [{"role": "user", "content": text}]} if endpoint == "chat" else {"prompt": text}
            )
            post(server, path, body, timeout=120)
    return len(models) * len(texts)


def served_model(server: str) -> str:
    """The server's base model (its first model without a parent: not a LoRA adapter)."""
    models = served_models(server)
    return next((item["id"] for item in models if not item.get("parent")), models[0]["id"])


class Tokenizer:
    """The server's own tokenizer, through its /tokenize and /detokenize (``post`` is replaceable)."""

    def __init__(self, server: str, model: str, post=post) -> None:
        self.server, self.model, self.post = server, model, post

    def count(self, text: str) -> int:
        return int(self.post(self.server, "/tokenize", {"model": self.model, "prompt": text})["count"])

    def encode(self, text: str) -> list[int]:
        return list(self.post(self.server, "/tokenize", {"model": self.model, "prompt": text})["tokens"])

    def decode(self, tokens: list[int]) -> str:
        return str(self.post(self.server, "/detokenize", {"model": self.model, "tokens": tokens})["prompt"])


def vocab_size(tokenizer: Tokenizer, limit: int = 1 << 22) -> int:
    """One past the largest token id the tokenizer decodes to text (a binary search: ids beyond the
    vocabulary decode to nothing)."""
    low, high = 0, limit  # decode(low) is text; decode(high) is not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if tokenizer.decode([middle]) else (low, middle)
    return high


def token_pool(tokenizer: Tokenizer, generator: random.Random, size: int = 256) -> list[int]:
    """Ordinary token ids to draw prompts from: ids (up to ``size`` of them, drawn with ``generator``)
    whose text alone is printable (no partial UTF-8 byte, no control character), is no special token
    (``<|...|>``, ``<s>``) and tokenizes back to that one id."""
    vocab = vocab_size(tokenizer)
    candidates = list(range(vocab))
    generator.shuffle(candidates)
    pool = []
    for token in candidates:
        if len(pool) >= size:
            break
        text = tokenizer.decode([token])
        special = text.startswith("<") and text.endswith(">") and len(text) > 2
        if not text.strip() or "\ufffd" in text or not text.strip().isprintable() or special:
            continue
        if tokenizer.encode(text) == [token]:
            pool.append(token)
    if len(pool) < 8:
        raise SystemExit(
            f"the server's tokenizer gave only {len(pool)} ordinary tokens to build prompts from"
        )
    return sorted(pool)


def random_prompts(tokenizer: Tokenizer, count: int, tokens: int, seed: int = 0) -> list[str]:
    """``count`` prompts of random tokens (seeded), each exactly ``tokens`` tokens long in the server's
    tokenizer: drawn ids decoded, then trimmed or padded a token at a time until the text tokenizes to
    ``tokens`` (merges across token boundaries change the count)."""
    generator = random.Random(seed)
    pool = token_pool(tokenizer, generator)
    prompts = []
    for index in range(count):
        ids = [generator.choice(pool) for _ in range(tokens)]
        for _ in range(4 * tokens + 50):
            text = tokenizer.decode(ids)
            length = tokenizer.count(text)
            if length == tokens:
                prompts.append(text)
                break
            ids = ids[:-1] if length > tokens else [*ids, generator.choice(pool)]
        else:
            raise SystemExit(f"prompt {index}: no text of exactly {tokens} tokens in the server's tokenizer")
    return prompts


def write_dataset(path: Path, prompts: list[str], output_tokens: int) -> Path:
    """The prompts as npufleet's JSONL dataset (max_tokens and ignore_eos per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"prompt": text, "max_tokens": output_tokens, "ignore_eos": True}) for text in prompts
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_sharegpt(path: Path, prompts: list[str]) -> Path:
    """The same prompts as vllm bench serve's ShareGPT dataset (a .json file: its custom JSONL dataset
    needs pandas, which the lab's vLLM image lacks); the output length is --sharegpt-output-len."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conversations = [{"conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": ""}]}
                     for text in prompts]  # fmt: skip
    path.write_text(json.dumps(conversations), encoding="utf-8")
    return path


def lab_node(inventory: Path) -> tuple[str, str, int]:
    """The inventory's first node: its name (in the lab, its docker container), its address and the
    server's port (serve_port, default 8000)."""
    document = yaml.safe_load(inventory.read_text(encoding="utf-8")) or {}
    root = document.get("all") or {}
    groups = [root, *(root.get("children") or {}).values()]
    for group in groups:
        for name, entry in ((group or {}).get("hosts") or {}).items():
            host = entry or {}
            port = host.get("serve_port") or (root.get("vars") or {}).get("serve_port") or 8000
            return name, str(host.get("npufleet_node_address") or host.get("ansible_host") or name), int(port)
    raise SystemExit(f"inventory {inventory} has no host: pass --server")


def copy_to_node(path: Path, node: str, node_dir: str) -> str:
    """Lab-oriented: copies the dataset into the node's work dir with `docker cp` (the lab's nodes are
    docker containers on this machine), where the serving container sees it under /workspace."""
    folder = f"{node_dir.rstrip('/')}/bench"
    for command in (["docker", "exec", node, "mkdir", "-p", folder],
                    ["docker", "cp", str(path), f"{node}:{folder}/{path.name}"]):  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return f"{folder}/{path.name}"


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
        "--endpoint",
        args.endpoint,
        "--out",
        str(dest),
    ]
    dataset = getattr(args, "datasets", {}).get(tool)
    if dataset:
        load += ["--dataset", str(dataset)]
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


def same_prompts(args: argparse.Namespace, path: Path, console: Console) -> dict:
    """ONE prompt set for both tools (args.datasets, each tool's path of it): --requests random prompts
    (seed 0) of exactly --input-tokens tokens in the server's tokenizer, written as JSONL here (for
    npufleet, on the controller) and copied to the node (for vllm bench serve, in its container)."""
    node, address, port = lab_node(args.inventory)
    server = args.server or args.url or f"http://{address}:{port}"
    model = args.model or served_model(server)
    with console.status(f"{args.requests} prompts of {args.input_tokens} tokens from {server}'s tokenizer"):
        texts = random_prompts(Tokenizer(server, model), args.requests, args.input_tokens, seed=0)
    with console.status("priming the server's prefix cache with them"):
        primed = prime(server, [item["id"] for item in served_models(server)], texts, args.endpoint)
    write_dataset(path, texts, args.output_tokens)
    sharegpt = write_sharegpt(path.with_suffix(".sharegpt.json"), texts)
    on_node = copy_to_node(sharegpt, args.node or node, args.node_dir)
    in_container = args.container_dir.rstrip("/") + on_node[len(args.node_dir.rstrip("/")) :]
    args.datasets = {"npufleet": path, "vllm": in_container}
    return {
        "dataset": str(path),
        "vllm_dataset": str(sharegpt),
        "in_container": in_container,
        "tokenizer": f"{server} /tokenize, /detokenize ({model})",
        "prompts": len(texts),
        "tokens_each": args.input_tokens,
        "primed": f"{primed} requests of max_tokens 1, each prompt to each served model, before the runs",
    }


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
    parser.add_argument("--endpoint", choices=("chat", "completions"), default="chat", help="(default chat)")
    parser.add_argument(
        "--server",
        help="the vLLM server whose /tokenize and /detokenize build the prompts (default: --url, else the"
        " inventory's first node's npufleet_node_address and serve_port)",
    )
    parser.add_argument(
        "--node",
        help="lab-oriented: the docker container of the node the dataset is copied to (docker cp) for vllm"
        " bench serve (default: the inventory's first host, a lab node's container name)",
    )
    parser.add_argument(
        "--node-dir", default="/home/ma-user/ws", help="the node's work dir (default /home/ma-user/ws)"
    )
    parser.add_argument(
        "--container-dir",
        default="/workspace",
        help="where the serving container mounts the node's work dir (default /workspace)",
    )
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
        prompts = same_prompts(args, runs_dir / f"prompts-{stamp}.jsonl", console)
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
            "endpoint": args.endpoint,
            "prompts": None if args.compare else prompts,
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
