"""The train role's finetrainers rules (filter finetrainers_problems), on the role's own defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.npufleet.ascend.plugins.filter.finetrainers import finetrainers_problems

ROLE = Path(__file__).resolve().parents[4] / "roles" / "train"


def settings(**changes) -> dict:
    """The role's defaults for finetrainers (the manual's), with a model, a dataset and a work dir."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values = {name: value for name, value in defaults.items() if name.startswith("train_finetrainers_")}
    values |= {
        "train_model_path": "/home/ma-user/work/models/CogVideoX1.5-5B",
        "train_work_dir": "/home/ma-user/work",
        "train_finetrainers_dir": "/home/ma-user/work/finetrainers",
        "train_finetrainers_data_root": "/home/ma-user/work/data/Tom-and-Jerry-VideoGeneration-Dataset",
        "train_finetrainers_cache_dir": "/home/ma-user/work/data/preprocessed-Tom-dataset",
    }
    return values | changes


def test_the_manuals_settings_pass():
    assert finetrainers_problems(settings(), ["node1"]) == []


def test_every_default_has_a_spec_entry_and_the_same_default():
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"][
        "options"
    ]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    for name, value in defaults.items():
        if name.startswith("train_finetrainers_"):
            assert name in spec, name
            if "{{" not in str(value):
                assert spec[name].get("default") == value, name


@pytest.mark.parametrize(
    ("changes", "hosts", "message"),
    [
        ({"train_model_path": ""}, ["n1"], "finetrainers needs train_model_path"),
        ({"train_finetrainers_data_root": ""}, ["n1"], "finetrainers needs train_finetrainers_data_root"),
        (
            {},
            ["n1", "n2"],
            "finetrainers runs on one node (the manual trains CogVideoX on one); the play has 2 (n1, n2)",
        ),
        (
            {"train_finetrainers_data_root": "data/tom"},
            ["n1"],
            "train_finetrainers_data_root data/tom is not an absolute",
        ),
        (
            {"train_finetrainers_height_buckets": [480, 500]},
            ["n1"],
            "train_finetrainers_height_buckets: 500 is not divisible by 16 (prepare_dataset.py's check);"
            " use 496",
        ),
        (
            {"train_finetrainers_frame_buckets": [50]},
            ["n1"],
            "train_finetrainers_frame_buckets: 50 frames is not of the form 4k or 4k+1",
        ),
        (
            {"train_finetrainers_train_width_buckets": []},
            ["n1"],
            "train_finetrainers_train_width_buckets [] must be a list of at least one whole number",
        ),
        (
            {"train_finetrainers_train_frame_buckets": ["many"]},
            ["n1"],
            "train_finetrainers_train_frame_buckets: 'many' is not a whole number from 1",
        ),
        (
            {"train_finetrainers_max_train_steps": 0},
            ["n1"],
            "train_finetrainers_max_train_steps 0 must be a whole number from 1",
        ),
        (
            {"train_finetrainers_lr_warmup_steps": -1},
            ["n1"],
            "train_finetrainers_lr_warmup_steps -1 must be a whole number from 0",
        ),
        (
            {"train_finetrainers_optimizer": "sgd"},
            ["n1"],
            "train_finetrainers_optimizer sgd is not one of adam, adamw, prodigy, came",
        ),
        (
            {"train_finetrainers_mixed_precision": "fp8"},
            ["n1"],
            "train_finetrainers_mixed_precision fp8 is not one of no, fp16, bf16",
        ),
        (
            {"train_finetrainers_lr_scheduler": "cosine_restarts"},
            ["n1"],
            "train_finetrainers_lr_scheduler cosine_restarts is not one of",
        ),
        (
            {"train_finetrainers_cache_dtype": "int8"},
            ["n1"],
            "train_finetrainers_cache_dtype int8 is not one of fp32, fp16, bf16",
        ),
        (
            {"train_finetrainers_learning_rate": 0},
            ["n1"],
            "train_finetrainers_learning_rate 0 must be a number above 0",
        ),
        (
            {"train_finetrainers_gpu_ids": "0;1"},
            ["n1"],
            "train_finetrainers_gpu_ids 0;1 is not a list of device numbers",
        ),
        (
            {"train_finetrainers_caption_column": "data/captions.txt"},
            ["n1"],
            "train_finetrainers_caption_column 'data/captions.txt' must be a file name in",
        ),
        (
            {"train_finetrainers_video_column": "captions.txt"},
            ["n1"],
            "train_finetrainers_caption_column and train_finetrainers_video_column are both captions.txt",
        ),
        (
            {"train_finetrainers_patches": ["modify.patch"]},
            ["n1"],
            "train_finetrainers_patches: modify.patch is not an absolute path on the node",
        ),
        (
            {
                "train_finetrainers_patches": ["/srv/modify.patch"],
                "train_finetrainers_dir": "/home/ma-user/finetrainers",
            },
            ["n1"],
            "train_finetrainers_dir /home/ma-user/finetrainers must be under train_work_dir",
        ),
        (
            {"train_finetrainers_cache_dir": "/home/ma-user/work/data"},
            ["n1"],
            "train_finetrainers_cache_dir /home/ma-user/work/data holds train_finetrainers_data_root"
            " /home/ma-user/work/data/Tom-and-Jerry-VideoGeneration-Dataset, and the data cache is removed",
        ),
        (
            {"train_finetrainers_cache_dir": "/home/ma-user/work/models/CogVideoX1.5-5B/"},
            ["n1"],
            "train_finetrainers_cache_dir /home/ma-user/work/models/CogVideoX1.5-5B/ holds train_model_path",
        ),
        (
            {"train_finetrainers_args": "--pin_memory"},
            ["n1"],
            "train_finetrainers_args '--pin_memory' must be a list",
        ),
    ],
)
def test_each_rule_names_the_variable_its_value_and_the_fix(changes, hosts, message):
    problems = finetrainers_problems(settings(**changes), hosts)
    assert len(problems) == 1, problems
    assert problems[0].startswith(message)


def test_numbers_given_as_strings_count_as_numbers():
    changes = {"train_finetrainers_max_train_steps": "10", "train_finetrainers_frame_buckets": ["5"]}
    assert finetrainers_problems(settings(**changes), ["n1"]) == []
