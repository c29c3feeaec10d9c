# Copyright: npufleet contributors
# Apache License 2.0
"""Report math for finetrainers' CogVideoX training scripts (the manual's revision 80d1150,
training/cogvideox_text_to_video_sft.py): they print no log lines per step, only tqdm's "Steps"
bar, redrawn with carriage returns, whose postfix carries the step's logs (loss, lr, gradient
norms) and whose rate is tqdm's own, in the unit tqdm picks (s/it under one step a second, else
it/s). Pure functions, no Ansible imports."""

from __future__ import annotations

import re

# Steps:  25%|██▌       | 3/12 [00:00<00:02,  3.30it/s, loss=1.86, lr=9.21e-5]
_BAR = re.compile(
    r"Steps:\s*\d+%\|[^|]*\|\s*(?P<step>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[0-9:]+)<(?P<remaining>[0-9:?]+),\s*(?P<rate>[0-9.]+|\?)(?P<unit>s/it|it/s)"
    r"(?:,\s*(?P<postfix>[^\]]*))?\]"
)
_TOTAL_BATCH = re.compile(r"Total train batch size \(w\. parallel, distributed & accumulation\) = (\d+)")
_POSTFIX_ITEM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([^,]*)")


def tqdm_seconds(text: str) -> int:
    """tqdm's elapsed time: MM:SS or H:MM:SS (D days, H:MM:SS is not printed by these scripts)."""
    parts = [int(part) for part in text.split(":")]
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def _postfix(text: str | None) -> dict:
    values = {}
    for key, value in _POSTFIX_ITEM.findall(text or ""):
        try:
            values[key] = float(value.strip())
        except ValueError:
            values[key] = value.strip()
    return values


def read_finetrainers_log(text: str) -> dict:
    """The steps of a finetrainers run from its "Steps" bar, and the total train batch size it printed.

    tqdm draws step N once when the step ends (update, with the previous step's postfix) and again
    when the script sets the new postfix; the bar is drawn once more when it closes, after the
    model is saved, with the rate over the whole run, saving included. So a step's time and rate are
    the first drawing of it, and its logs are the last postfix drawn at it.
    """
    steps: dict[int, dict] = {}
    for segment in re.split(r"[\r\n]", text):
        for match in _BAR.finditer(segment):
            step = int(match.group("step"))
            if step == 0:
                continue
            record = steps.setdefault(
                step,
                {
                    "step": step,
                    "total_steps": int(match.group("total")),
                    "elapsed_seconds": tqdm_seconds(match.group("elapsed")),
                },
            )
            if match.group("rate") != "?" and "rate" not in record:
                record["rate"] = float(match.group("rate"))
                record["rate_unit"] = match.group("unit")
            values = _postfix(match.group("postfix"))
            if values:
                record["logs"] = values
    batch = _TOTAL_BATCH.findall(text)
    return {
        "steps": [steps[step] for step in sorted(steps)],
        "total_train_batch_size": int(batch[-1]) if batch else None,
    }


def losses(records: list[dict]) -> list[tuple[int, float]]:
    """(step, loss) of every step whose logs carry a number as loss."""
    return [
        (record["step"], record["logs"]["loss"])
        for record in records
        if isinstance(record.get("logs", {}).get("loss"), float)
    ]


def finetrainers_throughput(parsed: dict, cards: int) -> dict:
    """Throughput in the units the script prints: tqdm's rate at the last step (s/it or it/s, as
    drawn), the same as steps per second, and videos per second per card (steps/s x the total train
    batch size the script printed / cards)."""
    if cards < 1:
        raise ValueError(f"cards must be at least 1, got {cards}")
    timed = [record for record in parsed["steps"] if "rate" in record]
    if not timed:
        raise ValueError("no 'Steps' bar with a rate (s/it or it/s) in the log")
    last = timed[-1]
    steps_per_second = last["rate"] if last["rate_unit"] == "it/s" else 1 / last["rate"]
    result = {
        "cards": cards,
        "steps": len(parsed["steps"]),
        "total_steps": last["total_steps"],
        "as_printed": f"{last['rate']:g}{last['rate_unit']}",
        "steps_per_second": steps_per_second,
        "seconds_per_step": 1 / steps_per_second,
        "elapsed_seconds": parsed["steps"][-1]["elapsed_seconds"],
        "method": (
            f"tqdm's rate at step {last['step']} of {last['total_steps']} as the script printed it"
            f" ({last['rate']:g}{last['rate_unit']})"
        ),
    }
    batch = parsed.get("total_train_batch_size")
    if batch:
        result["total_train_batch_size"] = batch
        result["videos_per_second_per_card"] = steps_per_second * batch / cards
        result["method"] += (
            f"; videos/s per card = steps/s x total train batch size {batch} / {cards} card(s)"
        )
    return result
