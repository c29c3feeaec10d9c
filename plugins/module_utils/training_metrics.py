# Copyright: npufleet contributors
# Apache License 2.0
"""Report math for training runs: tokens/s per card and the loss verdict, from LLaMA-Factory's
trainer_log.jsonl or from Megatron/MindSpeed log lines. Pure functions, no Ansible imports."""

from __future__ import annotations

import json
import math
import re


def elapsed_seconds(text: str) -> int:
    """LLaMA-Factory's elapsed_time: str(timedelta) cut to seconds ("0:01:05", "1 day, 2:03:04")."""
    days = 0
    value = str(text).strip()
    match = re.fullmatch(r"(\d+) days?, (.*)", value)
    if match:
        days, value = int(match.group(1)), match.group(2)
    parts = value.split(":")
    if len(parts) != 3 or not all(re.fullmatch(r"\d+(\.\d+)?", part) for part in parts):
        raise ValueError(f"elapsed_time {text!r} is not H:MM:SS")
    hours, minutes, seconds = (float(part) for part in parts)
    return int(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def read_trainer_log(text: str) -> tuple[list[dict], int]:
    """Records of a trainer_log.jsonl, and how many lines could not be read."""
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def middle_window(count: int, fraction: float) -> tuple[int, int]:
    """First and last index of the middle ``fraction`` of ``count`` steps (at least two steps)."""
    if count < 2:
        raise ValueError("need at least two steps")
    skip = int(count * (1 - fraction) / 2)
    first, last = skip, count - 1 - skip
    if last <= first:
        first, last = 0, count - 1
    return first, last


def llamafactory_throughput(
    records: list[dict], cards: int, *, fraction: float = 0.6, min_window_seconds: int = 10
) -> dict:
    """Tokens/s per card by the manual's formula over the middle steps, with LLaMA-Factory's own
    figure beside it.

    The formula is delta total_tokens / delta elapsed_time / cards between the first and last step
    of the middle ``fraction`` of the run. elapsed_time has one-second resolution, so a window of
    fewer than ``min_window_seconds`` seconds would carry up to 1 s of error on each end; then the
    report uses LLaMA-Factory's throughput field (total_tokens / elapsed since start, all ranks)
    of the last step divided by the cards, and says so.
    """
    if cards < 1:
        raise ValueError(f"cards must be at least 1, got {cards}")
    steps = [r for r in records if "total_tokens" in r and "elapsed_time" in r and "current_steps" in r]
    # LLaMA-Factory writes a last summary line without a loss after the last step; keep step lines.
    with_loss = [r for r in steps if "loss" in r]
    steps = with_loss or steps
    if not steps:
        raise ValueError("no step in the log carries total_tokens and elapsed_time")
    own = None
    if "throughput" in steps[-1]:
        own = float(steps[-1]["throughput"]) / cards
    result = {"cards": cards, "steps": len(steps), "llamafactory_tokens_per_second_per_card": own}
    if len(steps) >= 2:
        first, last = middle_window(len(steps), fraction)
        start, end = steps[first], steps[last]
        delta_tokens = int(end["total_tokens"]) - int(start["total_tokens"])
        delta_time = elapsed_seconds(end["elapsed_time"]) - elapsed_seconds(start["elapsed_time"])
        result["window"] = {
            "first_step": start["current_steps"],
            "last_step": end["current_steps"],
            "delta_tokens": delta_tokens,
            "delta_seconds": delta_time,
        }
        if delta_time >= min_window_seconds and delta_tokens > 0:
            result["tokens_per_second_per_card"] = delta_tokens / delta_time / cards
            result["method"] = (
                f"manual's formula: delta total_tokens / delta elapsed_time / {cards} card(s),"
                f" steps {start['current_steps']} to {end['current_steps']} ({delta_time} s)"
            )
            return result
    if own is None:
        raise ValueError("the run is too short for the formula and the log has no throughput field")
    result["tokens_per_second_per_card"] = own
    seconds = result.get("window", {}).get("delta_seconds", 0)
    result["method"] = (
        f"LLaMA-Factory's throughput field / {cards} card(s): the middle window spans {seconds} s,"
        f" under {min_window_seconds} s, too short for one-second elapsed_time"
    )
    return result


_MEGATRON_FIELDS = {
    "iteration": re.compile(r"iteration\s+(\d+)\s*/\s*(\d+)"),
    "ms_per_iteration": re.compile(r"elapsed time per iteration \(ms\):\s*([0-9.]+)"),
    "tflops": re.compile(r"\(TFLOP/s(?:/GPU)?\):\s*([0-9.]+)"),
    "global_batch_size": re.compile(r"global batch size:\s*(\d+)"),
    "loss": re.compile(r"lm loss:\s*([0-9.eE+-]+)"),
}


def read_megatron_log(text: str) -> list[dict]:
    """The iteration lines of a Megatron-LM / MindSpeed-LLM log."""
    records = []
    for line in text.splitlines():
        match = _MEGATRON_FIELDS["iteration"].search(line)
        if not match or "elapsed time per iteration" not in line:
            continue
        record = {"iteration": int(match.group(1)), "total_iterations": int(match.group(2))}
        for key in ("ms_per_iteration", "tflops", "global_batch_size", "loss"):
            found = _MEGATRON_FIELDS[key].search(line)
            if found:
                record[key] = int(found.group(1)) if key == "global_batch_size" else float(found.group(1))
        records.append(record)
    return records


# Megatron's arguments block on rank 0 (megatron/training/arguments.py, _print_args): between
# "---- arguments ----" and "---- end of arguments ----", one "  name ..... value" line each.
_MEGATRON_ARGUMENT = re.compile(r"^\s+([A-Za-z_][A-Za-z0-9_]*) \.+ ?(.*?)\s*$")


def read_megatron_arguments(text: str) -> dict:
    """The arguments a Megatron-LM / MindSpeed-LLM run printed at its start (as strings), or {} where
    the log has no arguments block (a rank other than 0 on another node)."""
    arguments, inside = {}, False
    for line in text.splitlines():
        if "end of arguments" in line:
            inside = False
        elif line.strip().strip("-").strip() == "arguments":
            inside = True
        elif inside:
            match = _MEGATRON_ARGUMENT.match(line)
            if match:
                arguments[match.group(1)] = match.group(2)
    return arguments


def megatron_throughput(
    records: list[dict], *, seq_length: int, world_size: int, global_batch_size: int | None = None,
    fraction: float = 0.6, arguments: dict | None = None,
) -> dict:  # fmt: skip
    """Tokens/s per card = global batch x sequence length / iteration time / world size, averaged
    over the middle iterations (the first ones include compilation and warm-up), beside TFLOP/s.

    The iteration lines carry the time and the global batch, not the sequence length: it is the
    ``seq_length`` the run printed in its arguments block (``arguments``, from read_megatron_arguments)
    when the log has one, else the ``seq_length`` given (the launch's --seq-length)."""
    logged = str((arguments or {}).get("seq_length", ""))
    seq_source = "the launch's --seq-length"
    if logged.isdigit() and int(logged) > 0:
        if int(logged) != int(seq_length):
            seq_source = f"the log's arguments (the launch asked {seq_length})"
        else:
            seq_source = "the log's arguments"
        seq_length = int(logged)
    if world_size < 1 or seq_length < 1:
        raise ValueError("seq_length and world_size must be at least 1")
    timed = [r for r in records if "ms_per_iteration" in r]
    if not timed:
        raise ValueError("no iteration line with 'elapsed time per iteration (ms)'")
    first, last = middle_window(len(timed), fraction) if len(timed) >= 2 else (0, 0)
    window = timed[first : last + 1]
    per_card = []
    for record in window:
        batch = record.get("global_batch_size") or global_batch_size
        if not batch:
            raise ValueError("the log has no global batch size: pass global_batch_size")
        per_card.append(batch * seq_length / (record["ms_per_iteration"] / 1000) / world_size)
    tflops = [r["tflops"] for r in window if "tflops" in r]
    return {
        "cards": world_size,
        "steps": len(timed),
        "tokens_per_second_per_card": sum(per_card) / len(per_card),
        "tflops_per_card": sum(tflops) / len(tflops) if tflops else None,
        "window": {"first_step": window[0]["iteration"], "last_step": window[-1]["iteration"]},
        "seq_length": seq_length,
        "method": (
            f"global batch x seq_length {seq_length} (from {seq_source}) / iteration time / world size"
            f" {world_size}, mean of iterations {window[0]['iteration']} to {window[-1]['iteration']}"
        ),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def judge_loss(losses: list[float], *, min_drop: float = 0.02) -> dict:
    """Whether the loss falls, then flattens (the manual: it keeps falling, then levels off).

    Falling: the mean of the last third is at least ``min_drop`` below the mean of the first tenth
    (three values at least). Flattening: within the last third, the mean of its second half is at
    most an eighth of the whole drop below the mean of its first half.
    """
    values = [float(v) for v in losses]
    if any(math.isnan(v) or math.isinf(v) for v in values):
        return {"verdict": "diverged", "falling": False, "flattening": False,
                "summary": "the loss became NaN or infinite"}  # fmt: skip
    if len(values) < 6:
        return {"verdict": "too short", "falling": False, "flattening": False,
                "summary": f"{len(values)} loss value(s): too few to judge (6 or more needed)"}  # fmt: skip
    head = _mean(values[: max(3, len(values) // 10)])
    last_third = values[len(values) - len(values) // 3 :]
    end = _mean(last_third)
    half = len(last_third) // 2
    late_drop = _mean(last_third[:half]) - _mean(last_third[half:])
    total_drop = head - end
    falling = end <= head * (1 - min_drop)
    flattening = falling and late_drop <= total_drop / 8
    verdict = "converging" if flattening else ("falling" if falling else "not falling")
    percent = total_drop / head * 100 if head else 0.0
    summary = {
        "converging": f"falls {percent:.1f}% (start to last third), then flattens",
        "falling": f"falls {percent:.1f}% and is still falling at the end: more steps may help",
        "not falling": f"changes {-percent:+.1f}% from the start to the last third:"
        " check the learning rate and the data",
    }[verdict]
    return {
        "verdict": verdict,
        "falling": falling,
        "flattening": flattening,
        "first": values[0],
        "last": values[-1],
        "minimum": min(values),
        "start_mean": head,
        "end_mean": end,
        "summary": summary,
    }


def markdown(report: dict) -> str:
    """The report as Markdown."""
    throughput = report["throughput"]
    loss = report["loss"]
    lines = [
        f"# Training report: {report.get('run', 'run')}",
        "",
        "| | |",
        "|---|---|",
    ]
    for key in ("framework", "stage", "finetuning_type", "model", "nodes", "cards", "finished_at"):
        if report.get(key) not in (None, ""):
            lines.append(f"| {key.replace('_', ' ')} | {report[key]} |")
    if "tokens_per_second_per_card" in throughput:
        lines.append(f"| tokens/s per card | **{throughput['tokens_per_second_per_card']:.1f}** |")
    if "as_printed" in throughput:  # finetrainers: tqdm's rate, in its unit
        lines.append(f"| speed (as printed) | **{throughput['as_printed']}** |")
        lines.append(f"| steps/s | {throughput['steps_per_second']:.3g} |")
    if throughput.get("videos_per_second_per_card") is not None:
        lines.append(f"| videos/s per card | {throughput['videos_per_second_per_card']:.3g} |")
    own = throughput.get("llamafactory_tokens_per_second_per_card")
    if own is not None:
        lines.append(f"| LLaMA-Factory's own figure per card | {own:.1f} |")
    if throughput.get("tflops_per_card") is not None:
        lines.append(f"| TFLOP/s per card (as logged) | {throughput['tflops_per_card']:.1f} |")
    lines.append(f"| steps | {throughput['steps']} |")
    lines.append(f"| loss | {loss['verdict']}: {loss['summary']} |")
    if "first" in loss:
        values = f"{loss['first']:.4f} / {loss['last']:.4f} / {loss['minimum']:.4f}"
        lines.append(f"| loss first / last / minimum | {values} |")
    lines += ["", f"Throughput method: {throughput['method']}."]
    if report.get("plot"):
        lines += ["", f"![loss]({report['plot']})"]
    return "\n".join(lines) + "\n"
