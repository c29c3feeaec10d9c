#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: training_report
short_description: Judge a training run by tokens/s per card and its loss curve, and write the report
description:
  - Reads a training log fetched from the node that writes it (LLaMA-Factory's C(trainer_log.jsonl)
    from rank 0, or a Megatron-LM / MindSpeed-LLM log from the last rank) and computes tokens/s per
    card and a verdict on the loss, then writes C(report.json), C(report.md) and C(loss.png) into
    O(dest). The same log gives the same report, and then nothing is rewritten.
  - "LLaMA-Factory: tokens/s per card by the manual's formula: delta total_tokens / delta elapsed_time
    / cards over the middle steps. elapsed_time has one-second resolution, so when the middle window
    spans fewer than O(min_window_seconds) seconds, LLaMA-Factory's own throughput field divided by the
    cards is used instead; the report says which. LLaMA-Factory's own figure is always shown beside it."
  - "Megatron / MindSpeed: global batch x sequence length / iteration time / world size, averaged over
    the middle iterations, beside the TFLOP/s per card the log prints."
  - "The loss is judged by thirds of the curve: falling when the last third's mean is at least 2% below
    the first's; converging when it also flattens (the late drop is at most half the early one)."
  - Runs where the log is, normally the controller (with C(delegate_to) localhost); needs matplotlib there.
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  log:
    description: Path of the log file.
    type: path
    required: true
  format:
    description: V(llamafactory) for C(trainer_log.jsonl), V(megatron) for Megatron/MindSpeed iteration lines.
    type: str
    choices: [llamafactory, megatron]
    default: llamafactory
  cards:
    description: Number of cards (NPUs, or processes in the lab) the run used in all.
    type: int
    required: true
  seq_length:
    description: Sequence length (V(megatron) only).
    type: int
  global_batch_size:
    description: Global batch size when the log does not print it (V(megatron) only).
    type: int
  min_window_seconds:
    description: Shortest middle window, in seconds, for the manual's formula.
    type: int
    default: 10
  dest:
    description: Folder to write the report into (created).
    type: path
    required: true
  info:
    description: What to show about the run in the report (run, framework, stage, model, nodes, ...).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: In check mode the report is computed and returned but nothing is written.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Write the report of a LLaMA-Factory run on 2 nodes of 8 NPUs
  training_report:
    log: reports/train/20261128T030000Z/trainer_log.jsonl
    cards: 16
    dest: reports/train/20261128T030000Z
    info:
      run: sft-lora-qwen2-7b
      nodes: 2
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
report:
  description: The report (also in report.json).
  returned: success
  type: dict
  contains:
    throughput:
      description: tokens_per_second_per_card, method, window, steps, cards, and LLaMA-Factory's own figure.
      type: dict
    loss:
      description: verdict (converging, falling, not falling, diverged, too short), summary, first, last.
      type: dict
files:
  description: Paths of report.json, report.md and loss.png.
  returned: success
  type: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.training_metrics import (
    judge_loss,
    llamafactory_throughput,
    markdown,
    megatron_throughput,
    read_megatron_log,
    read_trainer_log,
)


def plot(path: str, steps: list, losses: list, title: str) -> None:
    import matplotlib  # noqa: PLC0415 -- only this module needs it, on the controller

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axes = pyplot.subplots(figsize=(7, 4), dpi=100)
    axes.plot(steps, losses, marker=".", linewidth=1)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "log": {"type": "path", "required": True},
            "format": {"type": "str", "default": "llamafactory", "choices": ["llamafactory", "megatron"]},
            "cards": {"type": "int", "required": True},
            "seq_length": {"type": "int"},
            "global_batch_size": {"type": "int"},
            "min_window_seconds": {"type": "int", "default": 10},
            "dest": {"type": "path", "required": True},
            "info": {"type": "dict", "default": {}},
        },
        required_if=[("format", "megatron", ("seq_length",))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        with open(params["log"], encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        module.fail_json(msg=f"cannot read the training log {params['log']}: {error.strerror}")
    try:
        if params["format"] == "llamafactory":
            records, unreadable = read_trainer_log(text)
            throughput = llamafactory_throughput(
                records, params["cards"], min_window_seconds=params["min_window_seconds"]
            )
            points = [
                (r["current_steps"], r["loss"]) for r in records if "loss" in r and "current_steps" in r
            ]
        else:
            records, unreadable = read_megatron_log(text), 0
            throughput = megatron_throughput(
                records,
                seq_length=params["seq_length"],
                world_size=params["cards"],
                global_batch_size=params["global_batch_size"],
            )
            points = [(r["iteration"], r["loss"]) for r in records if "loss" in r]
    except (ValueError, KeyError, TypeError) as error:
        module.fail_json(msg=f"cannot compute the report from {params['log']}: {error}")
    report = dict(params["info"])
    report |= {
        "cards": params["cards"],
        "log": os.path.basename(params["log"]),
        "unreadable_lines": unreadable,
        "throughput": throughput,
        "loss": judge_loss([loss for _, loss in points]),
        "loss_points": len(points),
    }
    files = {name: os.path.join(params["dest"], name) for name in ("report.json", "report.md", "loss.png")}
    if module.check_mode:
        module.exit_json(changed=False, report=report, files=files)
    if points:
        report["plot"] = "loss.png"
    try:
        with open(files["report.json"], encoding="utf-8") as handle:
            unchanged = json.load(handle) == report and os.path.exists(files["report.md"])
    except (OSError, ValueError):
        unchanged = False
    # The same log gives the same report: nothing is rewritten (a re-run of the play changes nothing).
    if unchanged:
        module.exit_json(changed=False, report=report, files=files)
    os.makedirs(params["dest"], exist_ok=True)
    if points:
        try:
            plot(files["loss.png"], [s for s, _ in points], [v for _, v in points], report.get("run", "loss"))
        except ImportError:
            del report["plot"]
            module.warn("matplotlib is not installed on the controller: no loss.png (pip install matplotlib)")
    with open(files["report.json"], "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    with open(files["report.md"], "w", encoding="utf-8") as handle:
        handle.write(markdown(report))
    module.exit_json(changed=True, report=report, files=files)


if __name__ == "__main__":
    main()
