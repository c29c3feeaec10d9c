"""The benchmark report: JSON, Markdown, and PNG (latency distributions; throughput by level)."""

from __future__ import annotations

import json
from pathlib import Path

from . import __doc__ as DEFINITIONS


def _cell(stats: dict, key: str) -> str:
    return f"{stats[key]:.1f}" if stats.get("count") else "-"


def markdown(data: dict) -> str:
    config = data["config"]
    mode = "concurrency" if config["concurrencies"] else f"request rate ({config['arrival']}, req/s)"
    lines = [
        f"# Benchmark: {config['model']} at {config['url']}",
        "",
        f"{config['endpoint']} endpoint, {'streaming' if config['stream'] else 'not streaming'},"
        f" {config['requests_per_level']} requests per level,"
        f" {data['warmup']['requests']} warm-up request(s).",
        "",
        f"| {mode} | ok / failed | req/s | output tok/s | TTFT p50 / p99 ms | TPOT p50 / p99 ms |"
        " ITL p50 / p99 ms | E2E p50 / p99 ms | goodput req/s | achieved rate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in data["runs"]:
        s = run["summary"]
        goodput = f"{s['goodput']:.2f}" if s.get("goodput") is not None else "-"
        achieved = f"{s['achieved_rate']:.2f}" if run["mode"] == "rate" and s.get("achieved_rate") else "-"
        lines.append(
            f"| {run['level']} | {s['completed']} / {s['failed']} | {s['request_throughput']:.2f} |"
            f" {s['output_token_throughput']:.1f} |"
            f" {_cell(s['ttft_ms'], 'p50')} / {_cell(s['ttft_ms'], 'p99')} |"
            f" {_cell(s['tpot_ms'], 'p50')} / {_cell(s['tpot_ms'], 'p99')} |"
            f" {_cell(s['itl_ms'], 'p50')} / {_cell(s['itl_ms'], 'p99')} |"
            f" {_cell(s['e2e_ms'], 'p50')} / {_cell(s['e2e_ms'], 'p99')} | {goodput} | {achieved} |"
        )
    errors = [(run["level"], run["summary"]["errors"]) for run in data["runs"] if run["summary"]["errors"]]
    if errors:
        lines += ["", "Errors: " + "; ".join(f"{level}: {kinds}" for level, kinds in errors)]
    if config.get("slo"):
        lines += ["", f"Goodput counts requests meeting {config['slo']}."]
    lines += [
        "",
        "Definitions:",
        "",
        *[line.strip() for line in DEFINITIONS.split("\n\n", 2)[2].splitlines()],
    ]
    return "\n".join(lines).rstrip() + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415 -- only the report needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, (latency, throughput) = pyplot.subplots(1, 2, figsize=(11, 4), dpi=100)
    labels = [str(run["level"]) for run in data["runs"]]
    latency.boxplot([run["samples"]["ttft_ms"] or [0] for run in data["runs"]], tick_labels=labels)
    latency.set_yscale("log")
    latency.set_title("TTFT distribution")
    latency.set_ylabel("ms")
    mode = "concurrency" if data["config"]["concurrencies"] else "request rate (req/s)"
    latency.set_xlabel(mode)
    levels = [run["level"] for run in data["runs"]]
    throughput.plot(levels, [run["summary"]["output_token_throughput"] for run in data["runs"]], marker="o")
    throughput.set_title("output token throughput")
    throughput.set_xlabel(mode)
    throughput.set_ylabel("tokens/s")
    throughput.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def write(data: dict, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"json": folder / "bench.json", "markdown": folder / "bench.md", "png": folder / "bench.png"}
    files["json"].write_text(json.dumps(data, indent=2), encoding="utf-8")
    files["markdown"].write_text(markdown(data), encoding="utf-8")
    plot(data, files["png"])
    return files
