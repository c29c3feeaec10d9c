"""The Python API (typed results, cancellation, timeout, vault) and teardown.yml on the shared lab."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils import run_processes

from npufleet import api
from tests.lab.conftest import LAB, node_exec, run_cli

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
NODES = [f"{LAB}-node1", f"{LAB}-node2"]
BIN = Path(sys.executable).parent


def test_a_run_returns_typed_per_host_results_and_module_output(lab_inventory, tmp_path):
    statuses: list[str] = []
    events: list[dict] = []
    result = api.run("preflight", lab_inventory, on_status=statuses.append, on_event=events.append,
                     artifacts=tmp_path)  # fmt: skip
    assert result.succeeded, result.first_failure()
    assert result.status == "successful" and result.rc == 0 and result.playbook == "preflight.yml"
    assert sorted(result.hosts) == NODES
    for name in NODES:
        counts = result.hosts[name]
        assert isinstance(counts, api.HostResult)
        assert counts.ok > 0 and counts.failed == 0 and counts.unreachable == 0
    # What npu_smi_info returned on each node, read from its runner_on_ok event.
    facts = result.module_results("npu_smi_info")
    assert sorted(item.host for item in facts) == NODES
    assert all(len(item.result["npus"]) == 8 for item in facts)
    assert statuses[0] == "starting" and statuses[-1] == "successful"
    assert any(event["event"] == "playbook_on_stats" for event in events)
    # The artifacts are kept, under the folder asked for.
    artifact_dir = Path(result.artifact_dir)
    assert artifact_dir.is_relative_to(tmp_path)
    assert (artifact_dir / "job_events").is_dir() and (artifact_dir / "stdout").is_file()
    with pytest.raises(ValueError, match="unknown stage 'deploy': choose one of site, preflight"):
        api.run("deploy", lab_inventory)


def processes_of_run_on(node: str, run_id: str) -> str:
    """The node's processes (its containers' too) whose environment holds the run's id."""
    marker = f"NPUFLEET_RUN_ID={run_id}"
    pids = f"grep -lzx -- {marker} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3"
    line = f"{pids} | xargs -r ps -o pid=,args= -p"
    return node_exec(node, line)[1]


def test_cancel_and_timeout_stop_a_run_on_the_controller_and_the_nodes(lab_inventory):
    sleep = str(ROOT / "tests" / "playbooks" / "sleep.yml")
    cancel = threading.Event()

    def cancel_when_sleeping(event: dict) -> None:
        if event.get("event") == "runner_on_start":
            cancel.set()

    started = time.monotonic()
    cancelled = api.run_playbook(sleep, lab_inventory, on_event=cancel_when_sleeping, cancel=cancel)
    assert cancelled.status == "canceled" and not cancelled.succeeded
    assert time.monotonic() - started < 60
    assert "was cancelled" in cancelled.first_failure()
    assert cancelled.stop and cancelled.stop.status == "successful" and sorted(cancelled.stop.nodes) == NODES
    # The module waiting on `sleep 120` outlived ansible-playbook on each node; the stop ended them.
    print("\n".join(cancelled.stop.lines()))
    assert all("sleep" in summary for summary in cancelled.stop.nodes.values()), cancelled.stop.nodes

    started = time.monotonic()
    timed_out = api.run_playbook(sleep, lab_inventory, timeout=5)
    assert timed_out.status == "timeout"
    assert time.monotonic() - started < 60
    assert "ran out of time" in timed_out.first_failure()
    for run in (cancelled, timed_out):
        # Nothing of either run is left: not ansible-playbook's workers here, nor `sleep 120` there.
        assert run_processes.processes_of_run(run.run_id) == []
        for name in NODES:
            assert processes_of_run_on(name, run.run_id) == ""


def test_a_cancelled_run_stops_what_it_launched_and_a_rerun_starts_it_again(container_with_a_launch):
    inventory = container_with_a_launch
    playbook = str(ROOT / "tests" / "playbooks" / "launch_then_wait.yml")
    cancel = threading.Event()

    def cancel_once_waiting(event: dict) -> None:
        if event.get("event") == "runner_on_start" and event["event_data"].get("task") == "Wait":
            cancel.set()

    run = api.run_playbook(playbook, inventory, on_event=cancel_once_waiting, cancel=cancel)
    assert run.status == "canceled"
    print("\n".join(run.stop.lines()))
    for name in NODES:
        # The launched `sleep 601` (the wrapper, its session and the command) ran in the container.
        assert run.stop.nodes[name].startswith("stopped "), run.stop.nodes
        assert "in npufleet-workload: bash, sleep" in run.stop.nodes[name]
        assert processes_of_run_on(name, run.run_id) == ""
        assert node_exec(name, "docker exec npufleet-workload pgrep -f 'sleep 601'")[0] == 1
        # Another run's launch (the fixture's) runs on.
        assert node_exec(name, "docker exec npufleet-workload pgrep -f 'sleep 600'")[0] == 0
    # A re-run repairs: the stopped launch is not alive, so it is started again.
    again = api.run_playbook(playbook, inventory, extravars={"launch_then_wait": False})
    assert again.succeeded, again.first_failure()
    launched = again.module_results("llm_launch")
    assert sorted(item.host for item in launched) == NODES
    assert all(item.result["started"] and item.result["status"] == "running" for item in launched)


