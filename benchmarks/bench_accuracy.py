"""How accurate npufleet's load generator is, against the synthetic server whose timing is known,
side by side with guidellm (from PyPI) against the same server.

For concurrency 1, 16 and 64: measured minus true TTFT and TPOT per request (median and p99, ms),
where "true" is what the server recorded (from the request's last byte arriving to its first
content chunk handed to the kernel; the mean spacing of its content chunks). For constant request
rates rising until a client falls behind: achieved minus requested rate (achieved: sends after the
first / time from first to last send, the same formula for both tools), and the highest rate held
within 1% from the bottom of the ladder. Prints a table and writes JSON to benchmarks/results/.
Loopback only. Say which machine a figure came from.

The server gets the last CPU and the clients (ours, then guidellm with all its worker processes)
the others, so that neither client's error includes fighting the server for a core; on a real
fleet the server is on another machine.

guidellm runs from its own virtual environment (it pins its own torch and transformers) with a
local tokenizer (no hub access); without one the script measures npufleet alone and says so:

    python3 -m venv /tmp/guidellm && /tmp/guidellm/bin/pip install guidellm==0.8.1
    .venv/bin/python benchmarks/bench_accuracy.py --guidellm /tmp/guidellm/bin/guidellm \\
        --tokenizer ~/.cache/npufleet/lab/shared/assets/<hash>/models/tiny-qwen2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import machine, write

from npufleet import collection

# The load generator is the collection's controller-side code: import it as Ansible names it.
collection.importable()
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench import run_loop
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.client import (
    Prompt,
    new_session,
    send,
)
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.load import at_concurrency, at_rate
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.metrics import percentile

SYNTHETIC = "ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.synthetic"

TTFT_MS, ITL_MS, OUTPUT_TOKENS, PROMPT_TOKENS = 50.0, 10.0, 16, 4
LEVELS = (1, 16, 64)
RATES = (10, 25, 50, 100, 200, 400, 800, 1600, 3200)
RATE_SECONDS = 5.0
RATE_REQUEST_TIMEOUT = 30.0
LAB_TOKENIZERS = Path.home() / ".cache/npufleet/lab/shared/assets"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server's CPUs, clients' CPUs): the last CPU for the server, the rest for the clients."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def pinned(command: list[str], cpus: set[int] | None) -> list[str]:
    """The command under taskset on ``cpus`` (its later threads and child processes too)."""
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command] if cpus else command


def start_server(port: int, cpus: set[int] | None) -> subprocess.Popen:
    command = [sys.executable, "-m", SYNTHETIC, "--port", str(port),
               "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)]  # fmt: skip
    # The server's interpreter finds the collection where this one does.
    path = os.pathsep.join(filter(None, [str(collection.collections_dir()), os.environ.get("PYTHONPATH")]))
    server = subprocess.Popen(pinned(command, cpus), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=os.environ | {"PYTHONPATH": path})  # fmt: skip
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.05)
    raise SystemExit("the synthetic server did not start")


def fetch_truth(url: str) -> dict:
    async def get() -> dict:
        async with new_session() as session, session.get(f"{url}/truth") as response:
            return await response.json()

    return run_loop(get())


def true_timing(record: dict) -> tuple[float, float] | None:
    """(true TTFT, true TPOT) in seconds from the server's record of one request."""
    chunks = record.get("chunks") or []
    if len(chunks) < 2:
        return None
    return record["first_content"] - record["arrived"], (chunks[-1] - chunks[0]) / (len(chunks) - 1)


def error_summary(pairs: list[tuple[float, float, float | None]], truth: dict) -> dict:
    """pairs: (request id, measured TTFT s, measured TPOT s); errors against the truth, in ms."""
    ttft, tpot = [], []
    for request_id, measured_ttft, measured_tpot in pairs:
        timing = true_timing(truth.get(request_id) or {})
        if timing is None or measured_ttft is None:
            continue
        ttft.append((measured_ttft - timing[0]) * 1000)
        if measured_tpot is not None:
            tpot.append((measured_tpot - timing[1]) * 1000)
    return {
        "matched": len(ttft),
        "ttft_error_ms": {"p50": percentile(ttft, 50), "p99": percentile(ttft, 99)},
        "tpot_error_ms": {"p50": percentile(tpot, 50), "p99": percentile(tpot, 99)},
    }


def held_rate(rows: list[dict]) -> float | None:
    """The highest requested rate held within 1%, counting up the ladder until the first miss."""
    held = None
    for row in rows:
        if abs(row["error_percent"]) > 1:
            break
        held = row["requested"]
    return held


def rate_row(requested: float, send_times: list[float], ok: int) -> dict:
    span = max(send_times) - min(send_times)
    achieved = (len(send_times) - 1) / span if span > 0 else 0.0
    error = (achieved - requested) / requested * 100
    return {"requested": requested, "achieved": achieved, "error_percent": error,
            "requests": len(send_times), "ok": ok}  # fmt: skip


