"""The manual's parallel plan table and its checks (the parallel_plan filter)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter import parallel_plan

from tests.fixtures import SEED_TABLES

MANUAL_TABLE = SEED_TABLES / "training_parallel_plan.csv"


def table_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


ROWS = table_rows(parallel_plan.PLAN_TABLE)
# The manual's table asks TP 8 x PP 2 = 16 NPUs of one 8-NPU node here: the role refuses it as written.
ROWS_THAT_CANNOT_RUN = {("baichuan2-13b", "full", "8192")}


def test_the_project_carries_the_manuals_table_unchanged():
    assert table_rows(MANUAL_TABLE) == ROWS
    assert len(ROWS) == 124


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['model']}-{r['strategy']}-{r['seq_len']}" for r in ROWS])
def test_parallel_plan_returns_each_row_of_the_table(row):
    plan = parallel_plan.parallel_plan(row["model"].upper(), row["strategy"], row["seq_len"])
    assert plan == row | {
        key: int(row[key]) for key in ("seq_len", "tp", "pp", "mbs", "nodes", "npus_per_node")
    }
    problems = parallel_plan.parallel_plan_problems(plan, plan["nodes"], plan["npus_per_node"])
    assert problems["warnings"] == []
    if (row["model"], row["strategy"], row["seq_len"]) in ROWS_THAT_CANNOT_RUN:
        assert problems["errors"] == [
            "TP x PP = 8 x 2 = 16 does not divide the world size 8 (1 node(s) x 8 NPUs):"
            " change train_tp/train_pp or the NPUs per node"
        ]
    else:
        # Every other plan of the manual runs on the nodes and NPUs it recommends.
        assert problems["errors"] == []
        assert problems["data_parallel"] * plan["tp"] * plan["pp"] == plan["nodes"] * plan["npus_per_node"]


def test_known_rows_written_out():
    assert parallel_plan.parallel_plan("llama2-70b", "full", 8192) | {} == {
        "family": "llama2", "model": "llama2-70b", "strategy": "full", "seq_len": 8192,
        "tp": 8, "pp": 8, "mbs": 1, "nodes": 8, "npus_per_node": 8,
    }  # fmt: skip
    glm = parallel_plan.parallel_plan("glm4-9b", "lora", "4096")
    assert (glm["tp"], glm["pp"], glm["mbs"], glm["nodes"], glm["npus_per_node"]) == (1, 2, 1, 1, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("gpt-5", "lora", 4096),
            "no plan for model 'gpt-5' in the manual's table; known models: baichuan2-13b",
        ),
        (("mistral-7b", "lora", 8192), "has no 'lora' plan at sequence length 8192 for mistral-7b; it has"),
        (("mixtral-8x7b", "lora", 4096), "it has (strategy/seq_len): full/4096, full/8192"),
        (("qwen2-7b", "lora", "long"), "seq_len must be a number, got 'long'"),
    ],
)
def test_parallel_plan_refuses_what_the_table_lacks(args, message):
    with pytest.raises(AnsibleFilterError) as error:
        parallel_plan.parallel_plan(*args)
    assert message in str(error.value)


def test_bad_plans_are_refused_and_small_inventories_warned():
    plan = parallel_plan.parallel_plan("qwen2-72b", "full", 4096)  # TP 8, PP 4, 4 nodes of 8
    problems = parallel_plan.parallel_plan_problems(plan, 2, 8)
    assert problems["errors"] == [
        "TP x PP = 8 x 4 = 32 does not divide the world size 16 (2 node(s) x 8 NPUs):"
        " change train_tp/train_pp or the NPUs per node"
    ]
    assert problems["warnings"] == [
        "the manual recommends 4 node(s) for qwen2-72b (full, seq_len 4096); the inventory has 2"
    ]
    odd = parallel_plan.parallel_plan_problems({"tp": 4, "pp": 2}, 1, 4)
    assert odd["errors"] == [
        "TP x PP = 4 x 2 = 8 does not divide the world size 4 (1 node(s) x 4 NPUs):"
        " change train_tp/train_pp or the NPUs per node"
    ]
    assert parallel_plan.parallel_plan_problems({"tp": 3, "pp": 1}, 2, 8)["errors"]
    assert parallel_plan.parallel_plan_problems({"tp": 0, "pp": 1}, 1, 8)["errors"] == [
        "TP and PP must be at least 1, got TP=0, PP=1"
    ]
    few = parallel_plan.parallel_plan_problems(
        parallel_plan.parallel_plan("baichuan2-13b", "lora", 8192), 1, 8
    )
    assert few["errors"] == []
    assert few["warnings"] == [
        "the manual recommends 2 node(s) for baichuan2-13b (lora, seq_len 8192); the inventory has 1"
    ]
    assert parallel_plan.parallel_plan_problems({"tp": 1, "pp": 1, "npus_per_node": 8}, 1, 4)["warnings"] == [
        "the manual recommends 8 NPUs per node; 4 are given"
    ]
