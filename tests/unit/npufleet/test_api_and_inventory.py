"""Pure parts of the runner wrapper and the lab inventory: how failures read, what down may delete,
the time limits the API sets (none of its own), and what importing the API loads."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from npufleet import api as runner
from npufleet.api import HostResult, RunResult, _failure, run_playbook
from npufleet.lab import inventory as lab_inventory
from npufleet.lab.lifecycle import Node


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
        "play": "",
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
        Node("lab-node1", "10.0.0.2", "running", 8),
        Node("lab-node2", "10.0.0.3", "running", 8),
    ]
    lab_inventory.write_inventory(found, path, "lab", 8, "910B3")
    data = yaml.safe_load(path.read_text())
    hosts = data["all"]["children"]["npu_nodes"]["hosts"]
    assert hosts == {
        "lab-node1": {"ansible_host": "lab-node1", "npufleet_node_address": "10.0.0.2"},
        "lab-node2": {"ansible_host": "lab-node2", "npufleet_node_address": "10.0.0.3"},
    }
    assert data["all"]["vars"]["ansible_connection"] == "docker"
    assert data["all"]["vars"]["preflight_npu_count"] == 8


def test_down_only_deletes_an_inventory_this_lab_wrote(tmp_path):
    ours, other_lab, hand_written = tmp_path / "a.yml", tmp_path / "b.yml", tmp_path / "c.yml"
    lab_inventory.write_inventory([], ours, "lab", 8, "910B3")
    lab_inventory.write_inventory([], other_lab, "another", 8, "910B3")
    hand_written.write_text("all:\n  hosts: {}\n")
    assert lab_inventory.written_by_lab(ours, "lab")
    assert not lab_inventory.written_by_lab(other_lab, "lab")
    assert not lab_inventory.written_by_lab(hand_written, "lab")


def test_secrets_are_refused_as_extra_vars(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    with pytest.raises(
        ValueError, match="image_registry_password look like secrets: keep them in an Ansible Vault"
    ):
        run_playbook("image.yml", inventory, extravars={"image_registry_password": "x", "image_tag": "1"})


@pytest.mark.parametrize(
    ("key", "secret"),
    [("image_registry_password", True), ("hf_token", True), ("token", True), ("OPENAI_API_KEY", True),
     ("client_secret", True), ("bench_input_tokens", False), ("max_tokens", False),
     ("serve_gate_max_tokens", False), ("tokenizer_path", False),
     ("serve_mindie_max_input_token_len", False), ("max_token_count", False), ("max_token_length", False),
     # A path to a token names where it is, as ansible_ssh_private_key_file does a key's, and its value is
     # still checked for a token's shape.
     ("registry_token_file", False), ("hf_token_file", False)],
)  # fmt: skip
def test_secret_names_and_token_counts(key, secret):
    assert runner.secret_name(key) is secret


def test_importing_the_api_loads_neither_the_lab_nor_docker():
    code = (
        "import sys, npufleet.api; "
        'assert "docker" not in sys.modules, "docker"; '
        'lab = [m for m in sys.modules if m.startswith("npufleet.lab")]; '
        "assert not lab, lab"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


class _Runner:
    """What run_playbook reads of ansible-runner's Runner."""

    def __init__(self, artifact_dir):
        self.stats = {"ok": {"node1": 1}}
        self.rc, self.status = 0, "successful"
        self.config = SimpleNamespace(artifact_dir=str(artifact_dir))


@pytest.fixture
def runner_calls(monkeypatch, tmp_path):
    """ansible_runner.run replaced (monkeypatch restores it): the keyword arguments of each call."""
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs)
        return _Runner(tmp_path)

    monkeypatch.setattr(runner.ansible_runner, "run", fake_run)
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    npu_nodes:\n      hosts:\n        node1:\n")
    return calls, tmp_path / "hosts.yml"


