"""The MindSpeed-LLM filters on real config.json files: the conversion's TP/PP checks, the launch's
shape arguments, and the conversion record (tests/data/megatron/SOURCES.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter.megatron_model import (
    megatron_conversion_problems,
    megatron_conversion_record,
    megatron_load_dir_problems,
    megatron_record_mismatch,
    megatron_shape_args,
    model_shape,
)

ROOT = Path(__file__).resolve().parents[4]
DATA = ROOT / "tests" / "data" / "megatron"
PLAN = ROOT / "plugins" / "filter" / "training_parallel_plan.csv"
CONFIGS = {
    "qwen2-7b": "qwen2-7b-instruct-config.json",
    "llama2-7b": "llama2-7b-chat-hf-config.json",
    "llama3-8b": "llama3-8b-instruct-config.json",
    "glm3-6b": "chatglm3-6b-config.json",
}


def config(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def flat(args: list[list[str]]) -> list[str]:
    return [token for option in args for token in option]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("qwen2-7b",
         "--num-layers 28 --hidden-size 3584 --num-attention-heads 28"
         " --group-query-attention --num-query-groups 4"
         " --ffn-hidden-size 18944 --make-vocab-size-divisible-by 1 --padded-vocab-size 152064"
         " --max-position-embeddings 32768"),
        # As many kv heads as heads: no grouped-query attention. The recorded file is the Hub's first
        # revision, max_position_embeddings 2048 (tests/data/megatron/SOURCES.md).
        ("llama2-7b",
         "--num-layers 32 --hidden-size 4096 --num-attention-heads 32 --ffn-hidden-size 11008"
         " --make-vocab-size-divisible-by 1 --padded-vocab-size 32000 --max-position-embeddings 2048"),
        # The values ModelLink's own Llama 3.1 8B launch script gives by hand (examples/llama3_1).
        ("llama3-8b",
         "--num-layers 32 --hidden-size 4096 --num-attention-heads 32"
         " --group-query-attention --num-query-groups 8"
         " --ffn-hidden-size 14336 --make-vocab-size-divisible-by 1 --padded-vocab-size 128256"
         " --max-position-embeddings 8192"),
        # ChatGLM names them its own way (num_layers, multi_query_group_num, ffn_hidden_size, ...).
        ("glm3-6b",
         "--num-layers 28 --hidden-size 4096 --num-attention-heads 32"
         " --group-query-attention --num-query-groups 2"
         " --ffn-hidden-size 13696 --make-vocab-size-divisible-by 1 --padded-vocab-size 65024"
         " --max-position-embeddings 8192"),
    ],
)  # fmt: skip
def test_shape_args_of_the_manuals_models(model, expected):
    assert " ".join(flat(megatron_shape_args(config(CONFIGS[model])))) == expected


def test_shape_of_the_labs_recorded_tiny_qwen2():
    assert model_shape(config("lab-tiny-qwen2-config.json")) == {
        "layers": 2, "hidden": 128, "heads": 4, "kv_heads": 2, "ffn": 256, "vocab": 326, "max_position": 512,
    }  # fmt: skip


def test_the_manuals_plans_split_its_models():
    """Every row of the manual's plan table for these models divides their heads, kv heads and layers."""
    rows = [row for row in csv.DictReader(PLAN.open(encoding="utf-8")) if row["model"] in CONFIGS]
    assert len(rows) == 16
    for row in rows:
        assert megatron_conversion_problems(config(CONFIGS[row["model"]]), row["tp"], row["pp"]) == [], row


