"""What the evidence role leaves: the nodes' logs bounded and redacted on the controller, the node that
could not be reached named, the recorded failure diagnosed on its node, and nothing left on the nodes."""

import json
import os
from pathlib import Path

# The third inventory host has no container: only the two lab nodes can be asked.
testinfra_hosts = ["ansible://live_nodes"]

RUN = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / "train" / "molecule"
NODES = ["molecule-evidence-node1", "molecule-evidence-node2"]
CANARIES = ["molecule-canary-env-value", "molecule-canary-given-value", "molecule-canary-bearer-value"]


def test_the_archive_is_gone_from_the_node(host):
    assert host.check_output("ls /tmp | grep -c '^npufleet-evidence-' || true") == "0"


def test_the_readings_from_before_hold_npu_smi_and_hccn_tool(host):
    before = host.file("/home/ma-user/ws/npufleet/logs/portfail-before.log")
    assert before.uid == 1000 and before.mode == 0o644
    text = before.content_string
    assert "readings on molecule-evidence-node" in text and "before run portfail started" in text
    assert "a gate's table line" in text
    assert "== npu-smi info" in text and "(exit 0)" in text
    assert "== hccn_tool -i 1 -link -g" in text and "link status: UP" in text


def test_each_node_has_its_logs_and_a_manifest():
    for rank, node in enumerate(NODES):
        folder = RUN / "nodes" / node
        assert (folder / "logs" / f"portfail-rank{rank}.log").is_file()
        assert (folder / "logs" / "portfail-before.log").is_file()
        assert "npu-smi" in (folder / "commands" / "npu-smi-info.txt").read_text()
        manifest = json.loads((folder / "MANIFEST.json").read_text())
        taken = {entry["name"] for entry in manifest["files"]}
        assert {"commands/npu-smi-info.txt", "commands/hccn_tool.txt"} <= taken


def test_an_earlier_runs_log_is_left_out():
    for rank, node in enumerate(NODES):
        assert not (RUN / "nodes" / node / "logs" / f"earlier-rank{rank}.log").exists()


def test_a_long_log_keeps_its_tail_within_the_bound():
    for rank, node in enumerate(NODES):
        text = (RUN / "nodes" / node / "logs" / f"long-rank{rank}.log").read_text()
        assert len(text.encode()) <= 8192
        assert text.rstrip().endswith("the long log ends here")
        assert "step 0: loss" not in text


def test_no_secret_is_in_the_bundle():
    for path in RUN.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not [canary for canary in CANARIES if canary in text], path


def test_the_unreachable_node_is_named_with_the_reason():
    folder = RUN / "nodes" / "molecule-evidence-gone"
    reason = (folder / "NOT_COLLECTED.txt").read_text()
    assert reason.startswith("molecule-evidence-gone: no evidence collected: unreachable")
    assert list(folder.iterdir()) == [folder / "NOT_COLLECTED.txt"]


def test_the_diagnosis_names_the_taken_port_on_node1():
    diagnosis = json.loads((RUN / "diagnosis.json").read_text())
    first = diagnosis["first"]
    assert (first["id"], first["node"], first["rank"]) == ("master_port_in_use", NODES[0], 0)
    assert first["file"] == f"nodes/{NODES[0]}/logs/portfail-rank0.log"
    assert "## First failure" in (RUN / "diagnosis.md").read_text()
