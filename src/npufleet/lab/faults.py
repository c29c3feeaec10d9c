"""Faults injected into a lab node, one small function each, for the preflight checks and the
gates before a job to find: a chip's health, a process or a container on an NPU, the driver
version, the NPU count, a small work dir, npu-smi failing; an NPU's network port (link down, net
health, TLS, a stale /etc/hccn.conf address, unreachable), a port another process listens on,
driver/firmware/CANN versions that do not fit; ``clear`` undoes every one."""

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
    # Made as the npu_container role makes it, so that a later container run finds it the same.
    exec_in(node.container, ["install", "-d", "-o", "1000", "-g", "1000", "-m", "0755", WORK_DIR])
    exec_in(
        node.container,
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "npufleet-lab-disk", WORK_DIR],
    )
    return f"{node.name}: {WORK_DIR} now has {size_mb} MiB of space"


def _error(node: _Target) -> str:
    message = node.value or "dcmi module initialize failed. ret is -8005"
    write_state(node.container, npu_state.with_error(node.state, message))
    return f"{node.name}: npu-smi now fails with {message!r}"


def _link(node: _Target) -> str:
    write_state(node.container, npu_state.with_network(node.state, node.npu, link="DOWN", net_health="Fault"))
    return f"{node.name}: NPU {node.npu}'s link is down"


def _net_health(node: _Target) -> str:
    health = node.value or "Fault"
    if health not in ("Fault", "Init"):
        raise LabError(f"the net_health fault takes --value Fault or --value Init, got {health!r}")
    write_state(node.container, npu_state.with_network(node.state, node.npu, net_health=health))
    return f"{node.name}: NPU {node.npu}'s net health reads {health}"


def _tls(node: _Target) -> str:
    write_state(node.container, npu_state.with_network(node.state, node.npu, tls=1))
    return f"{node.name}: TLS switched on for NPU {node.npu} only"


def _device_ip(node: _Target) -> str:
    actual = npu_state.npu_address(node.npu, node.state["profile"]["node"])
    stale = node.value or actual.rsplit(".", 1)[0] + ".250"
    write_state(node.container, npu_state.with_network(node.state, node.npu, conf_address=stale))
    return f"{node.name}: /etc/hccn.conf says NPU {node.npu} is {stale}; the NPU has {actual}"


def _unreachable(node: _Target) -> str:
    write_state(node.container, npu_state.with_network(node.state, node.npu, reachable=False))
    return f"{node.name}: peers get no answer from NPU {node.npu}"


PORT_UNIT = "npufleet-lab-port-"


def _port(node: _Target) -> str:
    if node.value is None or not node.value.isdigit() or not 1 <= int(node.value) <= 65535:
        raise LabError("the port fault needs a port: npufleet lab fault NODE port --value 29500")
    port = int(node.value)
    listener = (
        "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(10 ** 9)"
    )
    # A unit of its own, so that it outlives this command and 'clear' can stop it by name.
    exec_in(node.container, ["systemd-run", f"--unit={PORT_UNIT}{port}", "python3", "-c", listener])
    exec_in(node.container, ["sh", "-c", f"for i in $(seq 50); do ss -ltn | grep -q ':{port} ' && exit 0; "
                             "sleep 0.1; done; exit 1"])  # fmt: skip
    return f"{node.name}: a process (unit {PORT_UNIT}{port}) listens on port {port}"


def _versions(node: _Target) -> str:
    usage = "the versions fault needs driver=, firmware= or cann= pairs: --value firmware=6.4.0.4.220"
    if not node.value:
        raise LabError(usage)
    try:
        versions = dict(pair.split("=", 1) for pair in node.value.split(","))
        state = npu_state.with_versions(node.state, versions)
    except ValueError as error:
        raise LabError(f"{usage}: {error}") from None
    write_state(node.container, state)
    return f"{node.name}: versions now {', '.join(f'{k} {v}' for k, v in versions.items())}"


def _clear(node: _Target) -> str:
    exec_in(
        node.container,
        [
            "sh",
            "-c",
            f"systemctl stop '{PORT_UNIT}*' 2>/dev/null; systemctl reset-failed '{PORT_UNIT}*' 2>/dev/null",
        ],
        check=False,
    )
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
    "link": _link,
    "net_health": _net_health,
    "tls": _tls,
    "device_ip": _device_ip,
    "unreachable": _unreachable,
    "port": _port,
    "versions": _versions,
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