def test_no_time_limit_unless_one_is_given(runner_calls, monkeypatch):
    calls, inventory = runner_calls
    # The old hidden cap's variable changes nothing any more.
    monkeypatch.setenv("NPUFLEET_RUN_TIMEOUT", "5")
    assert run_playbook("preflight.yml", inventory).succeeded
    assert runner.run("preflight", inventory).succeeded
    assert [call["timeout"] for call in calls] == [None, None]
    run_playbook("preflight.yml", inventory, timeout=90000.5)
    runner.run("train", inventory, timeout=7200)
    assert [call["timeout"] for call in calls[2:]] == [90001, 7200]
    with pytest.raises(ValueError, match="timeout must be above 0 seconds"):
        run_playbook("preflight.yml", inventory, timeout=0)


def test_every_timeout_is_a_documented_argument_with_no_limit_by_default():
    for function in (runner.run, runner.run_playbook):
        parameter = inspect.signature(function).parameters["timeout"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None
        assert "timeout" in function.__doc__ and "no limit" in " ".join(function.__doc__.split())
    # No **options to hide one in: run() takes what run_playbook() takes.
    assert (
        list(inspect.signature(runner.run).parameters)[2:]
        == list(inspect.signature(runner.run_playbook).parameters)[2:]
    )


def test_project_modules_are_the_collections_modules():
    assert {"npu_smi_info", "llm_benchmark"} <= runner.project_modules()


def test_secrets_in_the_callers_environment_are_blanked_for_the_run(runner_calls, monkeypatch):
    """ansible-runner keeps the run's whole environment in its artifacts: a key exported for
    ``npufleet bench --url`` must not land there (the lab's API-key test reads a real run's)."""
    calls, inventory = runner_calls
    monkeypatch.setenv("NPUFLEET_API_KEY", "sk-never-in-artifacts")
    monkeypatch.setenv("HF_TOKEN", "hf-never")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", "/run/vault-pass")
    run_playbook("preflight.yml", inventory, env={"NPUFLEET_EXTRA": "1"})
    envvars = calls[0]["envvars"]
    assert (envvars["NPUFLEET_API_KEY"], envvars["HF_TOKEN"]) == ("", "")
    assert "ANSIBLE_VAULT_PASSWORD_FILE" not in envvars and envvars["NPUFLEET_EXTRA"] == "1"


def test_an_argument_check_reads_without_ansibles_internal_class_names(tmp_path):
    """A value from the inventory that the role's argument spec cannot convert: ansible-core says
    "<class '..._AnsibleTaggedStr'> cannot be converted to a float"; the failure says what was given."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"npu_nodes": {"hosts": {"here": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "npu_container_cpus": "many"}}}}}}))  # fmt: skip
    playbook = tmp_path / "container.yml"
    playbook.write_text(
        "- name: Start the container\n  hosts: npu_nodes\n  gather_facts: false\n  roles:\n"
        "    - role: npufleet.ascend.npu_container\n"
    )
    result = run_playbook(str(playbook), inventory)
    assert not result.succeeded
    message = result.first_failure()
    assert "argument 'npu_container_cpus' is of type str and we were unable to convert to float" in message
    assert "the text given cannot be converted to a float" in message
    assert "_AnsibleTagged" not in message and "<class" not in message


def test_every_unreachable_node_is_listed_with_the_connections_reason(tmp_path):
    """Two nodes that refuse the connection (loopback ports where nothing listens): both are listed,
    as unreachable, with ssh's own words; the CLI prints one line per node."""
    hosts = {
        f"node{port}": {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_connection": "ssh",
                        "ansible_ssh_common_args": "-o ConnectTimeout=5 -o BatchMode=yes"}
        for port in (1, 2)
    }  # fmt: skip
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"npu_nodes": {"hosts": hosts}}}}))
    playbook = tmp_path / "ping.yml"
    playbook.write_text(
        "- name: Reach the nodes\n  hosts: npu_nodes\n  gather_facts: false\n  tasks:\n"
        "    - name: Ping\n      ansible.builtin.ping:\n"
    )
    result = run_playbook(str(playbook), inventory)
    assert not result.succeeded
    lines = result.failure_lines()
    assert [line.split(":")[0] for line in lines] == ["node1", "node2"]
    for line, port in zip(lines, (1, 2), strict=True):
        assert line.startswith(f"node{port}: unreachable during Ping: ")
        assert f"port {port}: Connection refused" in line
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "npufleet"), "check", "-i", str(inventory)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert cli.returncode != 0
    assert "node1: unreachable during" in cli.stdout + cli.stderr
    assert "node2: unreachable during" in cli.stdout + cli.stderr


