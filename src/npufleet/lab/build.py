"""Images built from a lab image by running a script in a container and committing it.

``docker build`` gives its steps the engine's default network; this needs none: the script runs
with no network at all, and what it needs comes in through read-only bind mounts, which never
become part of the image (the wheelhouses of the lab's workload images).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import docker

from .containers import LabError


def recipe_hash() -> str:
    """Part of the tag of every image built here: a change to how they are built makes new ones."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


# What Docker gives a container when its image sets no PATH.
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def commit_build(
    client: docker.DockerClient,
    base: str,
    tag: str,
    script: str,
    *,
    mounts: dict | None = None,
    path_prefix: str = "",
    labels: dict[str, str] | None = None,
    what: str = "the image",
) -> str:
    """Build ``tag`` by running ``script`` in a container of ``base`` with no network, then committing it.

    Nothing here depends on the engine's networks (a fresh engine's default bridge has no gateway
    in its metadata, and a host may run with no default bridge at all): what the script needs comes
    through ``mounts`` (read-only bind mounts), which never become part of the image.
    """
    config = client.images.get(base).attrs.get("Config") or {}
    container = client.containers.create(
        base,
        ["/bin/sh", "-ec", script],
        network_mode="none",
        user="root",
        volumes={source: {"bind": target, "mode": "ro"} for source, target in (mounts or {}).items()},
    )
    try:
        container.start()
        status = container.wait()
        if status.get("StatusCode") != 0:
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
            code = status.get("StatusCode")
            raise LabError(f"building {what} ({tag}) failed with exit code {code}:\n{output[-1500:]}")
        # The build container's command and user are not the image's: put the base's back.
        changes = [
            f"CMD {json.dumps(config.get('Cmd') or ['/bin/bash'])}",
            f"USER {config.get('User') or 'root'}",
            f"WORKDIR {config.get('WorkingDir') or '/'}",
        ]
        if path_prefix:
            base_path = next(
                (item.partition("=")[2] for item in config.get("Env") or [] if item.startswith("PATH=")),
                _DEFAULT_PATH,
            )
            changes.append(f"ENV PATH={path_prefix}:{base_path}")
        changes += [f"LABEL {key}={json.dumps(value)}" for key, value in (labels or {}).items()]
        repository, _, version = tag.rpartition(":")
        container.commit(repository=repository, tag=version, changes=changes)
    finally:
        container.remove(force=True)
    return tag
