"""The rules that judge settings against a node (filter node_checks), on what real nodes returned: a lab
node's node_state reading (a port taken by a process of the node, a work dir symlinked into /usr, an
address the node does not have) and the NPUs of real npu-smi outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter.host_paths import host_path_problems
from ansible_collections.npufleet.ascend.plugins.filter.node_checks import (
    missing_npu_problems,
    npu_ranges,
    npus_per_node_problems,
    taken_port_problems,
    unbound_address_problems,
)
from ansible_collections.npufleet.ascend.plugins.module_utils.npu_smi import parse_info

from tests.fixtures import FIXTURE_ROOT, load

DEFAULTS = Path(__file__).resolve().parents[4] / "roles/fleet_defaults/defaults/main.yml"
READING = json.loads(
    (FIXTURE_ROOT / "node_state" / "lab-node-port-taken-symlinked-work-dir.json").read_text()
)


def npu_ids(fixture: str) -> list[int]:
    return [npu["id"] for npu in parse_info(load(fixture)[0])["npus"]]


EIGHT = npu_ids("910b3_8chip_procs_python_24.1.rc2.1.txt")
SIXTEEN = npu_ids("910b2c_16chip_x86_ray_procs_24.1.rc1.txt")


def test_npu_ranges_are_sorted_runs():
    assert npu_ranges(SIXTEEN) == "0-15"
    assert npu_ranges([7, 0, 1, 2, 5, 1]) == "0-2, 5, 7"
    assert npu_ranges([]) == "none"


def test_npus_the_node_has_pass_and_an_empty_list_means_all():
    assert missing_npu_problems([0, 3, 7], READING["npu_devices"], "npu_container_npus") == []
    assert missing_npu_problems([], READING["npu_devices"], "npu_container_npus") == []
    assert missing_npu_problems(["4", "5"], READING["npu_devices"], "npu_inference_container_npus") == []


def test_an_npu_the_node_lacks_is_named_with_what_it_has():
    assert missing_npu_problems([0, 9, 12, 13], READING["npu_devices"], "npu_container_npus") == [
        "npu_container_npus [0, 9, 12, 13] names NPU 9, 12-13, which the node does not have (it has NPUs 0-7,"
        " /dev/davinciN): list only those in npu_container_npus, or leave it empty for every NPU of the node"
    ]
    # An A3 node's 16 NPUs have NPU 9.
    assert missing_npu_problems([0, 9], SIXTEEN, "npu_container_npus") == []


def test_a_node_without_npu_devices_is_refused_whatever_is_asked():
    assert missing_npu_problems([], [], "npu_container_npus") == [
        "the node has no /dev/davinciN device (is the Ascend driver installed?): install the driver"
    ]


def test_ids_that_are_not_numbers_raise():
    with pytest.raises(AnsibleFilterError, match="npu_container_npus must be a list of NPU ids"):
        missing_npu_problems(["a"], EIGHT, "npu_container_npus")


@pytest.mark.parametrize(("count", "npus"), [(8, EIGHT), ("8", EIGHT), (16, SIXTEEN), (1, [3]), ("x", EIGHT)])
def test_ranks_per_node_within_the_npus_pass(count, npus):
    assert npus_per_node_problems(count, npus, "train_npus_per_node", "the node") == []


def test_more_ranks_than_npus_are_refused_with_the_most_allowed():
    assert npus_per_node_problems(16, EIGHT[:4], "train_npus_per_node", "container npufleet-workload") == [
        "train_npus_per_node 16 is more than the 4 NPUs (0-3) of container npufleet-workload: set"
        " train_npus_per_node to 4 or less"
    ]


def test_a_port_a_process_of_the_node_holds_is_refused_with_the_process():
    assert taken_port_problems(READING["ports"], {"serve_port": 8000, "train_master_port": "29500"}) == [
        "serve_port 8000 is already taken on the node by pid 505 (python3 -m http.server 8000), which is not"
        " npufleet's: stop it, or set serve_port to a port nothing listens on"
    ]


def test_ports_not_read_or_not_numbers_are_left_to_other_checks():
    assert taken_port_problems(READING["ports"], {"serve_port": 8001, "train_master_port": "port"}) == []
    assert taken_port_problems(None, {"serve_port": 8000}) == []


def test_a_listener_of_an_unseen_process_and_one_in_a_container_are_described():
    reading = [
        {"port": 8000, "free": False, "ignored": [],
         "listeners": [{"address": "::", "pid": None, "process": None, "cmdline": None, "container_id": None},
                       {"address": "0.0.0.0", "pid": 42, "process": "nginx", "cmdline": "",
                        "container_id": "3f4e5d6c7b8a99887766"}]},
    ]  # fmt: skip
    (problem,) = taken_port_problems(reading, {"serve_port": 8000})
    assert (
        "by a process this user cannot see (listening on ::); pid 42 (nginx, container 3f4e5d6c7b8a)"
        in problem
    )


def test_an_address_the_node_lacks_is_refused_with_the_kernels_reason():
    assert unbound_address_problems(READING["addresses"], {"serve_host": "172.20.0.2"}) == []
    assert unbound_address_problems(READING["addresses"], {"serve_host": "198.51.100.7"}) == [
        "serve_host 198.51.100.7 is not an address of this node ([Errno 99] Cannot assign requested address):"
        " set serve_host (or npufleet_node_address) to the node's own address on the serving network"
        " ('ip -4 addr'), or 0.0.0.0 to listen on every interface (then set serve_api_key)"
    ]
    # Not tried (every interface, or MindIE's): not judged.
    assert unbound_address_problems(READING["addresses"], {"serve_host": "10.1.1.1"}) == []


def test_the_recorded_symlink_into_usr_is_refused_by_the_host_path_rule():
    refused = yaml.safe_load(DEFAULTS.read_text())["npufleet_refused_host_paths"]
    (problem,) = host_path_problems(
        {"npu_container_host_work_dir": "/data/wslink"}, refused, READING["paths"]
    )
    assert problem.startswith(
        "npu_container_host_work_dir /data/wslink leads through a symlink to /usr/local/share, which matches"
        " /usr/** in npufleet_refused_host_paths"
    )