# --- npufleet ---------------------------------------------------------------------------------


def npufleet_accuracy(url: str, concurrency: int, requests: int) -> tuple[dict, float]:
    async def go():
        async with new_session() as session:
            prompts = [Prompt("a b c d", OUTPUT_TOKENS)] * requests
            return await at_concurrency(lambda p: send(session, url, "synthetic", p), prompts, concurrency)

    run = run_loop(go())
    pairs = [(result.request_id, result.ttft, result.tpot) for result in run.results if result.ok]
    send_delays = [result.send_delay * 1000 for result in run.results]
    return {"pairs": pairs, "ok": len(pairs)}, percentile(send_delays, 50)


def npufleet_rate(url: str, rate: float) -> dict:
    requests = max(20, int(rate * RATE_SECONDS))

    async def go():
        async with new_session() as session:
            prompts = [Prompt("a b", 4)] * requests

            # A short per-request limit: past the rate one process holds, the overloaded rung ends
            # soon instead of waiting out the default 600 s for stragglers.
            def sender(prompt: Prompt):
                return send(session, url, "synthetic", prompt, timeout=RATE_REQUEST_TIMEOUT)

            return await at_rate(sender, prompts, rate, kind="constant")

    run = run_loop(go())
    return rate_row(rate, run.send_times, sum(1 for result in run.results if result.ok))


# --- guidellm ---------------------------------------------------------------------------------


