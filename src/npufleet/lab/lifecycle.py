"""Simulated Ascend nodes on the local Docker engine: start them, list them, remove them.

Nodes are systemd containers (the "full" flavour also runs a Docker engine inside). Everything the
lab creates carries the label ``npufleet.lab=<lab name>``, and ``down`` removes exactly what
carries it (plus the inventory file it wrote), nothing else.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from npufleet.lab import inference_image, node_base_image, npu_state, registry, workload_image
from npufleet.lab import inventory as lab_inventory
from npufleet.lab.containers import (
    LABEL,
    LabError,
    engine,
    exec_in,
    put_file,
    run_systemd_container,
    wait_booted,
    wait_for,
)

log = logging.getLogger(__name__)

STATE_PATH = "/var/lib/npufleet-lab/state.json"
# The default work dir; not made by up: the npu_container role makes it, as on a new server.
WORK_DIR = "/home/ma-user/ws"
FLAVOURS = ("full", "bare")
NODE_LABEL = "npufleet.lab.node"
DAEMON_JSON = "/etc/docker/daemon.json"


@dataclass
class Node:
    name: str
    address: str | None
    status: str
    npus: int | None = None


def node_name(lab: str, index: int) -> str:
    return f"{lab}-node{index}"


def node_containers(client: docker.DockerClient, lab: str, nodes_only: bool = True) -> list:
    """The lab's node containers by name (with ``nodes_only=False``, everything the lab labelled)."""
    labels = [f"{LABEL}={lab}", NODE_LABEL] if nodes_only else [f"{LABEL}={lab}"]
    found = client.containers.list(all=True, filters={"label": labels})
    return sorted(found, key=lambda c: c.name)


def read_state(container) -> dict:
    """The simulated NPUs' state in a node (what its npu-smi reports)."""
    _, output = exec_in(container, ["cat", STATE_PATH])
    return json.loads(output)


def write_state(container, state: dict) -> None:
    put_file(container, STATE_PATH, json.dumps(state, indent=2).encode())
    exec_in(container, ["/usr/local/lib/npufleet-lab/npu_sim.py", "--sync"])


def _address(container, network: str) -> str | None:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress") or None