def test_cli_timeout_exits_4_and_says_so(lab_inventory):
    done = run_cli("check", "-i", str(lab_inventory), "--timeout", "1")
    assert done.returncode == 4, done.stderr
    assert "ran out of time and was stopped" in done.stderr


def test_a_vault_password_and_vaulted_secret_never_reach_the_artifacts(lab_inventory, tmp_path):
    inventory_dir = tmp_path / "inventory"
    (inventory_dir / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(lab_inventory, inventory_dir / "hosts.yml")
    vault_password = secrets.token_hex(16)
    secret_value = secrets.token_hex(16)
    vault_file = inventory_dir / "group_vars" / "all" / "vault.yml"
    vault_file.write_text(f"registry_password: {secret_value}\n")
    password_file = tmp_path / "pass"
    password_file.write_text(vault_password)
    encrypt = [BIN / "ansible-vault", "encrypt", "--vault-password-file", str(password_file), str(vault_file)]
    subprocess.run(encrypt, check=True, capture_output=True)
    password_file.unlink()
    assert secret_value not in vault_file.read_text()

    artifacts = tmp_path / "artifacts"
    hosts = inventory_dir / "hosts.yml"
    result = api.run("preflight", hosts, vault_password=vault_password, artifacts=artifacts)
    assert result.succeeded, result.first_failure()
    # A wrong password is refused when the inventory is read, before anything runs.
    with pytest.raises(ValueError, match="the Vault password given does not open it") as refused:
        api.run("preflight", hosts, vault_password="not-it", artifacts=artifacts)
    assert "not-it" not in str(refused.value) and secret_value not in str(refused.value)
    for path in artifacts.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert vault_password not in text, path
            assert secret_value not in text, path
    # And a secret as an extra var is refused before anything runs (it would sit in argv).
    with pytest.raises(ValueError, match="registry_password look like secrets"):
        api.run("preflight", lab_inventory, extravars={"registry_password": "x"})


@pytest.fixture
def container_with_a_launch(lab_inventory):
    for stage in ("image", "container"):
        result = api.run(stage, lab_inventory)
        assert result.succeeded, result.first_failure()
    launched = api.run_playbook(str(ROOT / "tests" / "playbooks" / "launch_sleeper.yml"), lab_inventory)
    assert launched.succeeded, launched.first_failure()
    yield lab_inventory
    for name in NODES:
        node_exec(name, "docker rm -f npufleet-workload >/dev/null 2>&1; true")


def test_teardown_stops_launches_and_the_container_and_leaves_the_rest(container_with_a_launch):
    inventory = container_with_a_launch
    for name in NODES:
        assert node_exec(name, "docker exec npufleet-workload pgrep -f 'sleep 600'")[0] == 0
        assert node_exec(name, "test -f /var/lib/npufleet/launch/sleeper.json")[0] == 0

    # Check mode: says what it would do, changes nothing.
    checked = run_cli("down", "-i", str(inventory), "--check")
    assert checked.returncode == 0, checked.stderr
    assert "would change on" in checked.stderr and "Remove the NPU container" in checked.stderr
    assert all(node_exec(name, "docker inspect npufleet-workload")[0] == 0 for name in NODES)

    down = run_cli("down", "-i", str(inventory))
    assert down.returncode == 0, down.stderr
    for name in NODES:
        assert node_exec(name, "docker inspect npufleet-workload")[0] != 0
        assert node_exec(name, "ls /var/lib/npufleet/launch/*.json")[0] != 0
        # The engine, the image and the node stage's settings stay.
        assert node_exec(name, "docker info --format '{{.ServerVersion}}'")[0] == 0
        assert node_exec(name, "docker images -q | grep -q .")[0] == 0

    again = api.run("teardown", inventory)
    assert again.succeeded and all(again.hosts[name].changed == 0 for name in NODES)
