# Copyright: npufleet contributors
# Apache License 2.0
"""Lists of numbers written short for messages, on the controller."""

from __future__ import annotations


def number_runs(numbers: list[int]) -> str:
    """``29500, 8000, 60000-60015``: runs of consecutive numbers in one item, in the order given."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
