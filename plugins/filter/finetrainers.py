# Copyright: npufleet contributors
# Apache License 2.0
"""The train role's rules for finetrainers (CogVideoX): those of the manual's scripts at its revision
(training/prepare_dataset.py's check_height/check_width/check_frames, training/args.py's choices),
checked before anything is changed instead of by argparse after the model has loaded."""

from __future__ import annotations

import posixpath
import re

OPTIMIZERS = ("adam", "adamw", "prodigy", "came")
MIXED_PRECISIONS = ("no", "fp16", "bf16")
CACHE_DTYPES = ("fp32", "fp16", "bf16")
# The lr_scheduler names diffusers.optimization.get_scheduler knows.
LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "piecewise_constant",
)  # fmt: skip
SIZE_BUCKETS = (
    "train_finetrainers_height_buckets", "train_finetrainers_width_buckets",
    "train_finetrainers_train_height_buckets", "train_finetrainers_train_width_buckets",
)  # fmt: skip
FRAME_BUCKETS = ("train_finetrainers_frame_buckets", "train_finetrainers_train_frame_buckets")
COUNTS = (
    "train_finetrainers_max_train_steps", "train_finetrainers_batch_size",
    "train_finetrainers_gradient_accumulation_steps", "train_finetrainers_checkpointing_steps",
    "train_finetrainers_cache_processes", "train_finetrainers_cache_batch_size",
    "train_finetrainers_max_num_frames",
    "train_finetrainers_max_sequence_length", "train_finetrainers_target_fps",
)  # fmt: skip
ZERO_OR_MORE = (
    "train_finetrainers_lr_warmup_steps",
    "train_finetrainers_dataloader_workers",
    "train_finetrainers_seed",
)
CONTAINER_PATHS = ("train_finetrainers_dir", "train_finetrainers_data_root", "train_finetrainers_cache_dir")
# The script removes the cache dir before it encodes again: none of these may be it or lie in it.
KEPT_FROM_THE_CACHE = (
    "train_model_path", "train_finetrainers_data_root", "train_finetrainers_dir", "train_work_dir",
    "train_output_dir",
)  # fmt: skip


def _cache_overlaps(settings: dict) -> list[str]:
    cache = settings.get("train_finetrainers_cache_dir")
    if not cache or not str(cache).startswith("/"):
        return []
    cache = posixpath.normpath(str(cache))
    found = []
    for name in KEPT_FROM_THE_CACHE:
        value = settings.get(name)
        if not value or not str(value).startswith("/"):
            continue
        kept = posixpath.normpath(str(value))
        if kept == cache or kept.startswith(cache.rstrip("/") + "/"):
            given = settings["train_finetrainers_cache_dir"]
            found.append(
                f"train_finetrainers_cache_dir {given} holds {name} {value}, and the data cache is"
                " removed before it is encoded again: give the cache a folder of its own"
            )
    return found


