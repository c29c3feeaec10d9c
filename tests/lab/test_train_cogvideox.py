"""The train role's CogVideoX path (train_framework: finetrainers) on a one-node lab, in the lab's
CogVideoX image (the training image with diffusers, wandb, decord, torchvision) and with its tiny
random-weight CogVideoX and clips.

finetrainers' code is cloned from GitHub in the manual, which the lab's build machine cannot reach:
without it the run goes up to the launch (the script rendered on the node, the image and the model
checked in the container, the run refused naming the missing checkout). With NPUFLEET_FINETRAINERS_SOURCE
set to a checkout of finetrainers at the manual's revision on the controller, the whole run goes
through llm_launch on the CPU (data cache, 12 steps) and the report reads its loss and speed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from npufleet.api import run_playbook
from npufleet.lab import cogvideox_image, lifecycle, workload_image
from tests.lab.conftest import LAB, node_exec

pytestmark = pytest.mark.lab
COGVIDEO_LAB = f"{LAB}-cogvideo"
NODE = f"{COGVIDEO_LAB}-node1"
CONTAINER = "npufleet-workload"
REVISION = "80d1150a0e233a1b2b98dd0367c06276989d049c"
SOURCE = os.environ.get("NPUFLEET_FINETRAINERS_SOURCE", "")


def on_nodes(path: Path) -> str:
    return workload_image.SHARED_MOUNT + "/" + str(path.relative_to(workload_image.shared_dir()))


@pytest.fixture(scope="module")
def cogvideo_lab(tmp_path_factory):
    """One full node whose NPU container runs the CogVideoX image, and the variables of a tiny run."""
    inventory = tmp_path_factory.mktemp("cogvideo-lab") / "hosts.yml"
    lifecycle.up(COGVIDEO_LAB, nodes=1, npus=8, inventory=inventory, flavour="full", with_registry=False,
                 with_training=True)  # fmt: skip
    try:
        client = docker.from_env()
        tag = cogvideox_image.build_image(client)
        assets = cogvideox_image.assets(client, tag)
        name, _, version = tag.partition(":")
        stages = {
            "image_name": name,
            "image_tag": version,
            "image_archive_path": on_nodes(workload_image.archive(client, tag)),
            # Only the training container: no vLLM here.
            "image_inference_name": "",
            "npu_inference_container_name": "",
        }
        for playbook in ("node.yml", "image.yml", "container.yml"):
            result = run_playbook(playbook, inventory, extravars=stages)
            assert result.succeeded, f"{playbook}: {result.first_failure()}"
        run = stages | {
            "train_framework": "finetrainers",
            "train_name": "cogvideox-sft",
            "train_assets": [
                {
                    "name": "tiny CogVideoX",
                    "path": on_nodes(assets["model"]),
                    "dest": "models/tiny-cogvideox",
                },
                {"name": "clips", "path": on_nodes(assets["dataset"]), "dest": "data/tiny-videos"},
            ],
            "train_model_path": "/workspace/models/tiny-cogvideox",
            "train_finetrainers_data_root": "/workspace/data/tiny-videos",
            # 5 frames of 32x32 make 2 latent frames of 4x4; the cache's loader counts them as 8 frames.
            "train_finetrainers_height_buckets": [32],
            "train_finetrainers_width_buckets": [32],
            "train_finetrainers_frame_buckets": [5],
            "train_finetrainers_max_num_frames": 5,
            "train_finetrainers_max_sequence_length": 16,
            "train_finetrainers_train_height_buckets": [32],
            "train_finetrainers_train_width_buckets": [32],
            "train_finetrainers_train_frame_buckets": [8],
            "train_finetrainers_max_train_steps": 12,
            "train_finetrainers_gradient_accumulation_steps": 1,
            "train_finetrainers_lr_warmup_steps": 1,
            "train_finetrainers_dataloader_workers": 0,
            "train_poll_seconds": 10,
            "train_stall_timeout": 300,
            "train_timeout": 900,
        }
        yield inventory, run, assets
    finally:
        if not os.environ.get("NPUFLEET_KEEP_LAB"):
            lifecycle.down(COGVIDEO_LAB, inventory)


def test_the_image_loads_the_tiny_cogvideox_in_the_npu_container(cogvideo_lab):
    inventory, run, _ = cogvideo_lab
    placed = run_playbook("train.yml", inventory, tags="train_assets", extravars=run)
    assert placed.succeeded, placed.first_failure()
    code, output = node_exec(
        NODE,
        f'docker exec {CONTAINER} python3 -c "import decord, wandb, torchvision.transforms;'
        " from diffusers import CogVideoXPipeline;"
        " pipe = CogVideoXPipeline.from_pretrained('/workspace/models/tiny-cogvideox');"
        ' print(type(pipe.transformer).__name__, pipe.transformer.config.patch_size_t)"',
    )
    assert code == 0, output
    assert output.splitlines()[-1] == "CogVideoXTransformer3DModel 2"


@pytest.mark.skipif(bool(SOURCE), reason="with NPUFLEET_FINETRAINERS_SOURCE the whole run is tested instead")
def test_without_finetrainers_the_script_is_rendered_and_no_rank_starts(cogvideo_lab, tmp_path):
    inventory, run, _ = cogvideo_lab
    result = run_playbook("train.yml", inventory, extravars=run | {"train_report_dir": str(tmp_path)})
    assert not result.succeeded
    failure = result.first_failure()
    assert (
        "train_finetrainers_dir /workspace/finetrainers has no training/cogvideox_text_to_video_sft.py:"
        " clone finetrainers at the manual's revision 80d1150a0e233a1 there (train_assets)"
        " or fix train_finetrainers_dir"
    ) in failure
    assert "no rank was started" in failure
    # The model and the data were found: only the checkout is named.
    assert "model_index.json" not in failure and "captions.txt" not in failure
    code, script = node_exec(NODE, "cat /home/ma-user/ws/npufleet/cogvideox-sft.sh")
    assert code == 0, script
    expected = (
        "torchrun --nproc_per_node=1", "--frame_buckets 5", "--save_latents_and_embeddings",
        "accelerate launch --config_file accelerate_configs/uncompiled_1.yaml --gpu_ids 0",
        "--frame_buckets 8", "--max_train_steps 12", "--load_tensors", "--mixed_precision bf16",
    )  # fmt: skip
    for words in expected:
        assert words in script, words
    code, output = node_exec(NODE, f"docker exec {CONTAINER} bash -n /workspace/npufleet/cogvideox-sft.sh")
    assert code == 0, output
    code, _ = node_exec(NODE, "test -e /home/ma-user/ws/npufleet/logs/cogvideox-sft-rank0.log")
    assert code != 0, "a rank was started"


@pytest.mark.skipif(not SOURCE, reason="NPUFLEET_FINETRAINERS_SOURCE (a finetrainers checkout) is not set")
def test_the_whole_run_on_the_cpu_with_the_labs_patch(cogvideo_lab, tmp_path):
    """finetrainers from the controller (its files at the manual's revision, without .git), the lab's CPU
    patch applied by the role, the data cache, 12 steps, and the report."""
    inventory, run, assets = cogvideo_lab
    checkout = tmp_path / "finetrainers"
    archive = subprocess.run(
        ["git", "-C", SOURCE, "archive", REVISION], capture_output=True, check=True
    ).stdout
    checkout.mkdir()
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
    patch = tmp_path / "patches"
    patch.mkdir()
    shutil.copy(assets["cpu_patch"], patch)
    reports = tmp_path / "reports"
    settings = run | {
        "train_assets": [*run["train_assets"],
                         {"name": "finetrainers", "src": str(checkout), "dest": "finetrainers"}],
        "train_finetrainers_patches": [on_nodes(assets["cpu_patch"])],
        "train_report_dir": str(reports),
    }  # fmt: skip
    result = run_playbook("train.yml", inventory, extravars=settings | {"train_force": True})
    assert result.succeeded, result.first_failure()
    report = json.loads((reports / "cogvideox-sft" / "report.json").read_text())
    assert report["loss_points"] == 12
    assert report["throughput"]["as_printed"].endswith(("it/s", "s/it"))
    code, listing = node_exec(NODE, "ls /home/ma-user/ws/output/cogvideox-sft/transformer")
    assert code == 0 and "diffusion_pytorch_model.safetensors" in listing.split()
    # The patch went into a copy beside the checkout, which stays as train_assets put it.
    assert node_exec(NODE, "grep -rqF gloo /home/ma-user/ws/finetrainers.patched/training")[0] == 0
    assert node_exec(NODE, "grep -rqF gloo /home/ma-user/ws/finetrainers/training")[0] != 0
    # Run again: the run is done, the checkout and the patched copy are as they were; nothing changes.
    again = run_playbook("train.yml", inventory, extravars=settings)
    assert again.succeeded, again.first_failure()
    assert again.hosts[NODE].changed == 0, again.output_tail