def test_conversion_refused_with_both_numbers_the_variable_and_the_fix():
    tiny = config("lab-tiny-qwen2-config.json")
    assert megatron_conversion_problems(tiny, 3, 1, "/workspace/models/tiny-qwen2/config.json") == [
        "the model's 4 attention heads (/workspace/models/tiny-qwen2/config.json: num_attention_heads) do not"
        " divide by TP=3 (train_tp, or the manual's plan): set train_tp to a divisor of 4 (1, 2, 4)"
    ]
    # 4 heads divide by 4, its 2 kv heads do not: Megatron splits the query groups over TP too.
    assert megatron_conversion_problems(tiny, 4, 1) == [
        "the model's 2 key/value heads (config.json: num_key_value_heads) do not divide by TP=4 (train_tp, or"
        " the manual's plan): set train_tp to a divisor of 2 (1, 2)"
    ]
    assert megatron_conversion_problems(config(CONFIGS["qwen2-7b"]), 8, 3) == [
        "the model's 28 attention heads (config.json: num_attention_heads) do not divide by TP=8 (train_tp,"
        " or the manual's plan): set train_tp to a divisor of 28 (1, 2, 4, 7, 14, 28)",
        "the model's 28 layers (config.json: num_hidden_layers) do not divide by PP=3 (train_pp, or the"
        " manual's plan): set train_pp to a divisor of 28 (1, 2, 4, 7, 14, 28)",
    ]
    assert megatron_conversion_problems(tiny, 2, 2) == []
    assert megatron_conversion_problems(tiny, 0, 1) == ["TP and PP must be at least 1, got TP=0, PP=1"]


def test_configs_megatron_cannot_use_are_refused():
    with pytest.raises(AnsibleFilterError, match=r"lacks the model's layers, heads"):
        model_shape({"hidden_size": 8})
    with pytest.raises(AnsibleFilterError, match="must be a whole number from 1, got '32'"):
        model_shape({"num_hidden_layers": 2, "hidden_size": 8, "num_attention_heads": "32"})
    with pytest.raises(AnsibleFilterError, match="must be a JSON object"):
        model_shape(["not", "a", "config"])
    # A multimodal wrapper: the language model's shape is under text_config.
    wrapped = {"model_type": "qwen2_vl", "text_config": config(CONFIGS["qwen2-7b"])}
    assert model_shape(wrapped)["layers"] == 28
    # ChatGLM without multi-query attention: as many kv heads as heads.
    glm = config(CONFIGS["glm3-6b"]) | {"multi_query_attention": False}
    assert model_shape(glm)["kv_heads"] == 32


def test_conversion_record_and_the_launchs_check():
    wanted = megatron_conversion_record("2", 2, "/workspace/models/tiny-qwen2", "llama2_hf", "megatron")
    assert wanted == {"tp": 2, "pp": 2, "source": "/workspace/models/tiny-qwen2", "loader": "llama2_hf",
                      "saver": "megatron"}  # fmt: skip
    assert megatron_record_mismatch(dict(wanted), wanted, "/w") == []
    (problem,) = megatron_record_mismatch(wanted | {"tp": 4}, wanted, "/workspace/model_weights/mindspeed")
    assert problem.startswith(
        "the weights in /workspace/model_weights/mindspeed were converted with tp 4 (wanted 2): the launch"
    )
    assert "set train_tp/train_pp to the record's" in problem
    (missing,) = megatron_record_mismatch(None, wanted, "/w")
    assert missing.startswith("/w has no conversion record (npufleet-conversion.json)")


# The role's defaults, as the container sees them for a run named "qwen2".
PATHS = {
    "train_mindspeed_load_dir": "/workspace/model_weights/qwen2",
    "train_mindspeed_hf_model_path": "/workspace/models/qwen2-7b",
    "train_mindspeed_tokenizer_path": "/workspace/models/qwen2-7b",
    "train_work_dir": "/workspace",
    "train_mindspeed_dir": "/workspace/llm_train/AscendSpeed/ModelLink",
    "train_mindspeed_data_input": "",
    "train_mindspeed_data_prefix": "/workspace/data/mindspeed/qwen2",
}


@pytest.mark.parametrize(
    ("load_dir", "message"),
    [
        ("/workspace/model_weights/qwen2", None),
        ("/workspace/models", "train_mindspeed_load_dir /workspace/models holds train_mindspeed_hf_model"),
        ("/workspace/", "train_mindspeed_load_dir /workspace/ holds train_mindspeed_hf_model_path"),
        ("/", "train_mindspeed_load_dir '/' must be an absolute folder of its own"),
        ("model_weights", "train_mindspeed_load_dir 'model_weights' must be an absolute folder of its own"),
        ("", "train_mindspeed_load_dir '' must be an absolute folder of its own"),
    ],
)
def test_the_load_dir_the_conversion_replaces_holds_nothing_the_run_reads(load_dir, message):
    problems = megatron_load_dir_problems(PATHS | {"train_mindspeed_load_dir": load_dir})
    if message is None:
        assert problems == []
    else:
        assert problems and problems[0].startswith(message), problems
