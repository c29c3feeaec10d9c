# Copyright: npufleet contributors
# Apache License 2.0
"""Filters for the train role: the manual's parallel plan table, and the checks made on a plan."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The manual's "Recommended parameters and NPU counts per model" table, carried as data.
PLAN_TABLE = Path(__file__).with_name("training_parallel_plan.csv")
_INT_COLUMNS = ("seq_len", "tp", "pp", "mbs", "nodes", "npus_per_node")


@cache
def _rows() -> tuple[dict, ...]:
    with PLAN_TABLE.open(encoding="utf-8", newline="") as handle:
        rows = []
        for row in csv.DictReader(handle):
            rows.append(row | {key: int(row[key]) for key in _INT_COLUMNS})
        return tuple(rows)


def parallel_plan(model: str, strategy: str = "lora", seq_len: int | str = 4096) -> dict:
    """The manual's TP, PP, micro batch size, nodes and NPUs per node for model, strategy and seq_len.

    Model names match case-insensitively (``Qwen2.5-7B`` is ``qwen2.5-7b``).
    """
    wanted_model = str(model).strip().lower()
    wanted_strategy = str(strategy).strip().lower()
    try:
        wanted_len = int(seq_len)
    except (TypeError, ValueError) as error:
        raise AnsibleFilterError(f"parallel_plan: seq_len must be a number, got {seq_len!r}") from error
    models = [row for row in _rows() if row["model"].lower() == wanted_model]
    if not models:
        known = ", ".join(sorted({row["model"] for row in _rows()}))
        raise AnsibleFilterError(
            f"parallel_plan: no plan for model {model!r} in the manual's table; known models: {known}."
            " Set train_tp, train_pp and train_micro_batch_size yourself for other models."
        )
    for row in models:
        if row["strategy"] == wanted_strategy and row["seq_len"] == wanted_len:
            return dict(row)
    offered = ", ".join(f"{row['strategy']}/{row['seq_len']}" for row in models)
    raise AnsibleFilterError(
        f"parallel_plan: the table has no {wanted_strategy!r} plan at sequence length {wanted_len} for"
        f" {model}; it has (strategy/seq_len): {offered}"
    )


def parallel_plan_problems(plan: dict, nodes: int, npus_per_node: int) -> dict:
    """Errors (the plan cannot run) and warnings (it can, not as the manual recommends) for a plan
    on ``nodes`` nodes of ``npus_per_node`` NPUs each."""
    errors, warnings = [], []
    tp, pp = int(plan.get("tp", 1)), int(plan.get("pp", 1))
    world = int(nodes) * int(npus_per_node)
    if tp < 1 or pp < 1:
        errors.append(f"TP and PP must be at least 1, got TP={tp}, PP={pp}")
    elif world % (tp * pp):
        errors.append(
            f"TP x PP = {tp} x {pp} = {tp * pp} does not divide the world size {world}"
            f" ({nodes} node(s) x {npus_per_node} NPUs): change train_tp/train_pp or the NPUs per node"
        )
    wanted_nodes = int(plan.get("nodes", nodes))
    if int(nodes) < wanted_nodes:
        warnings.append(
            f"the manual recommends {wanted_nodes} node(s) for {plan.get('model', 'this model')}"
            f" ({plan.get('strategy', '?')}, seq_len {plan.get('seq_len', '?')}); the inventory has {nodes}"
        )
    wanted_npus = int(plan.get("npus_per_node", npus_per_node))
    if int(npus_per_node) < wanted_npus:
        warnings.append(f"the manual recommends {wanted_npus} NPUs per node; {npus_per_node} are given")
    data_parallel = world // (tp * pp) if not errors else 0
    return {"errors": errors, "warnings": warnings, "world_size": world, "data_parallel": data_parallel}


class FilterModule:
    def filters(self):
        return {"parallel_plan": parallel_plan, "parallel_plan_problems": parallel_plan_problems}
