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
  - "finetrainers (CogVideoX): the rate of tqdm's C(Steps) bar at the last step, as printed (C(s/it) or
    C(it/s)), as steps/s, and videos/s per card (steps/s x the total train batch size the script
    prints / cards); the loss curve from the bar's postfix."
  - "The loss is judged by thirds of the curve: falling when the last third's mean is at least 2% below
    the first's; converging when it also flattens (the late drop is at most half the early one)."
  - Runs on the controller, through the collection's action plugin of the same name, where the
    fetched log is; no C(delegate_to) is needed. matplotlib draws C(loss.png) there (without it the
    report has no plot, and says so in a warning).
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  log:
    description: Path of the log file.
    type: path
    required: true
  format:
    description:
      - V(llamafactory) for C(trainer_log.jsonl), V(megatron) for Megatron/MindSpeed iteration lines,
        V(finetrainers) for the output of finetrainers' CogVideoX scripts (tqdm's C(Steps) bar).
    type: str
    choices: [llamafactory, megatron, finetrainers]
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
  action:
    support: full
    description: The work is done by an action plugin on the controller; nothing runs on the node.
  check_mode:
    support: full
    description:
      - The report is computed and returned, and RV(changed) and RV(written) say which files would be
        written; nothing is written.
  diff_mode:
    support: full
    description: Shows C(report.json) and C(report.md) before and after (not the PNG plot).
  platform:
    support: full
    platforms: controller
"""

EXAMPLES = r"""
- name: Write the report of a LLaMA-Factory run on 2 nodes of 8 NPUs
  npufleet.ascend.training_report:
    log: reports/train/20261128T030000Z/trainer_log.jsonl
    cards: 16
    dest: reports/train/20261128T030000Z
    info:
      run: sft-lora-qwen2-7b
      nodes: 2
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
written:
  description: The files this call wrote (in check mode, would write); empty when the report is unchanged.
  returned: success
  type: list
  elements: str
  sample: [loss.png, report.json, report.md]
diff:
  description: C(report.json) and C(report.md), before and after, for those that change (diff mode).
  returned: when a file changes and diff mode is on
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

# Shared with the action plugin (plugins/action/training_report.py), which validates the task's
# arguments with it on the controller.
SPEC = dict(
    argument_spec={
        "log": {"type": "path", "required": True},
        "format": {
            "type": "str",
            "default": "llamafactory",
            "choices": ["llamafactory", "megatron", "finetrainers"],
        },
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


def main() -> None:
    # Ansible runs the action plugin of this name instead; this only answers a direct call.
    module = AnsibleModule(**SPEC)
    module.fail_json(
        msg="training_report runs on the controller through the npufleet.ascend collection's action plugin:"
        " call it as npufleet.ascend.training_report from a play"
    )


if __name__ == "__main__":
    main()
