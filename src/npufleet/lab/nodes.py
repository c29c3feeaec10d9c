"""Simulated Ascend nodes on the local Docker engine: systemd containers (the "full" flavour also
runs a Docker engine inside).

Everything the lab creates carries the label ``npufleet.lab=<lab name>``, and ``down`` removes
exactly what carries it (plus the inventory file it wrote), nothing else.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import yaml

from npufleet.lab import image, npu_state, registry, training
from npufleet.lab.containers import LABEL, LabError, run_systemd_container, wait_booted
from npufleet.lab.containers import exec_in as _exec
from npufleet.lab.containers import put_file as _put_file
from npufleet.lab.containers import wait_for as _wait_for

log = logging.getLogger(__name__)

STATE_PATH = "/var/lib/npufleet-lab/state.json"
WORK_DIR = "/home/ma-user/ws"
HOLDER_IMAGE = "npufleet-lab/device-holder:1"
FLAVOURS = ("full", "bare")
NODE_LABEL = "npufleet.lab.node"
DAEMON_JSON = "/etc/docker/daemon.json"


@dataclass
class Node:
    name: str
    address: str | None
    status: str
    npus: int | None = None


def _client() -> docker.DockerClient:
    try:
        # Builds and saves of the training image stay silent for minutes: allow long reads.
        client = docker.from_env(timeout=1800)
        client.ping()
    except docker.errors.DockerException as error:
        raise LabError(
            "no Docker engine answers: start one (make setup starts dockerd on Debian/Ubuntu) "
            f"and retry ({error})"
        ) from error
    return client


def node_name(lab: str, index: int) -> str:
    return f"{lab}-node{index}"


def _containers(client: docker.DockerClient, lab: str, nodes_only: bool = True) -> list:
    labels = [f"{LABEL}={lab}", NODE_LABEL] if nodes_only else [f"{LABEL}={lab}"]
    found = client.containers.list(all=True, filters={"label": labels})
    return sorted(found, key=lambda c: c.name)


def read_state(container) -> dict:
    _, output = _exec(container, ["cat", STATE_PATH])
    return json.loads(output)


def write_state(container, state: dict) -> None:
    _put_file(container, STATE_PATH, json.dumps(state, indent=2).encode())
    _exec(container, ["/usr/local/lib/npufleet-lab/npu_sim.py", "--sync"])


def _address(container, network: str) -> str | None:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress") or None


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
    ``with_training`` builds the LLaMA-Factory CPU image, saves it, generates the tiny model and
    datasets into the lab's shared folder (mounted read-only on every node at /mnt/sfs_turbo), and
    points the image stage at that archive and the train stage at that model.
    """
    if not 1 <= nodes <= 16:
        raise ValueError(f"--nodes must be between 1 and 16, got {nodes}")
    if flavour not in FLAVOURS:
        raise ValueError(f"--flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    state = npu_state.initial_state(chip, npus)  # validates chip and npus before anything starts
    client = _client()
    # What waits mostly on the network (the registry's debootstrap, the wheel downloads) runs beside
    # what waits on the CPU (the node image, the training venv): a cold lab comes up minutes sooner.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="lab-build") as pool:
        registry_image = None
        if with_registry:
            registry_image = pool.submit(lambda: image.build(_client(), image.Recipe(flavour="registry")))
        wheels = None
        # No node base image: nothing built on it exists either, so the wheels will be needed.
        if with_training and not image.image_exists(client, image.Recipe(flavour="bare").tag):
            wheels = pool.submit(training.wheelhouse)
        tag, _ = image.build(client, image.Recipe(flavour=flavour))
        workload_training = None
        shared = {}
        if with_training:
            training_tag = training.build_image(client, wheels=wheels.result if wheels else None)
            workload_training = {
                "tag": training_tag,
                "archive": training.archive(client, training_tag),
                "assets": training.assets(client, training_tag),
            }
            shared = {str(training.shared_dir()): {"bind": training.SHARED_MOUNT, "mode": "ro"}}
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
        write_state(container, state)
        _exec(container, ["mkdir", "-p", WORK_DIR])
    lab_registry = None
    if with_registry:
        lab_registry = registry.ensure(client, lab, network.name)
    if flavour == "full":
        for container in started:
            if lab_registry is not None:
                # What the docker role writes on bare nodes: the lab registry speaks plain HTTP.
                options = json.dumps(_daemon_options(lab_registry), indent=2)
                _put_file(container, DAEMON_JSON, options.encode())
                _exec(container, ["systemctl", "restart", "docker"])
            _wait_for(
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
    write_inventory(
        result,
        inventory or default_inventory(),
        lab,
        npus,
        chip,
        workload=workload,
        training=workload_training,
    )
    return result


def _daemon_options(lab_registry: registry.Registry) -> dict:
    return {"insecure-registries": [lab_registry.open_endpoint, lab_registry.auth_endpoint]}


def status(lab: str = "npufleet-lab") -> list[Node]:
    client = _client()
    result = []
    for container in _containers(client, lab):
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
    client = _client()
    removed = {"containers": [], "networks": [], "volumes": []}
    for container in _containers(client, lab, nodes_only=False):
        container.remove(force=True, v=True)
        removed["containers"].append(container.name)
    for network in client.networks.list(filters={"label": f"{LABEL}={lab}"}):
        network.remove()
        removed["networks"].append(network.name)
    for volume in client.volumes.list(filters={"label": f"{LABEL}={lab}"}):
        volume.remove(force=True)
        removed["volumes"].append(volume.name)
    path = inventory or default_inventory()
    if path.exists() and _written_by_lab(path, lab):
        path.unlink()
        removed["files"] = [str(path)]
    if purge:
        removed["images"] = image.remove_all(client)
    return removed


def project_root() -> Path:
    """The checkout that holds ansible.cfg (searched upward from the working directory)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "ansible.cfg").is_file() and (folder / "playbooks").is_dir():
            return folder
    return here


def default_inventory() -> Path:
    return project_root() / "inventories" / "lab" / "hosts.yml"


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as yamllint (and ansible-lint) expect."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


_MARKER = "# Written by 'npufleet lab up'"


def _written_by_lab(path: Path, lab: str) -> bool:
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
    hosts = {node.name: {"ansible_host": node.name, "npufleet_node_address": node.address} for node in nodes}
    content = {
        "all": {
            "children": {"npu_nodes": {"hosts": hosts}},
            "vars": {
                "ansible_connection": "community.docker.docker",
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
        lab_registry = workload["registry"]
        content["all"]["vars"] |= {
            "npufleet_lab_registry": lab_registry.open_endpoint,
            "npufleet_lab_registry_auth": lab_registry.auth_endpoint,
            "docker_insecure_registries": _daemon_options(lab_registry)["insecure-registries"],
            # The image stage pulls the lab's workload image; containerd pulls it over plain HTTP.
            "image_name": f"{lab_registry.open_endpoint}/{registry.WORKLOAD_REPOSITORY}",
            "image_tag": workload["version"],
            "image_digest": workload["digest"],
            "image_registry_plain_http": True,
            "image_min_free_gib": 2,
        }
    if training is not None:
        content["all"]["vars"] |= _training_vars(training)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(content, Dumper=_IndentedDumper, sort_keys=False, default_flow_style=False)
    path.write_text(
        f"{_MARKER} for lab {lab}; 'npufleet lab down' removes it.\n---\n{text}", encoding="utf-8"
    )


def _training_vars(workload: dict) -> dict:
    """The image and train stages on the lab's CPU workload: only these variables differ from a real
    fleet's (one process per node instead of 8 NPUs, the CPU instead of the NPU)."""
    shared = training.shared_dir()
    archive = training.SHARED_MOUNT + "/" + str(workload["archive"].relative_to(shared))
    model = training.SHARED_MOUNT + "/" + str(workload["assets"]["model"].relative_to(shared))
    name, _, tag = workload["tag"].partition(":")
    return {
        # The image comes offline from the shared volume, as on pools without internet.
        "image_name": name,
        "image_tag": tag,
        "image_digest": "",
        "image_source": "archive",
        "image_archive_path": archive,
        "image_min_free_gib": 2,
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
        # Serving: LLaMA-Factory's OpenAI API on the CPU, the tiny model with the adapter site.yml trains.
        "serve_engine": "llamafactory",
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


def _node(client: docker.DockerClient, lab: str, name: str):
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        container = None
    if container is None or container.labels.get(LABEL) != lab:
        known = ", ".join(c.name for c in _containers(client, lab)) or "none: run 'npufleet lab up'"
        raise LabError(f"no lab node named {name!r} (lab nodes: {known})")
    return container


def _ensure_holder_image(container) -> None:
    code, _ = _exec(container, ["docker", "image", "inspect", HOLDER_IMAGE], check=False)
    if code == 0:
        return
    # A one-binary image made inside the node: no registry is needed.
    _exec(
        container,
        [
            "sh",
            "-c",
            "set -e; d=$(mktemp -d); cp /bin/busybox $d/busybox; "
            f'tar -C $d -c . | docker import -c \'CMD ["/busybox","sleep","infinity"]\' - {HOLDER_IMAGE}'
            " >/dev/null; rm -rf $d",
        ],
    )


def fault(lab: str, name: str, kind: str, npu: int = 0, value: str | None = None) -> str:
    """Inject a fault into one node; ``clear`` undoes every fault. Returns what was done."""
    client = _client()
    container = _node(client, lab, name)
    state = read_state(container)
    if kind == "unhealthy":
        write_state(container, npu_state.with_health(state, npu, value or "Alarm"))
        return f"{name}: NPU {npu} health set to {value or 'Alarm'}"
    if kind == "busy":
        write_state(container, npu_state.with_process(state, npu))
        return f"{name}: a process now runs on NPU {npu}"
    if kind == "driver":
        if not value:
            raise LabError("the driver fault needs a version: npufleet lab fault NODE driver --value 22.0.0")
        write_state(container, npu_state.with_driver(state, value))
        return f"{name}: driver version set to {value}"
    if kind == "npus":
        if value is None or not value.isdigit():
            raise LabError("the npus fault needs a count: npufleet lab fault NODE npus --value 6")
        write_state(container, npu_state.with_npu_count(state, int(value)))
        return f"{name}: node now shows {value} NPUs"
    if kind == "error":
        message = value or "dcmi module initialize failed. ret is -8005"
        write_state(container, npu_state.with_error(state, message))
        return f"{name}: npu-smi now fails with {message!r}"
    if kind == "held":
        if _exec(container, ["sh", "-c", "command -v docker"], check=False)[0] != 0:
            raise LabError(
                f"{name} has no Docker engine to start a container with: run 'npufleet up' first "
                "(it installs Docker), or start the lab with --flavour full"
            )
        _ensure_holder_image(container)
        holder = f"npufleet-lab-holder-davinci{npu}"
        _exec(
            container,
            [
                "docker",
                "run",
                "-d",
                "--name",
                holder,
                "--label",
                f"{LABEL}={lab}",
                "--device",
                f"/dev/davinci{npu}",
                HOLDER_IMAGE,
            ],
        )
        return f"{name}: container {holder} inside the node holds /dev/davinci{npu}"
    if kind == "disk":
        size_mb = int(value or "64")
        _exec(container, ["mkdir", "-p", WORK_DIR])
        _exec(
            container,
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "npufleet-lab-disk", WORK_DIR],
        )
        return f"{name}: {WORK_DIR} now has {size_mb} MiB of space"
    if kind == "clear":
        _exec(
            container,
            ["sh", "-c", f"docker ps -aq --filter label={LABEL}={lab} | xargs -r docker rm -f >/dev/null"],
            check=False,
        )
        _exec(
            container,
            ["sh", "-c", f"while mountpoint -q {WORK_DIR}; do umount {WORK_DIR}; done"],
            check=False,
        )
        write_state(container, npu_state.initial_state(**state["profile"]))
        return f"{name}: all faults cleared"
    raise LabError(f"unknown fault {kind!r}: choose one of {', '.join(FAULTS)}")


FAULTS = ("unhealthy", "busy", "held", "driver", "npus", "disk", "error", "clear")
