"""The gate before a job (role job_gate, run by `npufleet check`) on a two-node lab: it passes on a
healthy lab, and each NPU-network, port and version fault is refused with a line naming the node,
the NPU and the fix; the fix the line gives, run on the node, makes the gate pass again."""

from __future__ import annotations

import re

import pytest

from npufleet.api import run_playbook
from npufleet.lab import faults
from tests.lab.conftest import LAB, node_exec, run_cli

pytestmark = pytest.mark.lab
NODES = [f"{LAB}-node1", f"{LAB}-node2"]
HCCN_TOOL = "/usr/local/Ascend/driver/tools/hccn_tool"
GATE_TASK = "Judge the job from every node's readings"


def gate_failure(result) -> str:
    """The gate's refusal (it runs once, on the first node), with its lines."""
    failures = [failure for host in result.hosts.values() for failure in host.failures]
    messages = [failure["msg"] for failure in failures if failure["task"].startswith(GATE_TASK)]
    assert messages, result.first_failure()
    return messages[0]


def test_the_gate_passes_on_a_healthy_lab_and_shows_every_npu(lab_inventory):
    done = run_cli("check", "--inventory", str(lab_inventory))
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    for node, host_part in zip(NODES, ("101", "102"), strict=True):
        block = done.stdout.split(f"{node}:\n", 1)[1]
        rows = [line.split() for line in block.splitlines()[1:9]]
        assert [row[0] for row in rows] == [str(npu) for npu in range(8)]
        for npu, row in enumerate(rows):
            # NPU, link, health, address, hccn.conf, tls, subnet, reach
            assert row[1:] == ["UP", "Success", f"192.168.{100 + npu}.{host_part}", "ok", "0",
                               f"192.168.{100 + npu}.0/24", "1/1"]  # fmt: skip
        assert "ports 29500, 8000, 60000-60015: free" in block
        assert "versions: driver 23.0.6, firmware 7.1.0.11.220, toolkit 8.0.RC3: ok" in block


@pytest.mark.parametrize(
    ("kind", "npu", "value", "expected"),
    [
        ("link", 3, None, f"{NODES[1]} NPU 3: link is DOWN; fix: check the cable and the switch port"),
        ("net_health", 2, "Fault", f"{NODES[1]} NPU 2: net health is Fault (expected Success)"),
        ("tls", 5, None, f"{NODES[1]} NPU 5: TLS switch is 1 while 15 other NPUs of the job have 0"),
        ("device_ip", 1, None,
         f"{NODES[1]} NPU 1: /etc/hccn.conf says address_1=192.168.101.250 but the NPU has 192.168.101.102"),
        ("unreachable", 4, None, f"{NODES[0]} NPU 4: cannot reach {NODES[1]} NPU 4 at 192.168.104.102"),
        ("port", 0, "29500", f"{NODES[1]}: port 29500 (train_master_port) is taken by pid"),
        ("port", 0, "60003", f"{NODES[1]}: port 60003 (HCCL_IF_BASE_PORT 60000 + 3) is taken by pid"),
        ("versions", 0, "firmware=6.4.0.4.220", "6.4.0.4.220"),
        ("versions", 0, "cann=8.0.RC2", "8.0.RC2"),
    ],
)  # fmt: skip
def test_each_fault_is_refused_before_launch_naming_node_npu_and_fix(
    clean_faults, kind, npu, value, expected
):
    faults.fault(LAB, NODES[1], kind, npu, value)
    result = run_playbook("preflight.yml", clean_faults)
    assert not result.succeeded
    message = gate_failure(result)
    print(message)
    assert "the job cannot start:" in message
    assert expected in message
    assert "fix: " in message
    if kind == "port":
        # The listener runs on the node itself (a lab node is a container, but not one of the node's).
        holder = rf"port {value} \([^)]*\) is taken by pid [0-9]+ \(python3\); fix:"
        assert re.search(holder, message), message
    assert sum(host.changed for host in result.hosts.values()) == 0


def test_the_fix_the_gate_names_makes_it_pass(clean_faults):
    faults.fault(LAB, NODES[1], "tls", 6)
    refused = gate_failure(run_playbook("preflight.yml", clean_faults))
    fix = f"'{HCCN_TOOL.rsplit('/', 1)[1]} -i 6 -tls -s enable 0' on {NODES[1]}"
    assert fix in refused
    code, output = node_exec(NODES[1], f"{HCCN_TOOL} -i 6 -tls -s enable 0")
    assert code == 0, output
    result = run_playbook("preflight.yml", clean_faults)
    assert result.succeeded, result.first_failure()


def test_net_health_init_warns_by_default_and_fails_when_asked(clean_faults):
    faults.fault(LAB, NODES[0], "net_health", 7, "Init")
    warned = run_cli("check", "--inventory", str(clean_faults))
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert f"WARNING: {NODES[0]} NPU 7: net health is Init (expected Success)" in warned.stdout
    refused = run_playbook("preflight.yml", clean_faults, extravars={"job_gate_net_health_init": "fail"})
    assert f"{NODES[0]} NPU 7: net health is Init" in gate_failure(refused)


def test_a_node_that_fails_preflight_is_left_out_of_the_gate_not_blamed_on_the_other(clean_faults):
    faults.fault(LAB, NODES[1], "driver", value="22.0.0")
    result = run_playbook("preflight.yml", clean_faults)
    assert not result.succeeded
    assert result.hosts[NODES[0]].failed == 0
    assert "driver: found 22.0.0" in result.first_failure()
