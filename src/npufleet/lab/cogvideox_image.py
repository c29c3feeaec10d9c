"""The lab's CogVideoX image: the training image with what finetrainers' CogVideoX scripts at the
manual's revision import (diffusers, wandb, decord, imageio-ffmpeg, torchvision), and the tiny
random-weight CogVideoX and video clips generated in it.

Built as the other lab images are: offline from a wheelhouse downloaded once on the host, tagged by a
hash of its recipe and its base, saved as an archive in the shared folder for the nodes. finetrainers'
code itself is not in the image: the manual clones it (train_assets), and GitHub is not reachable
from the lab's build machine, so the lab has no copy of it (see roles/train/README.md).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import docker

from . import build, node_base_image, workload_image

log = logging.getLogger(__name__)

REPOSITORY = "npufleet-lab/cogvideox"
REQUIREMENTS_FILE = node_base_image.FILES / "cogvideox-requirements.txt"
GENERATOR = node_base_image.FILES / "make_lab_cogvideox.py"
# The lab's adaptation of finetrainers 80d1150 to the CPU (the role applies it as it would apply the
# AscendCloud-AIGC package's modify.patch on an NPU node): torch.cuda calls guarded, gloo for NCCL.
CPU_PATCH = node_base_image.FILES / "finetrainers-80d1150-cpu.patch"

# PyPI's torchvision 0.28.0 (the only one for torch 2.13) is a CUDA build: its C ops do not load
# beside the CPU torch (libcudart.so.13), and `import torchvision` then fails in
# _meta_registrations.py ("operator torchvision::nms does not exist") because its two
# register_fake decorators, unlike the rest of that file, do not check that the ops loaded. The
# scripts use only torchvision.transforms: the two decorators get the same check as the others.
_TORCHVISION_GUARD = (
    "site=$({venv}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')\n"
    'meta="$site/torchvision/_meta_registrations.py"\n'
    'sed -i -E \'s/^@torch\\.library\\.register_fake\\(("torchvision::q?nms")\\)$/'
    '@(torch.library.register_fake(\\1) if torchvision.extension._has_ops() else (lambda f: f))/\' "$meta"\n'
    'test "$(grep -c \'_has_ops() else (lambda f: f))\' "$meta")" = 2\n'
    "{venv}/bin/python -c 'import torchvision.transforms, diffusers, wandb, decord, imageio_ffmpeg;"
    " from diffusers import CogVideoXPipeline'\n"
)

_INSTALL = (
    "{venv}/bin/pip install -q --no-cache-dir --no-index --no-deps --find-links {wheels} {requirements}\n"
)


def requirements() -> tuple[str, ...]:
    lines = REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def wheelhouse() -> Path:
    return workload_image.download_wheels(requirements(), "CogVideoX", no_deps=True)


def build_image(client: docker.DockerClient, base: str | None = None) -> str:
    """The CogVideoX image on the training image ``base`` (default: built now), built once, offline."""
    base = base or workload_image.build_image(client)
    venv = workload_image.VENV
    quoted = " ".join(f"'{item}'" for item in requirements())
    script = _INSTALL.format(venv=venv, wheels=build.WHEELS_MOUNT, requirements=quoted)
    script += _TORCHVISION_GUARD.format(venv=venv)
    recipe = "\0".join((base, script, build.recipe_hash()))
    tag = f"{REPOSITORY}:cpu-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if node_base_image.image_exists(client, tag):
        return tag
    wheels = wheelhouse()
    log.info("building the CogVideoX image: %s", tag)
    build.commit_build(
        client, base, tag, script, mounts={str(wheels): build.WHEELS_MOUNT},
        labels={"npufleet.lab.cogvideox": " ".join(requirements())}, what="the CogVideoX image",
    )  # fmt: skip
    for old in client.images.list(name=REPOSITORY):
        if tag not in old.tags:
            client.images.remove(old.id, force=True)
    return tag


def assets(client: docker.DockerClient, tag: str) -> dict[str, Path]:
    """The tiny CogVideoX (diffusers' layout) and its clips, generated in the CogVideoX image, and the
    lab's CPU patch beside them (the nodes read it from the shared folder)."""
    folder = workload_image.generate(client, tag, GENERATOR, "the lab's CogVideoX and clips")
    patch = folder / CPU_PATCH.name
    if not patch.is_file() or patch.read_bytes() != CPU_PATCH.read_bytes():
        patch.write_bytes(CPU_PATCH.read_bytes())
    return {
        "model": folder / "models" / "tiny-cogvideox",
        "dataset": folder / "datasets" / "tiny-videos",
        "cpu_patch": patch,
    }
