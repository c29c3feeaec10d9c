"""The lab, the npu_smi_info module and the preflight role, run for real on simulated nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest

from npufleet.api import run_playbook
from npufleet.lab import faults, lifecycle, node_base_image
from tests.lab.conftest import LAB, node_exec, run_cli

pytestmark = pytest.mark.lab
PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
NODE = f"{LAB}-node2"


def test_nodes_are_up_with_their_own_addresses(lab_inventory):
    found = lifecycle.status(LAB)
    assert [node.name for node in found] == [f"{LAB}-node1", f"{LAB}-node2"]
    assert all(node.status == "running" and node.npus == 8 for node in found)
    assert len({node.address for node in found}) == 2
    inventory = lab_inventory.read_text()
    assert "ansible_connection: docker" in inventory and "preflight_npu_count: 8" in inventory


def test_second_up_uses_the_cached_image_and_keeps_the_nodes(lab_inventory):
    client = docker.from_env()
    before = {c.name: c.id for c in client.containers.list(filters={"label": f"{lifecycle.LABEL}={LAB}"})}
    tag, built = node_base_image.build(client, node_base_image.Recipe(flavour="full"))
    assert not built and node_base_image.image_exists(client, tag)
    lifecycle.up(LAB, nodes=2, inventory=lab_inventory, flavour="full")
    after = {c.name: c.id for c in client.containers.list(filters={"label": f"{lifecycle.LABEL}={LAB}"})}
    assert after == before


def test_preflight_passes_on_every_node(lab_inventory):
    result = run_playbook("preflight.yml", lab_inventory)
    assert result.succeeded, result.first_failure()
    assert sorted(result.hosts) == [f"{LAB}-node1", f"{LAB}-node2"]
    assert all(host.failed == 0 and host.changed == 0 for host in result.hosts.values())


def test_preflight_check_mode_changes_nothing(lab_inventory):
    result = run_playbook("preflight.yml", lab_inventory, check=True)
    assert result.succeeded, result.first_failure()
    assert sum(host.changed for host in result.hosts.values()) == 0


def test_npu_smi_info_module(lab_inventory):
    result = run_playbook(str(PLAYBOOKS / "npu_smi_info.yml"), lab_inventory, limit=f"{LAB}-node1")
    assert result.succeeded, result.first_failure()


@pytest.mark.parametrize(
    ("fault", "npu", "value", "expected"),
    [
        ("unhealthy", 3, "Alarm", "health: NPU 3 is Alarm, expected OK"),
        ("busy", 1, None, "npu in use: NPU 1 runs process 43210 (python, 20480 MB), expected no process"),
        (
            "held",
            5,
            None,
            "device held: /dev/davinci5 held by running container npufleet-lab-holder-davinci5",
        ),
        ("driver", 0, "22.0.0", "driver: found 22.0.0, expected one of 23.0.6"),
        ("npus", 0, "6", "npu count: found 6, expected 8"),
        ("disk", 0, "64", "disk: work dir /home/ma-user/ws has 0.1 GiB free, expected at least 1 GiB"),
        ("error", 0, None, "npu-smi: npu-smi failed: dcmi module initialize failed. ret is -8005"),
    ],
)
def test_each_fault_fails_preflight_with_its_message(clean_faults, fault, npu, value, expected):
    faults.fault(LAB, NODE, fault, npu, value)
    result = run_playbook("preflight.yml", clean_faults)
    assert not result.succeeded
    failures = result.hosts[NODE].failures
    assert len(failures) == 1
    assert f"preflight failed on {NODE}:" in failures[0]["msg"]
    assert expected in failures[0]["msg"]
    # The other node is untouched and passes.
    assert result.hosts[f"{LAB}-node1"].failed == 0


def test_cli_check_exits_1_with_one_line_naming_the_node(clean_faults):
    faults.fault(LAB, NODE, "driver", value="22.0.0")
    done = run_cli("check", "--inventory", str(clean_faults))
    assert done.returncode == 1
    assert (
        f"npufleet: {NODE}: Report the result of the preflight checks: preflight failed on {NODE}:"
        in " ".join(done.stderr.split())
    )
    assert "driver: found 22.0.0" in " ".join(done.stderr.split())


def test_cli_json_reports_per_host_results(lab_inventory):
    done = run_cli("--json", "check", "--inventory", str(lab_inventory))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "successful"
    assert {host: data["failed"] for host, data in report["hosts"].items()} == {
        f"{LAB}-node1": 0,
        f"{LAB}-node2": 0,
    }


def test_cli_fault_on_an_unknown_node_names_the_known_ones(lab_inventory):
    done = run_cli("lab", "fault", "no-such-node", "busy", "--lab", LAB)
    assert done.returncode == 1
    assert f"no lab node named 'no-such-node' (lab nodes: {LAB}-node1, {LAB}-node2)" in " ".join(
        done.stderr.split()
    )


def test_down_removes_everything_it_made_and_nothing_else(tmp_path):
    client = docker.from_env()
    bystander = client.volumes.create("npufleet-test-bystander")
    inventory = tmp_path / "hosts.yml"
    lab = "npufleet-test-down"
    try:
        lifecycle.up(lab, nodes=1, npus=2, inventory=inventory)
        assert inventory.exists()
        removed = lifecycle.down(lab, inventory)
        # The node and the lab's registry.
        assert removed["containers"] == [f"{lab}-node1", f"{lab}-registry"]
        assert removed["networks"] == [lab] and removed["volumes"] == [f"{lab}-node1-docker"]
        label = {"label": f"{lifecycle.LABEL}={lab}"}
        assert client.containers.list(all=True, filters=label) == []
        assert client.networks.list(filters=label) == []
        assert client.volumes.list(filters=label) == []
        assert not inventory.exists()
        assert client.volumes.get("npufleet-test-bystander")
    finally:
        lifecycle.down(lab, inventory)
        bystander.remove()


def test_a_stopped_node_is_reported_unreachable_with_the_connections_reason(tmp_path):
    """A node that is down (its container stopped): reported as unreachable, with what the connection
    said, not as a task whose result could not be read."""
    inventory = tmp_path / "hosts.yml"
    lab = "npufleet-test-stopped"
    try:
        lifecycle.up(lab, nodes=1, npus=2, inventory=inventory, with_registry=False)
        docker.from_env().containers.get(f"{lab}-node1").stop(timeout=5)
        checked = run_cli("check", "-i", str(inventory))
        output = checked.stdout + checked.stderr
        assert checked.returncode != 0
        assert f"npufleet: {lab}-node1: unreachable during" in output, output[-2000:]
        assert "is not running" in output
        assert "deserialization" not in output
    finally:
        lifecycle.down(lab, inventory)


def test_a_serving_typo_is_refused_before_any_stage_changes_anything(lab_inventory):
    """site.yml checks every stage's settings on every node first: a typo in a serving variable stops the
    main job in seconds, before node setup, the image and training."""
    started = time.monotonic()
    typo = {"serve_model_path": "/workspace/models/m", "serve_engine": "vlm"}
    result = run_playbook("site.yml", lab_inventory, extravars=typo)
    took = time.monotonic() - started
    assert not result.succeeded
    lines = result.failure_lines()
    assert [line.split(":")[0] for line in lines] == [f"{LAB}-node1", f"{LAB}-node2"]
    assert "value of serve_engine must be one of: vllm, mindie, llamafactory, got: vlm" in lines[0]
    assert all(host.changed == 0 for host in result.hosts.values())
    print(f"serving typo refused after {took:.1f} s: {lines[0]}")
    assert took < 60


# Settings the nodes refuse, each found by reading the nodes in the validation pass: site.yml stops
# before any stage changes anything, in check mode too. Node 2 holds the mistakes made on a node.
TRAIN_AND_SERVE = {"train_model_path": "/workspace/models/m", "train_dataset": "lab_sft",
                   "serve_model_path": "/workspace/models/m"}  # fmt: skip
NODE_READ_MISTAKES = {
    "npu the nodes lack": (
        {"npu_container_npus": [0, 9]},
        [f"{LAB}-node1", NODE],
        "npu_container on {node}: npu_container_npus [0, 9] names NPU 9, which the node does not have (it has"
        " NPUs 0-7, /dev/davinciN): list only those in npu_container_npus, or leave it empty for every NPU of"
        " the node; nothing was changed",
    ),
    "work dir symlinked into /usr": (
        {"npu_container_host_work_dir": "/data/wslink"},
        [NODE],
        "npu_container on {node}: npu_container_host_work_dir /data/wslink leads through a symlink to"
        " /usr/local/share, which matches /usr/** in npufleet_refused_host_paths",
    ),
    "serve_port taken on the node": (
        TRAIN_AND_SERVE,
        [NODE],
        "serve on {node}: serve_port 8000 is already taken on the node by pid {pid} (python3 -m"
        " http.server 8000), which is not npufleet's: stop it, or set serve_port to a port nothing listens"
        " on; nothing was changed",
    ),
    "more ranks than NPUs": (
        TRAIN_AND_SERVE | {"train_npus_per_node": 16},
        [f"{LAB}-node1", NODE],
        "train on {node}: train_npus_per_node 16 is more than the 8 NPUs (0-7) of the container of the ranks"
        " on this node (npu_container_npus, or every /dev/davinciN of the node): set train_npus_per_node to 8"
        " or less; nothing was changed",
    ),
}


@pytest.fixture(scope="module")
def mistakes_on_node2(lab_inventory):
    """On node 2: /data/wslink a symlink to /usr/local/share, and a process of the node's own (no
    container's) listening on 8000, serve_port's default; its pid."""
    _, pid = node_exec(
        NODE, "mkdir -p /data && ln -sfn /usr/local/share /data/wslink"
        " && { nohup python3 -m http.server 8000 >/dev/null 2>&1 & echo $!; } && sleep 1"
    )  # fmt: skip
    yield int(pid)
    node_exec(NODE, f"kill {int(pid)}; rm -f /data/wslink")


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
@pytest.mark.parametrize("case", list(NODE_READ_MISTAKES))
def test_settings_the_nodes_refuse_stop_site_before_any_stage_changes_anything(
    lab_inventory, mistakes_on_node2, case, check
):
    extravars, failing, message = NODE_READ_MISTAKES[case]
    started = time.monotonic()
    result = run_playbook("site.yml", lab_inventory, extravars=extravars, check=check)
    took = time.monotonic() - started
    assert not result.succeeded
    lines = {line.split(":")[0]: line for line in result.failure_lines()}
    print(
        f"{case}{' (check mode)' if check else ''}: refused after {took:.1f} s:", *lines.values(), sep="\n  "
    )
    assert sorted(lines) == [f"{LAB}-node1", NODE]
    for node in failing:
        assert message.format(node=node, pid=mistakes_on_node2) in lines[node]
    for node in {f"{LAB}-node1", NODE} - set(failing):
        assert f"not started on {node}: the settings of {NODE} were refused" in lines[node]
    assert all(host.changed == 0 for host in result.hosts.values())
    assert took < 60


def test_every_problem_of_every_stage_on_a_node_is_named_in_one_run(lab_inventory, mistakes_on_node2):
    extravars = TRAIN_AND_SERVE | {
        "npu_container_host_work_dir": "/data/wslink",
        "npu_container_npus": [0, 9],
        "train_npus_per_node": 16,
        "serve_host": "198.51.100.7",
    }
    started = time.monotonic()
    result = run_playbook("site.yml", lab_inventory, extravars=extravars)
    took = time.monotonic() - started
    lines = {line.split(":")[0]: line for line in result.failure_lines()}
    node2 = lines[NODE]
    for expected in (
        f"npu_container on {NODE}: npu_container_npus [0, 9] names NPU 9",
        "npu_container_host_work_dir /data/wslink leads through a symlink to /usr/local/share",
        f"train on {NODE}: train_host_work_dir /data/wslink leads through a symlink",
        # The NPUs the ranks' container gets are npu_container_npus's.
        "train_npus_per_node 16 is more than the 2 NPUs (0, 9)",
        f"serve on {NODE}: serve_host_work_dir /data/wslink leads through a symlink",
        "serve_port 8000 is already taken on the node",
        "serve_host 198.51.100.7 is not an address of this node ([Errno 99] Cannot assign requested address)",
    ):
        assert expected in node2
    # Node 1 has no symlink and nothing on 8000: only what the settings get wrong everywhere.
    node1 = lines[f"{LAB}-node1"]
    assert "names NPU 9" in node1 and "is more than the 2 NPUs" in node1 and "198.51.100.7" in node1
    assert "symlink" not in node1 and "serve_port" not in node1
    assert all(host.changed == 0 for host in result.hosts.values())
    print(f"every problem refused after {took:.1f} s:", *lines.values(), sep="\n  ")
