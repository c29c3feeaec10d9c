"""node_readings on `docker inspect` as a lab node's Docker 20.10 printed it for its two NPU containers."""

from __future__ import annotations

import json

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.node_readings import (
    DockerUnavailable,
    containers_from_inspect,
    docker_json,
    running_containers,
)

from tests.fixtures import FIXTURE_ROOT

INSPECT = json.loads((FIXTURE_ROOT / "docker_inspect" / "lab-node-two-containers.json").read_text())
MANAGER = ["/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]


def test_containers_keep_name_devices_and_labels():
    workload, inference = containers_from_inspect(INSPECT)
    assert workload["name"] == "npufleet-workload"
    assert workload["id"] == INSPECT[0]["Id"] and len(workload["id"]) == 64
    assert workload["devices"] == [f"/dev/davinci{n}" for n in range(4)] + MANAGER
    assert inference["devices"] == [f"/dev/davinci{n}" for n in range(4, 8)] + MANAGER
    assert workload["labels"]["npufleet.container"] == "npufleet-workload"


def test_a_container_without_devices_or_labels_has_empty_lists():
    plain = dict(INSPECT[0], HostConfig={"Devices": None}, Config={"Labels": None})
    assert containers_from_inspect([plain])[0] | {"id": ""} == {"id": "", "name": "npufleet-workload",
                                                                "devices": [], "labels": {}}  # fmt: skip


def recorded_docker(stopped: str | None = None):
    """A run_command answering `docker ps` and `docker inspect` from the recording; ``stopped`` names
    a container that went away between the two."""
    ids = [item["Id"] for item in INSPECT]
    by_id = {item["Id"]: item for item in INSPECT}

    def run_command(argv):
        if argv[1] == "ps":
            return 0, "\n".join(ids) + "\n", ""
        asked = argv[2:]
        if stopped in asked:
            return 1, "[]", f"Error: No such object: {stopped}"
        return 0, json.dumps([by_id[one] for one in asked]), ""

    return run_command


def test_running_containers_reads_all_in_one_inspect():
    assert [item["name"] for item in running_containers(recorded_docker(), "docker")] == [
        "npufleet-workload",
        "npufleet-inference",
    ]


def test_a_container_gone_between_ps_and_inspect_is_left_out():
    found = running_containers(recorded_docker(stopped=INSPECT[1]["Id"]), "docker")
    assert [item["name"] for item in found] == ["npufleet-workload"]


def test_docker_failing_says_why():
    message = (
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
    )
    with pytest.raises(DockerUnavailable, match="Is the docker daemon running"):
        docker_json(lambda argv: (1, "", message + "\n"), ["docker", "info", "--format", "{{json .}}"])
    with pytest.raises(DockerUnavailable, match="printed no JSON"):
        docker_json(lambda argv: (0, "not json", ""), ["docker", "info"])