class Guidellm:
    def __init__(self, executable: str, tokenizer: Path, url: str, cpus: set[int] | None) -> None:
        self.executable, self.tokenizer, self.url, self.cpus = executable, tokenizer, url, cpus
        self.workdir = Path(tempfile.mkdtemp(prefix="guidellm-"))

    def version(self) -> str:
        done = subprocess.run([self.executable, "--version"], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    def run(self, profile: dict, requests: int, output_tokens: int) -> list[dict]:
        """One guidellm benchmark (scenario file, JSON output); returns its per-request records."""
        output = self.workdir / f"out-{time.monotonic_ns()}.json"
        scenario = {"spec": {
            "backend": {"kind": "openai_http", "target": self.url, "model": "synthetic",
                        "request_format": "/v1/chat/completions"},
            "profile": profile,
            "tokenizer": {"kind": "huggingface_auto", "model": str(self.tokenizer)},
            "data": [{"kind": "synthetic_text", "prompt_tokens": PROMPT_TOKENS,
                      "output_tokens": output_tokens}],
            "constraints": [{"kind": "max_requests", "count": requests}],
            "outputs": [{"kind": "json", "path": str(output)}],
        }}  # fmt: skip
        path = self.workdir / "scenario.json"
        path.write_text(json.dumps(scenario))
        environment = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        command = [self.executable, "run", "-c", str(path), "--disable-console"]
        done = subprocess.run(pinned(command, self.cpus), cwd=self.workdir, env=environment,
                              capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
        if done.returncode != 0 or not output.exists():
            tail = (done.stdout + done.stderr)[-3000:]
            raise SystemExit(f"guidellm failed (exit {done.returncode}):\n{tail}")
        benchmark = json.loads(output.read_text())["benchmarks"][0]
        records = benchmark["requests"]
        return [
            record | {"_status": status}
            for status in ("successful", "errored", "incomplete")
            for record in records.get(status) or []
        ]

    def accuracy(self, concurrency: int, requests: int) -> dict:
        records = self.run({"kind": "concurrent", "streams": concurrency}, requests, OUTPUT_TOKENS)
        ok = [record for record in records if record["_status"] == "successful"]

        def seconds(value):
            return None if value is None else value / 1000

        # guidellm's inter_token_latency_ms is (latency - TTFT) / (output tokens - 1): the issue's
        # TPOT. Its own time_per_output_token_ms is latency / output tokens (TTFT included), a
        # different quantity; its error is reported apart.
        pairs = [(r["response_id"], seconds(r["time_to_first_token_ms"]),
                  seconds(r["inter_token_latency_ms"])) for r in ok]  # fmt: skip
        own = [(r["response_id"], seconds(r["time_to_first_token_ms"]),
                seconds(r["time_per_output_token_ms"])) for r in ok]  # fmt: skip
        return {"pairs": pairs, "own_tpot_pairs": own, "ok": len(ok)}

    def rate(self, rate: float) -> dict:
        requests = max(20, int(rate * RATE_SECONDS))
        records = self.run({"kind": "constant", "rate": rate}, requests, 4)
        timings = [record["info"]["timings"] for record in records]
        starts = [timing["request_start"] for timing in timings if timing["request_start"]]
        return rate_row(rate, starts, sum(1 for r in records if r["_status"] == "successful"))


def find_tokenizer(given: str | None) -> Path | None:
    if given:
        return Path(given).expanduser()
    found = sorted(LAB_TOKENIZERS.glob("*/models/tiny-qwen2/tokenizer.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guidellm", default=os.environ.get("GUIDELLM") or shutil.which("guidellm"),
                        help="guidellm executable (from its own venv)")  # fmt: skip
    parser.add_argument("--tokenizer", help="local tokenizer directory for guidellm's synthetic prompts")
    args = parser.parse_args()
    info = machine()  # before pinning: the machine's CPUs, not the clients' share
    server_cpus, client_cpus = split_cpus()
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tokenizer = find_tokenizer(args.tokenizer)
    guidellm = None
    if args.guidellm and tokenizer and (tokenizer / "tokenizer.json").exists():
        guidellm = Guidellm(args.guidellm, tokenizer, url, client_cpus)
    elif args.guidellm:
        print(f"guidellm skipped: no local tokenizer ({tokenizer}); give --tokenizer DIR")
    else:
        print("guidellm skipped: not found; give --guidellm PATH (see this script's docstring)")
    server = start_server(port, server_cpus)
    tools = {"npufleet": None} | ({"guidellm": guidellm} if guidellm else {})
    accuracy: list[dict] = []
    rates: dict[str, list[dict]] = {name: [] for name in tools}
    try:
        for level in LEVELS:
            requests = max(64, level * 4)
            for name, tool in tools.items():
                if tool is None:
                    measured, send_delay = npufleet_accuracy(url, level, requests)
                else:
                    measured, send_delay = tool.accuracy(level, requests), None
                truth = fetch_truth(url)
                row = {"tool": name, "concurrency": level, "requests": requests, "ok": measured["ok"]}
                row |= error_summary(measured["pairs"], truth)
                if "own_tpot_pairs" in measured:
                    own = error_summary(measured["own_tpot_pairs"], truth)
                    row["own_tpot_error_ms"] = own["tpot_error_ms"]
                if send_delay is not None:
                    row["send_delay_ms_p50"] = send_delay
                accuracy.append(row)
        for name, tool in tools.items():
            for rate in RATES:
                rates[name].append(npufleet_rate(url, rate) if tool is None else tool.rate(rate))
                if abs(rates[name][-1]["error_percent"]) > 5:
                    break
    finally:
        server.terminate()
        server.wait(timeout=10)
    held = {name: held_rate(rows) for name, rows in rates.items()}
    info |= {"server_cpus": sorted(server_cpus or []), "client_cpus": sorted(client_cpus or [])}
    if guidellm:
        info["guidellm"] = guidellm.version()
    print(
        f"load generators vs synthetic server (TTFT {TTFT_MS} ms, ITL {ITL_MS} ms, "
        f"{OUTPUT_TOKENS} tokens); {info}"
    )
    print(
        f"{'tool':<9} {'conc.':>5} {'ok':>4} {'TTFT err p50':>12} {'p99':>8} {'TPOT err p50':>12}"
        f" {'p99':>8}  (ms)"
    )
    for row in accuracy:
        print(f"{row['tool']:<9} {row['concurrency']:>5} {row['ok']:>4} {row['ttft_error_ms']['p50']:>12.3f}"
              f" {row['ttft_error_ms']['p99']:>8.3f} {row['tpot_error_ms']['p50']:>12.3f}"
              f" {row['tpot_error_ms']['p99']:>8.3f}")  # fmt: skip
    for row in accuracy:
        if "own_tpot_error_ms" in row:
            own = row["own_tpot_error_ms"]
            print(f"  guidellm's own TPOT field (latency / tokens) at {row['concurrency']}: error p50 "
                  f"{own['p50']:.3f} ms, p99 {own['p99']:.3f} ms")  # fmt: skip
    print(f"{'tool':<9} {'requested/s':>11} {'achieved/s':>11} {'error %':>8} {'ok':>6}")
    for name, rows in rates.items():
        for row in rows:
            print(f"{name:<9} {row['requested']:>11} {row['achieved']:>11.2f} {row['error_percent']:>8.2f}"
                  f" {row['ok']:>6}")  # fmt: skip
    for name, value in held.items():
        print(f"highest rate held within 1%: {name} {value} requests/s")
    median_ok = all(abs(row["ttft_error_ms"]["p50"]) <= 1 for row in accuracy if row["tool"] == "npufleet")
    verdict = "met" if median_ok else "NOT met"
    print(f"target median TTFT error within 1 ms (npufleet, every concurrency): {verdict}")
    if held.get("guidellm"):
        # The ladder stops at its top rung: "held up to" is at least that rung.
        rate_ok = (held["npufleet"] or 0) >= 2 * held["guidellm"]
        print(f"target rate within 1% up to 2x guidellm's ({2 * held['guidellm']} requests/s): "
              f"{'met' if rate_ok else 'NOT met'}")  # fmt: skip
    server_timing = {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "output_tokens": OUTPUT_TOKENS}
    rows = [{"accuracy": accuracy, "rates": rates, "held_rate": held, "server": server_timing}]
    path = write("bench_accuracy", info, rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
