# Copyright: npufleet contributors
# Apache License 2.0
"""Docker's state read with the docker CLI, as node_state reports it: the running containers with the
host devices they hold, parsed from ``docker inspect``."""

from __future__ import annotations

import json


class DockerUnavailable(Exception):
    """Docker is not installed, or its daemon does not answer."""


def docker_json(run_command, argv: list) -> object:
    """The JSON a docker command prints; DockerUnavailable with docker's own message when it fails."""
    rc, out, err = run_command(argv)
    if rc != 0:
        raise DockerUnavailable((err or out).strip() or f"{' '.join(argv[:3])} exited {rc}")
    try:
        return json.loads(out)
    except ValueError as error:
        raise DockerUnavailable(f"{' '.join(argv[:3])} printed no JSON: {error}") from error


def containers_from_inspect(inspected: list) -> list[dict]:
    """``docker inspect``'s list of containers as {id, name, devices, labels}: devices are the host
    paths mapped in (HostConfig.Devices[].PathOnHost), names lose Docker's leading slash."""
    containers = []
    for item in inspected or []:
        host_config = item.get("HostConfig") or {}
        containers.append(
            {
                "id": item.get("Id", ""),
                "name": (item.get("Name") or "").lstrip("/"),
                "devices": [device.get("PathOnHost", "") for device in host_config.get("Devices") or []],
                "labels": (item.get("Config") or {}).get("Labels") or {},
            }
        )
    return containers


def running_containers(run_command, docker: str) -> list[dict]:
    """The running containers, read with one ``docker ps`` and one ``docker inspect`` for all."""
    rc, out, err = run_command([docker, "ps", "--quiet", "--no-trunc"])
    if rc != 0:
        raise DockerUnavailable(err.strip() or f"docker ps exited {rc}")
    ids = out.split()
    if not ids:
        return []
    # A container that stops between ps and inspect makes inspect fail for it alone: ask again
    # without it rather than report Docker as unavailable.
    rc, out, err = run_command([docker, "inspect", *ids])
    if rc != 0:
        present = []
        for container_id in ids:
            rc, one, _ = run_command([docker, "inspect", container_id])
            if rc == 0:
                present += json.loads(one)
        return containers_from_inspect(present)
    return containers_from_inspect(json.loads(out))
