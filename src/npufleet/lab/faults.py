"""Faults injected into a lab node, one small function each, for the preflight checks to find:
a chip's health, a process or a container on an NPU, the driver version, the NPU count, a small
work dir, npu-smi failing; ``clear`` undoes every one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors

from npufleet.lab import npu_state
from npufleet.lab.containers import LABEL, LabError, engine, exec_in
from npufleet.lab.lifecycle import WORK_DIR, node_containers, read_state, write_state

HOLDER_IMAGE = "npufleet-lab/device-holder:1"


@dataclass
class _Target:
    """The node a fault is for, with what the command line gave."""

    lab: str
    name: str
    container: object
    state: dict
    npu: int
    value: str | None


def _node(client: docker.DockerClient, lab: str, name: str):
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        container = None
    if container is None or container.labels.get(LABEL) != lab:
        known = ", ".join(c.name for c in node_containers(client, lab)) or "none: run 'npufleet lab up'"
        raise LabError(f"no lab node named {name!r} (lab nodes: {known})")
    return container


def _unhealthy(node: _Target) -> str:
    health = node.value or "Alarm"
    write_state(node.container, npu_state.with_health(node.state, node.npu, health))
    return f"{node.name}: NPU {node.npu} health set to {health}"


def _busy(node: _Target) -> str:
    write_state(node.container, npu_state.with_process(node.state, node.npu))
    return f"{node.name}: a process now runs on NPU {node.npu}"


def _ensure_holder_image(container) -> None:
    code, _ = exec_in(container, ["docker", "image", "inspect", HOLDER_IMAGE], check=False)
    if code == 0:
        return
    # A one-binary image made inside the node: no registry is needed.
    exec_in(
        container,
        [
            "sh",
            "-c",
            "set -e; d=$(mktemp -d); cp /bin/busybox $d/busybox; "
            f'tar -C $d -c . | docker import -c \'CMD ["/busybox","sleep","infinity"]\' - {HOLDER_IMAGE}'
            " >/dev/null; rm -rf $d",
        ],
    )


def _held(node: _Target) -> str:
    if exec_in(node.container, ["sh", "-c", "command -v docker"], check=False)[0] != 0:
        raise LabError(
            f"{node.name} has no Docker engine to start a container with: run 'npufleet up' first "
            "(it installs Docker), or start the lab with --flavour full"
        )
    _ensure_holder_image(node.container)
    holder = f"npufleet-lab-holder-davinci{node.npu}"
    exec_in(node.container, ["docker", "run", "-d", "--name", holder, "--label", f"{LABEL}={node.lab}",
                             "--device", f"/dev/davinci{node.npu}", HOLDER_IMAGE])  # fmt: skip
    return f"{node.name}: container {holder} inside the node holds /dev/davinci{node.npu}"


def _driver(node: _Target) -> str:
    if not node.value:
        raise LabError("the driver fault needs a version: npufleet lab fault NODE driver --value 22.0.0")
    write_state(node.container, npu_state.with_driver(node.state, node.value))
    return f"{node.name}: driver version set to {node.value}"


def _npus(node: _Target) -> str:
    if node.value is None or not node.value.isdigit():
        raise LabError("the npus fault needs a count: npufleet lab fault NODE npus --value 6")
    write_state(node.container, npu_state.with_npu_count(node.state, int(node.value)))
    return f"{node.name}: node now shows {node.value} NPUs"


def _disk(node: _Target) -> str:
    size_mb = int(node.value or "64")
    exec_in(node.container, ["mkdir", "-p", WORK_DIR])
    exec_in(
        node.container,
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "npufleet-lab-disk", WORK_DIR],
    )
    return f"{node.name}: {WORK_DIR} now has {size_mb} MiB of space"


def _error(node: _Target) -> str:
    message = node.value or "dcmi module initialize failed. ret is -8005"
    write_state(node.container, npu_state.with_error(node.state, message))
    return f"{node.name}: npu-smi now fails with {message!r}"


def _clear(node: _Target) -> str:
    exec_in(
        node.container,
        ["sh", "-c", f"docker ps -aq --filter label={LABEL}={node.lab} | xargs -r docker rm -f >/dev/null"],
        check=False,
    )
    exec_in(node.container, ["sh", "-c", f"while mountpoint -q {WORK_DIR}; do umount {WORK_DIR}; done"],
            check=False)  # fmt: skip
    write_state(node.container, npu_state.initial_state(**node.state["profile"]))
    return f"{node.name}: all faults cleared"


_FAULTS: dict[str, Callable[[_Target], str]] = {
    "unhealthy": _unhealthy,
    "busy": _busy,
    "held": _held,
    "driver": _driver,
    "npus": _npus,
    "disk": _disk,
    "error": _error,
    "clear": _clear,
}
FAULTS = tuple(_FAULTS)


def fault(lab: str, name: str, kind: str, npu: int = 0, value: str | None = None) -> str:
    """Inject a fault into one node; ``clear`` undoes every fault. Returns what was done."""
    inject = _FAULTS.get(kind)
    if inject is None:
        raise LabError(f"unknown fault {kind!r}: choose one of {', '.join(FAULTS)}")
    container = _node(engine(), lab, name)
    return inject(_Target(lab, name, container, read_state(container), npu, value))
