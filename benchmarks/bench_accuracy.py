"""How accurate npufleet's load generator is, against the synthetic server whose timing is known.

For concurrency 1, 16 and 64: measured minus true TTFT and TPOT per request (median and p99, ms),
where "true" is what the server recorded (time from receiving the request to writing its first
content chunk; spacing of its chunks). For request rates rising until one client process cannot
keep up: achieved minus requested rate, and the highest rate held within 1%. Prints a table and
writes JSON to benchmarks/results/. Loopback only. Say which machine a figure came from.

    .venv/bin/python benchmarks/bench_accuracy.py
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from npufleet.bench.client import Prompt, send
from npufleet.bench.load import at_concurrency, at_rate
from npufleet.bench.metrics import percentile

TTFT_MS, ITL_MS, OUTPUT_TOKENS = 50.0, 10.0, 16
RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, ttft_ms: float, itl_ms: float) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "npufleet.bench.synthetic", "--port", str(port), "--ttft-ms", str(ttft_ms),
         "--itl-ms", str(itl_ms)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.05)
    raise SystemExit("the synthetic server did not start")


async def truth(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(f"{url}/truth") as response:
        return await response.json()


async def accuracy_at(url: str, concurrency: int, requests: int) -> dict:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        prompts = [Prompt("a b c d", OUTPUT_TOKENS)] * requests
        run = await at_concurrency(lambda p: send(session, url, "synthetic", p), prompts, concurrency)
        recorded = await truth(session, url)
    ttft_error, tpot_error = [], []
    for result in run.results:
        server = recorded.get(result.request_id)
        if not (result.ok and server and server["chunks"]):
            continue
        true_ttft = server["first_content"] - server["arrived"]
        true_tpot = (server["chunks"][-1] - server["chunks"][0]) / (len(server["chunks"]) - 1)
        ttft_error.append((result.ttft - true_ttft) * 1000)
        tpot_error.append((result.tpot - true_tpot) * 1000)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "ok": sum(1 for result in run.results if result.ok),
        "ttft_error_ms": {"p50": percentile(ttft_error, 50), "p99": percentile(ttft_error, 99)},
        "tpot_error_ms": {"p50": percentile(tpot_error, 50), "p99": percentile(tpot_error, 99)},
    }


async def rate_at(url: str, rate: float, seconds: float) -> dict:
    requests = max(20, int(rate * seconds))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        prompts = [Prompt("a b", 4)] * requests
        run = await at_rate(lambda p: send(session, url, "synthetic", p), prompts, rate, kind="constant")
    achieved = run.achieved_rate() or 0.0
    late = [actual - planned for actual, planned in zip(run.send_times, run.planned, strict=True)]
    return {
        "requested": rate,
        "achieved": achieved,
        "error_percent": (achieved - rate) / rate * 100,
        "late_p99_ms": percentile([value * 1000 for value in late], 99),
        "ok": sum(1 for result in run.results if result.ok),
        "requests": requests,
    }


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, TTFT_MS, ITL_MS)
    try:
        accuracy = [asyncio.run(accuracy_at(url, level, max(64, level * 4))) for level in (1, 16, 64)]
        rates = []
        for rate in (10, 25, 50, 100, 200, 400, 800, 1600):
            rates.append(asyncio.run(rate_at(url, rate, seconds=5)))
            if abs(rates[-1]["error_percent"]) > 5:
                break
    finally:
        server.terminate()
        server.wait(timeout=10)
    held = max((row["requested"] for row in rates if abs(row["error_percent"]) <= 1), default=None)
    machine = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(f"npufleet load generator vs synthetic server (TTFT {TTFT_MS} ms, ITL {ITL_MS} ms), {machine}")
    print(
        f"{'concurrency':>11} {'ok':>5} {'TTFT err p50':>13} {'p99':>8} {'TPOT err p50':>13} {'p99':>8}  (ms)"
    )
    for row in accuracy:
        print(f"{row['concurrency']:>11} {row['ok']:>5} {row['ttft_error_ms']['p50']:>13.3f}"
              f" {row['ttft_error_ms']['p99']:>8.3f} {row['tpot_error_ms']['p50']:>13.3f}"
              f" {row['tpot_error_ms']['p99']:>8.3f}")  # fmt: skip
    print(f"{'requested/s':>11} {'achieved/s':>11} {'error %':>8} {'late p99 ms':>12}")
    for row in rates:
        late = f"{row['late_p99_ms']:>12.2f}"
        print(f"{row['requested']:>11} {row['achieved']:>11.2f} {row['error_percent']:>8.2f} {late}")
    print(f"highest rate held within 1%: {held} requests/s (one client process)")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_accuracy-{stamp}.json"
    out.write_text(json.dumps({"machine": machine, "accuracy": accuracy, "rates": rates, "held_rate": held,
                               "server": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS}}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
