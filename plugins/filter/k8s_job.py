# Copyright: npufleet contributors
# Apache License 2.0
"""Filters for the k8s_job role: Kubernetes quantities, what is wrong with a job's settings, and the
first known fatal line of a pod's log (the same table llm_launch reads container logs with)."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.module_utils.launch_log import find_fatal

_DOCKER_SIZE = re.compile(r"^(\d+)([kmgt])b?$", re.IGNORECASE)
_MEMORY = re.compile(r"^\d+([KMGTPE]i?)?$")
_CPU = re.compile(r"^\d+(\.\d+|m)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
# configmap1980-<job name> must be a DNS label (at most 63 characters).
MAX_JOB_NAME = 63 - len("configmap1980-")


def k8s_quantity(size) -> str:
    """A size as Kubernetes writes it: Docker's 200g is 200Gi; 200Gi and plain bytes are kept."""
    text = str(size).strip()
    docker = _DOCKER_SIZE.match(text)
    if docker:
        return f"{docker.group(1)}{docker.group(2).upper()}i"
    if _MEMORY.match(text):
        return text
    raise AnsibleFilterError(f"{size!r} is not a size such as 200g (Docker) or 200Gi (Kubernetes)")


def k8s_job_problems(job: dict) -> list[str]:
    """One message per setting that would make the Volcano Job invalid or unschedulable."""
    problems = []
    name = str(job.get("name") or "")
    if not _DNS_LABEL.match(name) or len(name) > MAX_JOB_NAME:
        problems.append(f"k8s_job_name={name!r} must be lowercase letters, digits and '-', at most"
                        f" {MAX_JOB_NAME} characters (its ConfigMap is configmap1980-<name>)")  # fmt: skip
    namespace = str(job.get("namespace") or "")
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        problems.append(f"k8s_job_namespace={namespace!r} is not a namespace name")
    try:
        nodes = int(job.get("nodes"))
    except (TypeError, ValueError):
        nodes = 0
    if nodes < 1:
        problems.append(f"k8s_job_nodes={job.get('nodes')!r} must be 1 or more")
    npus = str(job.get("npus"))
    if npus not in ("1", "2", "4", "8", "16"):
        problems.append(f"k8s_job_npus={job.get('npus')!r} must be 1, 2, 4, 8 or 16 NPUs per pod")
    image = str(job.get("image") or "")
    if not image or image.startswith(":"):
        problems.append("k8s_job_image is empty: set it (or npu_container_image, as the docker path uses)")
    if not str(job.get("command") or "").strip():
        problems.append("k8s_job_command is empty: set what each pod runs (given to /bin/sh -c)")
    pvc = str(job.get("pvc") or "")
    if not _DNS_SUBDOMAIN.match(pvc):
        problems.append(f"k8s_job_pvc={pvc!r} is not a PVC name: give the SFS Turbo PVC already created")
    for key in ("requests_cpu", "limits_cpu"):
        if not _CPU.match(str(job.get(key) or "")):
            problems.append(f"k8s_job_{key}={job.get(key)!r} is not a CPU quantity such as 32 or 500m")
    for key in ("requests_memory", "limits_memory"):
        if not _MEMORY.match(str(job.get(key) or "")):
            problems.append(f"k8s_job_{key}={job.get(key)!r} is not a memory quantity such as 256Gi")
    try:
        k8s_quantity(job.get("shm_size"))
    except AnsibleFilterError as error:
        problems.append(f"k8s_job_shm_size: {error}")
    try:
        least = int(job.get("min_available"))
    except (TypeError, ValueError):
        least = 0
    if nodes >= 1 and not 1 <= least <= nodes:
        problems.append(f"k8s_job_min_available={job.get('min_available')!r} must be between 1 and"
                        f" k8s_job_nodes ({nodes})")  # fmt: skip
    return problems


def fatal_line(text, extra=None) -> dict:
    """The first known fatal line in a log (line, meaning, hint), or {} when there is none."""
    return find_fatal(str(text or ""), extra or []) or {}


class FilterModule:
    def filters(self):
        return {"k8s_quantity": k8s_quantity, "k8s_job_problems": k8s_job_problems, "fatal_line": fatal_line}
