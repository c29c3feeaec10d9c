# Copyright: npufleet contributors
# Apache License 2.0
"""The controller side of npufleet.ascend.training_report: read a fetched training log, compute the
report with module_utils/training_metrics, and write report.json, report.md and loss.png when they
differ from what is there (or only say what would change, in check mode)."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field

from ansible_collections.npufleet.ascend.plugins.module_utils.finetrainers_metrics import (
    finetrainers_throughput,
    losses,
    read_finetrainers_log,
)
from ansible_collections.npufleet.ascend.plugins.module_utils.training_metrics import (
    judge_loss,
    llamafactory_throughput,
    markdown,
    megatron_throughput,
    read_megatron_arguments,
    read_megatron_log,
    read_trainer_log,
)

FILES = ("report.json", "report.md", "loss.png")


class ReportError(Exception):
    """The report cannot be made; the message says why."""


@dataclass
class Outcome:
    """What a call did (or would do)."""

    report: dict
    files: dict
    changed: bool = False
    written: list[str] = field(default_factory=list)
    diff: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def result(self) -> dict:
        result = {
            "changed": self.changed,
            "report": self.report,
            "files": self.files,
            "written": self.written,
        }
        if self.diff:
            result["diff"] = self.diff
        if self.warnings:
            result["warnings"] = self.warnings
        return result


def compute(params: dict) -> tuple[dict, list[tuple]]:
    """The report and the (step, loss) points of the log named in ``params``."""
    try:
        with open(params["log"], encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ReportError(f"cannot read the training log {params['log']}: {error.strerror}") from error
    try:
        if params["format"] == "llamafactory":
            records, unreadable = read_trainer_log(text)
            throughput = llamafactory_throughput(
                records, params["cards"], min_window_seconds=params["min_window_seconds"]
            )
            points = [
                (r["current_steps"], r["loss"]) for r in records if "loss" in r and "current_steps" in r
            ]
        elif params["format"] == "finetrainers":
            parsed, unreadable = read_finetrainers_log(text), 0
            throughput = finetrainers_throughput(parsed, params["cards"])
            points = losses(parsed["steps"])
        else:
            records, unreadable = read_megatron_log(text), 0
            throughput = megatron_throughput(
                records,
                seq_length=params["seq_length"],
                world_size=params["cards"],
                global_batch_size=params["global_batch_size"],
                arguments=read_megatron_arguments(text),
            )
            points = [(r["iteration"], r["loss"]) for r in records if "loss" in r]
    except (ValueError, KeyError, TypeError) as error:
        raise ReportError(f"cannot compute the report from {params['log']}: {error}") from error
    report = dict(params["info"]) | {
        "cards": params["cards"],
        "log": os.path.basename(params["log"]),
        "unreadable_lines": unreadable,
        "throughput": throughput,
        "loss": judge_loss([loss for _, loss in points]),
        "loss_points": len(points),
    }
    return report, points


def plot(path: str, points: list[tuple], title: str) -> None:
    import matplotlib  # noqa: PLC0415 -- loaded only when there is a curve to draw

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axes = pyplot.subplots(figsize=(7, 4), dpi=100)
    axes.plot([step for step, _ in points], [loss for _, loss in points], marker=".", linewidth=1)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def write_report(params: dict, *, check_mode: bool = False, diff: bool = False) -> Outcome:
    """Compute the report and write the files that differ (none in check mode).

    The same log gives the same report, so a re-run rewrites nothing and reports no change. The plot
    is drawn when the report changes or loss.png is missing; it is not compared byte by byte.
    """
    report, points = compute(params)
    dest = params["dest"]
    files = {name: os.path.join(dest, name) for name in FILES}
    outcome = Outcome(report=report, files=files)
    can_plot = bool(points) and importlib.util.find_spec("matplotlib") is not None
    if points and not can_plot:
        outcome.warnings.append(
            "matplotlib is not installed on the controller: no loss.png (pip install matplotlib)"
        )
    if can_plot:
        report["plot"] = "loss.png"
    texts = {"report.json": json.dumps(report, indent=2), "report.md": markdown(report)}
    changed = {name: text for name, text in texts.items() if _read(files[name]) != text}
    replot = can_plot and (bool(changed) or not os.path.exists(files["loss.png"]))
    outcome.changed = bool(changed) or replot
    outcome.written = sorted([*changed, *(["loss.png"] if replot else [])])
    if diff:
        outcome.diff = [
            {"before": _read(files[name]) or "", "after": text, "before_header": files[name],
             "after_header": files[name]}
            for name, text in changed.items()
        ]  # fmt: skip
    if check_mode or not outcome.changed:
        return outcome
    os.makedirs(dest, exist_ok=True)
    if replot:
        plot(files["loss.png"], points, report.get("run", "loss"))
    for name, text in changed.items():
        with open(files[name], "w", encoding="utf-8") as handle:
            handle.write(text)
    return outcome