def build(
    flavours: tuple[str, ...] = FLAVOURS, *, with_registry: bool = True, with_training: bool = False
) -> list[str]:
    """Build, without starting anything, the images ``up`` would need for these node ``flavours``:
    the node images, the registry's and the workload image it serves, and with ``with_training`` the
    training and inference images (with their archives and generated assets). An image already built
    is kept. Their tags, in that order.

    Run ahead of labs started side by side (``make test``), it keeps them from building the same image
    twice at once."""
    for flavour in flavours:
        if flavour not in FLAVOURS:
            raise ValueError(f"--flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    client = engine()
    tags = [node_base_image.build(client, node_base_image.Recipe(flavour=flavour))[0] for flavour in flavours]
    if with_registry:
        tags.append(node_base_image.build(client, node_base_image.Recipe(flavour="registry"))[0])
        tags.append(registry.build_workload(client))
    if with_training:
        training_tag = workload_image.build_image(client)
        inference_tag = inference_image.build_image(client)
        tags += [training_tag, inference_tag]
        # What up() prepares from them, kept in the lab's cache: the archives nodes load, and the
        # model and data generated in each image.
        for tag, generate_assets in (
            (training_tag, workload_image.assets),
            (inference_tag, inference_image.assets),
        ):
            workload_image.archive(client, tag)
            generate_assets(client, tag)
    return tags


def up(
    lab: str = "npufleet-lab",
    nodes: int = 2,
    npus: int = 8,
    chip: str = "910B3",
    *,
    inventory: Path | None = None,
    flavour: str = "bare",
    with_registry: bool = True,
    with_training: bool = False,
) -> list[Node]:
    """Start (or complete) a lab of ``nodes`` nodes; nodes that already run are left alone.

    ``flavour`` "bare" nodes are fresh servers without Docker (site.yml installs it); "full" nodes
    come with a Docker engine running. ``with_registry`` also starts the lab's registry and pushes
    the workload image into it (the inventory then points the image stage at it).
    ``with_training`` builds the LLaMA-Factory CPU image and vLLM's CPU image, saves them,
    generates the tiny model and datasets into the lab's shared folder (mounted read-only on every
    node at /mnt/sfs_turbo), and points the image stage at those archives, the train stage at that
    model and the serve stage at vLLM in an inference container of its own.
    """
    if not 1 <= nodes <= 16:
        raise ValueError(f"--nodes must be between 1 and 16, got {nodes}")
    if flavour not in FLAVOURS:
        raise ValueError(f"--flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    state = npu_state.initial_state(chip, npus)  # validates chip and npus before anything starts
    client = engine()
    # What waits mostly on the network (the registry's debootstrap, the wheel downloads) runs beside
    # what waits on the CPU (the node image, the training venv): a cold lab comes up minutes sooner.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="lab-build") as pool:
        registry_image = None
        if with_registry:
            registry_image = pool.submit(
                lambda: node_base_image.build(engine(), node_base_image.Recipe(flavour="registry"))
            )
        wheels = None
        # No node base image: nothing built on it exists either, so the wheels will be needed.
        bare = node_base_image.Recipe(flavour="bare")
        inference_wheels = None
        if with_training and not node_base_image.image_exists(client, bare.tag):
            wheels = pool.submit(workload_image.wheelhouse)
            inference_wheels = pool.submit(inference_image.wheelhouse)
        tag, _ = node_base_image.build(client, node_base_image.Recipe(flavour=flavour))
        workload_training = None
        shared = {}
        if with_training:
            training_tag = workload_image.build_image(client, wheels=wheels.result if wheels else None)
            workload_training = {
                "tag": training_tag,
                "archive": workload_image.archive(client, training_tag),
                "assets": workload_image.assets(client, training_tag),
            }
            if inference_wheels is not None:
                inference_wheels.result()  # its errors are raised here
            inference_tag = inference_image.build_image(client)
            workload_training["inference"] = {
                "tag": inference_tag,
                "archive": workload_image.archive(client, inference_tag),
                "assets": inference_image.assets(client, inference_tag),
            }
            shared = {str(workload_image.shared_dir()): {"bind": workload_image.SHARED_MOUNT, "mode": "ro"}}
        if registry_image is not None:
            registry_image.result()  # its errors are raised here
    labels = {LABEL: lab}
    networks = client.networks.list(names=[lab], filters={"label": f"{LABEL}={lab}"})
    network = networks[0] if networks else client.networks.create(lab, driver="bridge", labels=labels)

    started = []
    for index in range(1, nodes + 1):
        name = node_name(lab, index)
        try:
            container = client.containers.get(name)
            if container.labels.get(LABEL) != lab:
                raise LabError(
                    f"a container named {name} exists and is not part of lab {lab}: remove or rename it"
                )
            if container.status != "running":
                container.start()
            continue
        except docker.errors.NotFound:
            pass
        volume = client.volumes.create(f"{name}-docker", labels=labels)
        container = run_systemd_container(
            client,
            tag,
            name,
            network=network.name,
            labels=labels | {NODE_LABEL: str(index)},
            volumes={volume.name: {"bind": "/var/lib/docker", "mode": "rw"}} | shared,
        )
        started.append(container)

    for container in started:
        wait_booted(container)
        # Each node its own NPU addresses: the node number is their host part.
        node = int(container.labels[NODE_LABEL])
        write_state(container, state if node == 1 else npu_state.initial_state(chip, npus, node=node))
    lab_registry = None
    if with_registry:
        lab_registry = registry.ensure(client, lab, network.name)
    if flavour == "full":
        for container in started:
            if lab_registry is not None:
                # What the docker role writes on bare nodes: the lab registry speaks plain HTTP.
                options = json.dumps({"insecure-registries": lab_registry.insecure_endpoints}, indent=2)
                put_file(container, DAEMON_JSON, options.encode())
                exec_in(container, ["systemctl", "restart", "docker"])
            wait_for(
                container,
                ["docker", "info", "--format", "{{.ServerVersion}}"],
                lambda code, _: code == 0,
                "the Docker engine inside the node did not answer",
            )
    workload = None
    if lab_registry is not None:
        version, digest = registry.push(
            client, lab_registry, registry.build_workload(client), registry.WORKLOAD_REPOSITORY
        )
        workload = {"registry": lab_registry, "version": version, "digest": digest}
    result = status(lab)
    lab_inventory.write_inventory(
        result,
        inventory or lab_inventory.default_inventory(),
        lab,
        npus,
        chip,
        workload=workload,
        training=workload_training,
    )
    return result


def status(lab: str = "npufleet-lab") -> list[Node]:
    client = engine()
    result = []
    for container in node_containers(client, lab):
        npus = None
        if container.status == "running":
            try:
                npus = len(read_state(container)["npus"])
            except (LabError, ValueError, KeyError):
                npus = None
        result.append(Node(container.name, _address(container, lab), container.status, npus))
    return result


def down(lab: str = "npufleet-lab", inventory: Path | None = None, purge: bool = False) -> dict:
    """Remove the lab's containers, network and volumes, and the inventory it wrote; with ``purge``
    also the cached node images."""
    client = engine()
    removed = {"containers": [], "networks": [], "volumes": []}
    for container in node_containers(client, lab, nodes_only=False):
        container.remove(force=True, v=True)
        removed["containers"].append(container.name)
    for network in client.networks.list(filters={"label": f"{LABEL}={lab}"}):
        network.remove()
        removed["networks"].append(network.name)
    for volume in client.volumes.list(filters={"label": f"{LABEL}={lab}"}):
        volume.remove(force=True)
        removed["volumes"].append(volume.name)
    path = inventory or lab_inventory.default_inventory()
    if path.exists() and lab_inventory.written_by_lab(path, lab):
        path.unlink()
        removed["files"] = [str(path)]
    if purge:
        removed["images"] = node_base_image.remove_all(client)
    return removed
