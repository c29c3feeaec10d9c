"""Summaries of a load run: percentiles of TTFT, TPOT, ITL and E2E, throughputs, goodput, errors."""

from __future__ import annotations

import math
from collections import Counter

from .load import LoadRun

PERCENTILES = (50, 90, 99)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def describe(values: list[float]) -> dict:
    """Count, mean and percentiles (p50, p90, p99), in the values' unit."""
    if not values:
        return {"count": 0}
    return {"count": len(values), "mean": sum(values) / len(values)} | {
        f"p{q}": percentile(values, q) for q in PERCENTILES
    }


def summarize(run: LoadRun, slo: dict | None = None) -> dict:
    """The report's numbers (times in milliseconds). ``slo`` may give ttft_ms, tpot_ms and e2e_ms:
    goodput counts the requests meeting all of them."""
    ok = [result for result in run.results if result.ok]
    failed = [result for result in run.results if not result.ok]
    duration = run.duration
    output_tokens = sum(result.output_tokens for result in ok)
    prompt_tokens = sum(result.prompt_tokens or 0 for result in ok)
    slo = slo or {}

    def meets(result) -> bool:
        checks = [
            ("ttft_ms", result.ttft),
            ("tpot_ms", result.tpot),
            ("e2e_ms", result.e2e),
        ]
        return all(value is not None and value * 1000 <= slo[key] for key, value in checks if key in slo)

    good = sum(1 for result in ok if meets(result))
    return {
        "requests": len(run.results),
        "completed": len(ok),
        "failed": len(failed),
        "errors": dict(Counter(result.error_kind or "other" for result in failed)),
        "error_examples": sorted({result.error for result in failed})[:5],
        "duration_s": duration,
        "request_throughput": len(ok) / duration if duration > 0 else math.nan,
        "output_token_throughput": output_tokens / duration if duration > 0 else math.nan,
        "total_token_throughput": (output_tokens + prompt_tokens) / duration if duration > 0 else math.nan,
        "goodput": good / duration if duration > 0 and slo else None,
        "slo": slo,
        "output_tokens": output_tokens,
        "empty_responses": sum(1 for result in ok if result.ttft is None),
        "prompt_tokens": prompt_tokens,
        "usage_from_server": all(result.usage_from_server for result in ok) if ok else False,
        "ttft_ms": describe([result.ttft * 1000 for result in ok if result.ttft is not None]),
        "tpot_ms": describe([result.tpot * 1000 for result in ok if result.tpot is not None]),
        "itl_ms": describe([value * 1000 for result in ok for value in result.itl()]),
        "e2e_ms": describe([result.e2e * 1000 for result in ok]),
        # The client's own delay before each request left it: large values mean the client, not
        # the server, was the bottleneck.
        "send_delay_ms": describe([result.send_delay * 1000 for result in run.results]),
        "achieved_rate": run.achieved_rate(),
    }
