"""Images built from a lab image by running a script in a container and committing it.

``docker build`` gives its steps the engine's default network; this needs none: the script runs
with no network at all, and what it needs comes in through read-only bind mounts, which never
become part of the image (the wheelhouses of the lab's workload images).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import docker

from . import node_base_image
from .containers import LabError

log = logging.getLogger(__name__)

WHEELS_MOUNT = "/var/cache/npufleet-wheels"

# python3-venv (and the system libraries asked for) come from the apt cache the node image carries;
# pip takes nothing but the wheelhouse.
_VENV_SCRIPT = """apt-get install -qq -y --no-install-recommends python3-venv {apt_packages}>/dev/null
rm -f /var/cache/apt/archives/*.deb
python3 -m venv {venv}
{venv}/bin/pip install -q --no-cache-dir --no-index --find-links {wheels} {options}{requirements}
"""


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
    env: dict[str, str] | None = None,
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
        changes += [f"ENV {key}={value}" for key, value in (env or {}).items()]
        changes += [f"LABEL {key}={json.dumps(value)}" for key, value in (labels or {}).items()]
        repository, _, version = tag.rpartition(":")
        container.commit(repository=repository, tag=version, changes=changes)
    finally:
        container.remove(force=True)
    return tag


def _venv_script(requirements: tuple[str, ...], venv: str, options: dict) -> str:
    quoted = " ".join(f"'{item}'" for item in requirements)
    pip_options = "".join(f"{option} " for option in options.get("pip_options", ()))
    apt_packages = "".join(f"{package} " for package in options.get("apt_packages", ()))
    script = _VENV_SCRIPT.format(
        venv=venv, wheels=WHEELS_MOUNT, options=pip_options, requirements=quoted, apt_packages=apt_packages
    )
    return script + options.get("after", "")


def _venv_tag(base: str, repository: str, script: str) -> str:
    """The tag ``venv_image`` gives: a hash of the base, the install script and this module."""
    recipe = "\0".join((base, script, recipe_hash()))
    return f"{repository}:cpu-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def venv_image(
    client: docker.DockerClient,
    base: str,
    repository: str,
    *,
    requirements: tuple[str, ...],
    venv: str,
    wheelhouse: Callable[[], Path],
    label: str,
    what: str,
    pip_options: tuple[str, ...] = (),
    apt_packages: tuple[str, ...] = (),
    after: str = "",
    env: dict[str, str] | None = None,
) -> str:
    """``base`` with ``requirements`` in a venv at ``venv``, installed offline from ``wheelhouse()``
    with ``pip_options``, and ``apt_packages`` from the base's apt cache; ``after`` is shell run
    once they are in; ``env`` is set in the image.

    The tag is a hash of the base, the install script and this module, so the image is built once
    (``wheelhouse`` is called only then); older tags of ``repository`` are removed after a build.
    """
    options = {"pip_options": pip_options, "apt_packages": apt_packages, "after": after}
    script = _venv_script(requirements, venv, options)
    tag = _venv_tag(base, repository, script + json.dumps(env or {}, sort_keys=True))
    if node_base_image.image_exists(client, tag):
        return tag
    wheels = wheelhouse()
    log.info("building %s: %s", what, tag)
    commit_build(client, base, tag, script, mounts={str(wheels): WHEELS_MOUNT}, path_prefix=f"{venv}/bin",
                 env=env, labels={label: " ".join(requirements)}, what=what)  # fmt: skip
    for old in client.images.list(name=repository):
        if tag not in old.tags:
            client.images.remove(old.id, force=True)
    return tag