def test_the_validation_pass_refuses_a_serving_typo_without_reaching_the_nodes(tmp_path):
    """playbooks/validate.yml, site.yml's first play: every stage's checks on every node at once; the
    settings' own checks read nothing from the nodes (these cannot be reached: a connection attempt would
    show as unreachable), and the nodes are read only for the stages whose checks need them."""
    hosts = {f"node{port}": {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_connection": "ssh"}
             for port in (1, 2)}  # fmt: skip
    inventory = tmp_path / "hosts.yml"
    settings = {"image_name": "swr.example.com/org/llm", "image_tag": "1.0"}
    nodes = {"npu_nodes": {"hosts": hosts}}
    inventory.write_text(yaml.safe_dump({"all": {"vars": settings, "children": nodes}}))
    typo = run_playbook("validate.yml", inventory, extravars={"serve_model_path": "/m", "serve_engine": "vl"})
    assert not typo.succeeded
    lines = typo.failure_lines()
    assert len(lines) == 2 and all("got: vl" in line and "unreachable" not in line for line in lines), lines
    # The CLI gathers no evidence for it: no stage ran.
    assert typo.refused_before_any_change()
    assert yaml.safe_load((runner.project_root() / "playbooks" / "validate.yml").read_text())[0]["name"] == (
        runner.VALIDATION_PLAY
    )
    # No stage picked by the tags checks anything against the nodes: none is read.
    unread = run_playbook("validate.yml", inventory, tags="preflight,docker,image")
    assert unread.succeeded, unread.first_failure()
    assert all(host.unreachable == 0 and host.changed == 0 for host in unread.hosts.values())
    # The NPU container's checks read the nodes (NPUs, paths): one reading per node, which these refuse.
    read = run_playbook("validate.yml", inventory)
    lines = read.failure_lines()
    assert [line.split(": unreachable during ")[0] for line in lines] == ["node1", "node2"], lines
    assert all("Read what the checks against the node need" in line for line in lines), lines
    assert all(host.changed == 0 for host in read.hosts.values())


def test_a_cancelled_run_leaves_nothing_of_it_running(tmp_path):
    """A real run on this machine (a node reached with the local connection), cancelled while its
    module waits on `sleep 120`: the worker, the module and the sleep outlive ansible-playbook, and the
    stop ends them; stop.yml then finds nothing left on the node."""
    from ansible_collections.npufleet.ascend.plugins.module_utils.run_processes import (  # noqa: PLC0415
        processes_of_run,
    )

    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"npu_nodes": {"hosts": {"here": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))  # fmt: skip
    cancel = threading.Event()

    def cancel_once_sleeping(item: dict) -> None:
        if item.get("event") == "runner_on_start":
            # Time for the module to start its sleep.
            threading.Timer(2, cancel.set).start()

    sleep = Path(__file__).resolve().parents[2] / "playbooks" / "sleep.yml"
    result = run_playbook(str(sleep), inventory, on_event=cancel_once_sleeping, cancel=cancel)
    assert result.status == "canceled" and result.run_id
    assert result.stop and result.stop.status == "successful", result.stop
    assert result.stop.controller >= 2  # at least the module and its sleep
    assert result.stop.lines()[0].startswith("controller: stopped ansible-playbook and ")
    assert result.stop.nodes == {"here": "nothing of the run was running"}
    assert processes_of_run(result.run_id) == []
