"""The lab's inventory file: its nodes, and the role variables that differ from a real fleet's.

Every role variable the lab sets is here, and only here: the preflight limits for nodes that share
the host's disk, the image stage pointed at the lab registry or the shared volume's archive, and
the train and serve stages on the CPU workload.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from npufleet.collection import default_inventory
from npufleet.lab import registry, workload_image

if TYPE_CHECKING:
    from npufleet.lab.lifecycle import Node

__all__ = ["default_inventory", "write_inventory", "written_by_lab"]

_MARKER = "# Written by 'npufleet lab up'"


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as yamllint (and ansible-lint) expect."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def written_by_lab(path: Path, lab: str) -> bool:
    """Whether ``path`` is the inventory ``npufleet lab up`` wrote for ``lab`` (what down may delete)."""
    return path.read_text(encoding="utf-8").startswith(f"{_MARKER} for lab {lab}")


def write_inventory(
    nodes: list[Node],
    path: Path,
    lab: str,
    npus: int,
    chip: str,
    *,
    workload: dict | None = None,
    training: dict | None = None,
) -> None:
    """Write the inventory of ``nodes``; ``workload`` (the lab registry's image) and ``training``
    (the CPU training image, model and datasets) add the variables that point the stages at them."""
    hosts = {node.name: {"ansible_host": node.name, "npufleet_node_address": node.address} for node in nodes}
    content = {
        "all": {
            "children": {"npu_nodes": {"hosts": hosts}},
            "vars": {
                # The short name, which ansible-core routes to community.docker.docker: Mitogen
                # (--mitogen) takes over only the connections it knows by their short names.
                "ansible_connection": "docker",
                "ansible_python_interpreter": "/usr/bin/python3",
                "npufleet_lab": lab,
                "preflight_npu_count": npus,
                "preflight_chip": chip,
                # Lab nodes share the host's disk; real nodes keep the role's defaults.
                "preflight_docker_min_free_gib": 5,
                "preflight_work_dir_min_free_gib": 1,
                # Lab images carry apt's lists and the packages the roles install: no network needed.
                "docker_apt_update_cache": False,
                "git_lfs_apt_update_cache": False,
            },
        }
    }
    if workload is not None:
        content["all"]["vars"] |= _registry_vars(workload)
    if training is not None:
        content["all"]["vars"] |= _training_vars(training)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(content, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False)
    path.write_text(
        f"{_MARKER} for lab {lab}; 'npufleet lab down' removes it.\n---\n{text}", encoding="utf-8"
    )


def _registry_vars(workload: dict) -> dict:
    """The image stage on the workload image in the lab registry."""
    lab_registry: registry.Registry = workload["registry"]
    return {
        "npufleet_lab_registry": lab_registry.open_endpoint,
        "npufleet_lab_registry_auth": lab_registry.auth_endpoint,
        "docker_insecure_registries": lab_registry.insecure_endpoints,
        # The image stage pulls the lab's workload image; containerd pulls it over plain HTTP.
        "image_name": f"{lab_registry.open_endpoint}/{registry.WORKLOAD_REPOSITORY}",
        "image_tag": workload["version"],
        "image_digest": workload["digest"],
        "image_registry_plain_http": True,
        "image_min_free_gib": 2,
    }


def _training_vars(workload: dict) -> dict:
    """The image, train and serve stages on the lab's CPU workloads: only these variables differ from a real
    fleet's (one process per node instead of 8 NPUs, the CPU instead of the NPU)."""
    shared = workload_image.shared_dir()
    archive = _on_nodes(workload["archive"], shared)
    model = _on_nodes(workload["assets"]["model"], shared)
    name, _, tag = workload["tag"].partition(":")
    result = {
        # The image comes offline from the shared volume, as on pools without internet.
        "image_name": name,
        "image_tag": tag,
        "image_digest": "",
        "image_source": "archive",
        "image_archive_path": archive,
        "image_min_free_gib": 2,
        # The lab's images run torch on the CPU: there is no torch_npu for the gate to find.
        "job_gate_require_torch_npu": False,
        # Weights from the shared volume (on the node), data from the controller.
        "train_assets": [
            {"name": "tiny Qwen2 model", "path": model, "dest": "models/tiny-qwen2"},
            {"name": "lab datasets", "src": str(workload["assets"]["datasets"]), "dest": "data/lab"},
        ],
        "train_model_path": "/workspace/models/tiny-qwen2",
        "train_template": "qwen",
        "train_dataset": "lab_sft",
        "train_dataset_dir": "/workspace/data/lab",
        "train_npus_per_node": 1,
        "train_cutoff_len": 128,
        "train_per_device_batch_size": 4,
        "train_gradient_accumulation_steps": 1,
        "train_learning_rate": 0.005,
        "train_epochs": 12,
        "train_extra_config": {"use_cpu": True},
        # Two CPUs are shared by every rank: one thread each keeps them from fighting.
        "train_env": {"OMP_NUM_THREADS": "1"},
        "train_poll_seconds": 10,
        "train_stall_timeout": 300,
        "train_timeout": 3600,
        # MindSpeed-LLM (train_framework: mindspeed) needs torch_npu: the lab renders its install,
        # conversion, preprocessing and launch scripts and runs none of them.
        "train_mindspeed_render_only": True,
        # Serving: the tiny model with the adapter site.yml trains; LLaMA-Factory's API stays the
        # second engine (serve_engine: llamafactory, in the training container).
        "serve_model_path": "/workspace/models/tiny-qwen2",
        "serve_template": "qwen",
        "serve_adapter_path": "/workspace/output/sft",
        "serve_served_model_name": "tiny-qwen2-sft",
        # The adapter trained on both nodes lives on the first (rank 0 writes it).
        "serve_nodes": 1,
        "serve_npus": 1,
        "serve_tensor_parallel_size": 1,
        "serve_max_model_len": 512,
        "serve_start_timeout": 300,
    }
    result |= _inference_vars(workload["inference"], shared)
    # The vision-language model and its picture, for the multimodal request (not served by default).
    vision = workload["inference"]["assets"]
    result["train_assets"] += [
        {"name": "tiny vision-language model", "path": _on_nodes(vision["vision_model"], shared),
         "dest": "models/tiny-idefics3"},
        {"name": "lab picture", "path": _on_nodes(vision["image"].parent, shared), "dest": "data/images"},
    ]  # fmt: skip
    return result


def _on_nodes(path: Path, shared: Path) -> str:
    """Where a file of the lab's shared folder is on the nodes."""
    return workload_image.SHARED_MOUNT + "/" + str(path.relative_to(shared))


def _inference_vars(inference: dict, shared: Path) -> dict:
    """vLLM's CPU build in an inference container of its own, beside the training container: only
    what the CPU needs differs from a fleet's settings (tensor parallel 1, a KV cache size, no NPU
    variables), and the NPUs are split between the two containers."""
    name, _, tag = inference["tag"].partition(":")
    archive = _on_nodes(inference["archive"], shared)
    return {
        "image_inference_name": name,
        "image_inference_tag": tag,
        "image_inference_archive_path": archive,
        "npu_container_npus": [0, 1, 2, 3],
        "npu_inference_container_name": "npufleet-inference",
        "npu_inference_container_npus": [4, 5, 6, 7],
        "serve_engine": "vllm",
        "serve_served_model_name": "tiny-qwen2",
        "serve_adapter_name": "tiny-qwen2-sft",
        "serve_dtype": "bfloat16",
        # vLLM 0.32 has no --num-scheduler-steps (the manual's vllm-ascend release had it).
        "serve_num_scheduler_steps": 0,
        # Eager mode starts in 20-30 s instead of compiling for up to 100 s.
        "serve_extra_args": ["--enforce-eager"],
        # No NPU variables; a KV cache of 1 GiB (by default vLLM asks for most of the machine's memory).
        "serve_env": {
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "VLLM_HOST_IP": "127.0.0.1",
        },
    }
