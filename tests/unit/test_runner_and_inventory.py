"""Pure parts of the runner wrapper and the lab inventory: how failures read, what down may delete."""

from __future__ import annotations

import pytest
import yaml

from npufleet import api as runner
from npufleet.api import HostResult, RunResult, _failure, run_playbook
from npufleet.lab import nodes


def event(msg, task="Report the result of the preflight checks", host="node2"):
    return {"event": "runner_on_failed", "event_data": {"host": host, "task": task, "res": {"msg": msg}}}


def test_a_list_message_reads_as_a_headline_and_its_problems():
    host, failure = _failure(
        event(["preflight failed on node2:", "health: NPU 3 is Alarm", "driver: found 22.0.0"])
    )
    assert host == "node2"
    assert failure == {
        "task": "Report the result of the preflight checks",
        "msg": "preflight failed on node2: health: NPU 3 is Alarm; driver: found 22.0.0",
    }


def test_stderr_is_used_when_there_is_no_message():
    data = event(None)
    data["event_data"]["res"] = {"stderr": "  permission denied \n"}
    assert _failure(data)[1]["msg"] == "permission denied"


def test_first_failure_names_host_task_and_reason_or_the_output_tail():
    failed = RunResult(
        "failed", 2, {"b": HostResult(failures=[{"task": "t", "msg": "m"}]), "a": HostResult()}, "/x"
    )
    assert failed.first_failure() == "b: t: m"
    crashed = RunResult("failed", 4, {}, "/x", output_tail="line one\nERROR! the playbook could not be found")
    assert crashed.first_failure() == (
        "ansible-playbook ended failed (rc 4): ERROR! the playbook could not be found; see /x"
    )
    assert not crashed.succeeded


def test_inventory_names_every_node_and_the_lab_settings(tmp_path):
    path = tmp_path / "hosts.yml"
    found = [
        nodes.Node("lab-node1", "10.0.0.2", "running", 8),
        nodes.Node("lab-node2", "10.0.0.3", "running", 8),
    ]
    nodes.write_inventory(found, path, "lab", 8, "910B3")
    data = yaml.safe_load(path.read_text())
    hosts = data["all"]["children"]["npu_nodes"]["hosts"]
    assert hosts == {
        "lab-node1": {"ansible_host": "lab-node1", "npufleet_node_address": "10.0.0.2"},
        "lab-node2": {"ansible_host": "lab-node2", "npufleet_node_address": "10.0.0.3"},
    }
    assert data["all"]["vars"]["ansible_connection"] == "community.docker.docker"
    assert data["all"]["vars"]["preflight_npu_count"] == 8


def test_down_only_deletes_an_inventory_this_lab_wrote(tmp_path):
    ours, other_lab, hand_written = tmp_path / "a.yml", tmp_path / "b.yml", tmp_path / "c.yml"
    nodes.write_inventory([], ours, "lab", 8, "910B3")
    nodes.write_inventory([], other_lab, "another", 8, "910B3")
    hand_written.write_text("all:\n  hosts: {}\n")
    assert nodes._written_by_lab(ours, "lab")
    assert not nodes._written_by_lab(other_lab, "lab")
    assert not nodes._written_by_lab(hand_written, "lab")


def test_secrets_are_refused_as_extra_vars(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    with pytest.raises(
        ValueError, match="image_registry_password look like secrets: keep them in an Ansible Vault"
    ):
        run_playbook("image.yml", inventory, extravars={"image_registry_password": "x", "image_tag": "1"})


@pytest.mark.parametrize(
    ("key", "secret"),
    [("image_registry_password", True), ("hf_token", True), ("token", True), ("registry_token_file", True),
     ("OPENAI_API_KEY", True), ("client_secret", True), ("bench_input_tokens", False), ("max_tokens", False),
     ("serve_gate_max_tokens", False), ("tokenizer_path", False)],
)  # fmt: skip
def test_secret_names_and_token_counts(key, secret):
    assert bool(runner._SECRET_KEY.search(key)) is secret