def _whole(value) -> int | None:
    """A whole number given as an int or its digits, else None (a bool is not a number here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        return int(value)
    return None


def _buckets(name: str, value, multiple: int, frames: bool) -> list[str]:
    if not isinstance(value, list) or not value:
        return [f"{name} {value!r} must be a list of at least one whole number"]
    problems = []
    for item in value:
        number = _whole(item)
        if number is None or number < 1:
            problems.append(f"{name}: {item!r} is not a whole number from 1")
        elif frames and number % 4 not in (0, 1):
            problems.append(
                f"{name}: {number} frames is not of the form 4k or 4k+1 (prepare_dataset.py's check_frames);"
                f" use {number - number % 4 + 1}"
            )
        elif not frames and number % multiple:
            problems.append(
                f"{name}: {number} is not divisible by {multiple} (prepare_dataset.py's check); use"
                f" {number - number % multiple or multiple}"
            )
    return problems


def finetrainers_problems(settings: dict, play_hosts: list | None = None) -> list[str]:
    """Every rule ``settings`` (the role's train_finetrainers_* variables, train_model_path and
    train_work_dir) break, each naming the variable, its value, what is allowed and the fix."""
    problems = []
    hosts = list(play_hosts or [])
    caption, video = (
        settings.get("train_finetrainers_caption_column"),
        settings.get("train_finetrainers_video_column"),
    )
    if not settings.get("train_model_path"):
        problems.append(
            "finetrainers needs train_model_path, the CogVideoX model dir in the container"
            " (diffusers' layout, model_index.json)"
        )
    if not settings.get("train_finetrainers_data_root"):
        problems.append(
            "finetrainers needs train_finetrainers_data_root, the dataset dir in the container (the videos,"
            f" {caption} and {video})"
        )
    if len(hosts) > 1:
        problems.append(
            f"finetrainers runs on one node (the manual trains CogVideoX on one); the play has {len(hosts)}"
            f" ({', '.join(map(str, hosts))}): limit it to one node"
        )
    for name in CONTAINER_PATHS:
        value = settings.get(name)
        if value and not str(value).startswith("/"):
            problems.append(f"{name} {value} is not an absolute path in the container")
    problems += _cache_overlaps(settings)
    for name in COUNTS:
        number = _whole(settings.get(name))
        if number is None or number < 1:
            problems.append(f"{name} {settings.get(name)!r} must be a whole number from 1")
    for name in ZERO_OR_MORE:
        number = _whole(settings.get(name))
        if number is None or number < 0:
            problems.append(f"{name} {settings.get(name)!r} must be a whole number from 0")
    for name in SIZE_BUCKETS:
        problems += _buckets(name, settings.get(name), 16, frames=False)
    for name in FRAME_BUCKETS:
        problems += _buckets(name, settings.get(name), 4, frames=True)
    caption, video = (
        settings.get("train_finetrainers_caption_column"),
        settings.get("train_finetrainers_video_column"),
    )
    for name, value in (
        ("train_finetrainers_caption_column", caption),
        ("train_finetrainers_video_column", video),
    ):
        if not isinstance(value, str) or not value or "/" in value:
            problems.append(f"{name} {value!r} must be a file name in train_finetrainers_data_root (no /)")
    if caption and caption == video:
        problems.append(
            f"train_finetrainers_caption_column and train_finetrainers_video_column are both {caption}: the"
            " captions and the video names are two files"
        )
    for name, allowed in (
        ("train_finetrainers_optimizer", OPTIMIZERS),
        ("train_finetrainers_mixed_precision", MIXED_PRECISIONS),
        ("train_finetrainers_cache_dtype", CACHE_DTYPES),
        ("train_finetrainers_lr_scheduler", LR_SCHEDULERS),
    ):
        value = settings.get(name)
        if str(value) not in allowed:
            problems.append(f"{name} {value} is not one of {', '.join(allowed)}")
    try:
        rate = float(settings.get("train_finetrainers_learning_rate"))
    except (TypeError, ValueError):
        rate = -1.0
    if not rate > 0:
        problems.append(
            f"train_finetrainers_learning_rate {settings.get('train_finetrainers_learning_rate')!r}"
            " must be a number above 0"
        )
    gpu_ids = str(settings.get("train_finetrainers_gpu_ids"))
    if not re.fullmatch(r"[0-9]+(,[0-9]+)*", gpu_ids):
        problems.append(
            f"train_finetrainers_gpu_ids {gpu_ids} is not a list of device numbers such as 0 or 0,1"
        )
    patches = settings.get("train_finetrainers_patches") or []
    if not isinstance(patches, list):
        problems.append(f"train_finetrainers_patches {patches!r} must be a list of patch files on the node")
        patches = []
    problems += [
        f"train_finetrainers_patches: {patch} is not an absolute path on the node" for patch in patches
        if not str(patch).startswith("/")
    ]  # fmt: skip
    work_dir = str(settings.get("train_work_dir") or "").rstrip("/")
    checkout = str(settings.get("train_finetrainers_dir") or "")
    if patches and not (checkout + "/").startswith(work_dir + "/"):
        problems.append(
            f"train_finetrainers_dir {checkout} must be under train_work_dir {work_dir} for"
            " train_finetrainers_patches (they are applied on the node, in the work dir)"
        )
    extra = settings.get("train_finetrainers_args")
    if not isinstance(extra, list):
        problems.append(f"train_finetrainers_args {extra!r} must be a list of arguments")
    return problems


class FilterModule:
    def filters(self):
        return {"finetrainers_problems": finetrainers_problems}
