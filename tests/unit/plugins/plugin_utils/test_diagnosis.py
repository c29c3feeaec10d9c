"""The diagnosis across nodes (plugin_utils/diagnosis): time stamps and ranks read from real log lines,
and the first failure named across nodes' evidence (the earliest cause, not the loudest node)."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.plugin_utils import diagnosis

DATA = Path(__file__).resolve().parents[3] / "data" / "failure_logs"


def real_lines(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if not line.startswith("#")]


PORT_LOG = real_lines("hccl_listen_port_in_use_then_link_timeout.log")


@pytest.mark.parametrize(
    ("line", "expected"),
    [(PORT_LOG[0], datetime.datetime(2025, 7, 23, 3, 47, 57, 70463)),
     (real_lines("allreduce_error_code_6.log")[1], datetime.datetime(2025, 4, 8, 18, 7, 20)),
     (real_lines("ei0006_get_socket_timeout.log")[0], datetime.datetime(2025, 12, 29, 3, 16, 15, 787356)),
     ("[INFO|2024-10-09 10:06:30,123] trainer.py:2134 >> ***** Running training *****",
      datetime.datetime(2024, 10, 9, 10, 6, 30, 123000)),
     # dmesg --time-format=iso, as the evidence role reads the kernel's log (recorded on this machine).
     ("2026-12-02T16:11:58,868409+00:00 veth7159673 (unregistering): left promiscuous mode",
      datetime.datetime(2026, 12, 2, 16, 11, 58, 868409)),
     (real_lines("dcmi_init_failed_8005.log")[1], None)],
)  # fmt: skip
def test_time_stamps_of_cann_hccl_and_python_logs(line, expected):
    assert diagnosis.line_time(line) == expected


@pytest.mark.parametrize(
    ("line", "offset", "expected"),
    [# A stamp that names its zone is put in UTC, whatever the writer's zone.
     ("2026-12-02T16:11:58,868409+08:00 veth7159673 (unregistering): left promiscuous mode", None,
      datetime.datetime(2026, 12, 2, 8, 11, 58, 868409)),
     ("2026-12-02T16:11:58.868409123Z stdout line", datetime.timedelta(hours=8),
      datetime.datetime(2026, 12, 2, 16, 11, 58, 868409)),
     # One that does not is in the writer's zone (CANN's, in a container at +08:00).
     (PORT_LOG[0], datetime.timedelta(hours=8), datetime.datetime(2025, 7, 22, 19, 47, 57, 70463)),
     ("[INFO|2024-10-09 10:06:30,123] trainer.py:2134", datetime.timedelta(hours=-5, minutes=-30),
      datetime.datetime(2024, 10, 9, 15, 36, 30, 123000))],
)  # fmt: skip
def test_time_stamps_are_put_on_one_clock(line, offset, expected):
    assert diagnosis.line_time(line, offset=offset) == expected


def test_vllms_stamp_takes_the_year_it_is_given():
    # Recorded in the lab: vLLM's CPU build failing on a taken port.
    line = "(APIServer pid=156) INFO 12-03 06:12:04 [api_utils.py:347] "
    assert diagnosis.line_time(line) is None
    assert diagnosis.line_time(line, 2026) == datetime.datetime(2026, 12, 3, 6, 12, 4)


def test_utc_offsets_as_the_collector_records_them():
    assert diagnosis.utc_offset("+0800") == datetime.timedelta(hours=8)
    assert diagnosis.utc_offset("-05:30") == -datetime.timedelta(hours=5, minutes=30)
    assert diagnosis.utc_offset("Z") == datetime.timedelta(0)
    assert diagnosis.utc_offset("CST") is None and diagnosis.utc_offset(None) is None


def test_nodes_in_different_zones_are_ordered_on_one_clock(tmp_path):
    """Node a's containers run at +08:00, node b's at UTC: a's line stamped 13:00:01 came two seconds
    before b's 05:00:03. Read as written, b's would look eight hours earlier."""
    evidence = tmp_path / "run"
    port_line = PORT_LOG[0].replace("2025-07-23-03:47:57.070.463", "2026-12-03-13:00:01.000.000")
    write(evidence / "nodes" / "a" / "logs" / "train-rank0.log", [port_line])
    hal_line = "2026-12-03 05:00:03,000 ImportError: libascend_hal.so: cannot open shared object file"
    write(evidence / "nodes" / "b" / "logs" / "train-rank1.log", [hal_line])
    for node, offset in (("a", "+0800"), ("b", "+0000")):
        manifest = {"utc_offsets": {"node": "+0000", "containers": {"npufleet-workload": offset}}}
        (evidence / "nodes" / node / "MANIFEST.json").write_text(json.dumps(manifest))
    found = diagnosis.diagnose([evidence])
    assert [(match["node"], match["time"]) for match in found["matches"]] == [
        ("a", "2026-12-03T05:00:01"), ("b", "2026-12-03T05:00:03")
    ]  # fmt: skip
    assert (found["first"]["id"], found["first"]["node"]) == ("hccl_listen_port_in_use", "a")
    # The node's own files (commands/) keep the node's zone; a container's, the container's.
    node = evidence / "nodes" / "a"
    manifests: dict = {}
    assert diagnosis.writer_offset(node / "commands" / "dmesg-tail.txt", manifests) == datetime.timedelta(0)
    plog = node / "containers" / "npufleet-workload" / "plog" / "p.log"
    assert diagnosis.writer_offset(plog, manifests) == datetime.timedelta(hours=8)
    assert diagnosis.writer_offset(tmp_path / "loose.log", manifests) is None
    # A stopped container has no offset recorded: the running ones' zone, where they agree, is taken.
    stopped = node / "containers" / "crashed" / "plog" / "p.log"
    assert diagnosis.writer_offset(stopped, manifests) == datetime.timedelta(hours=8)


def test_a_year_less_stamp_from_december_in_a_file_collected_in_january(tmp_path):
    log = tmp_path / "nodes" / "n1" / "logs" / "serve-api.log"
    line = "(APIServer pid=9) ERROR 12-31 23:59:58 [api.py:1] OSError: [Errno 98] Address already in use"
    write(log, [line])
    january = datetime.datetime(2027, 1, 1, 0, 5, tzinfo=datetime.UTC).timestamp()
    os.utime(log, (january, january))
    (match,) = diagnosis.diagnose([tmp_path])["matches"]
    assert match["time"] == "2026-12-31T23:59:58"


def test_vllms_older_stamp_without_brackets():
    line = "INFO 01-15 10:00:00 api_server.py:123] vLLM API server version 0.6.0"
    assert diagnosis.line_time(line, 2025) == datetime.datetime(2025, 1, 15, 10, 0, 0)


def test_glogs_stamp_has_no_year_and_takes_the_logs():
    (line,) = real_lines("hccl_watchdog_timeout.log")
    assert diagnosis.line_time(line) is None
    assert diagnosis.line_time(line, 2025) == datetime.datetime(2025, 3, 24, 13, 0, 25, 428029)


@pytest.mark.parametrize(
    ("line", "rank"),
    [(real_lines("allreduce_error_code_6.log")[0], 1), (real_lines("llamafactory_hccl_cann_env.log")[1], 1),
     (PORT_LOG[3], 12), (real_lines("hccl_watchdog_timeout.log")[0], 1), (PORT_LOG[0], None)],
)  # fmt: skip
def test_the_rank_a_line_names(line, rank):
    assert diagnosis.line_rank(line) == rank


def test_a_line_without_a_stamp_takes_the_one_above_and_the_file_names_the_rank():
    text = "\n".join(real_lines("llamafactory_hccl_cann_env.log"))
    matches = diagnosis.scan_text(text, "/x/train-sft-rank3.log", "node2")
    cann = next(match for match in matches if match["id"] == "cann_env_not_sourced")
    assert cann["time"] == "2024-10-09T10:06:30" and cann["line_no"] == 3
    assert (cann["rank"], cann["node"]) == (3, "node2")


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_first_failure_is_the_earliest_cause_not_the_loudest_node(tmp_path):
    """The real log of vllm-ascend #1955 split as it happens: the port is taken on one node, and two
    minutes later the other node's ranks time out, loudly, waiting for it."""
    evidence = tmp_path / "run-1"
    write(evidence / "nodes" / "node-a" / "logs" / "train-rank0.log", ["step 1", PORT_LOG[0], *PORT_LOG[1:3]])
    write(evidence / "nodes" / "node-b" / "logs" / "train-rank1.log", PORT_LOG[3:] * 3)
    found = diagnosis.diagnose([evidence])
    first = found["first"]
    assert (first["id"], first["node"], first["rank"]) == ("hccl_listen_port_in_use", "node-a", 0)
    assert first["time"] == "2025-07-23T03:47:57.070463"
    assert {match["node"] for match in found["consequences"]} == {"node-b"}
    assert all(match["symptom"] for match in found["consequences"])
    assert found["nodes"] == ["node-a", "node-b"]
    times = [match["time"] for match in found["matches"]]
    assert times == sorted(times)
    line = diagnosis.summary(found)
    assert line.startswith("hccl_listen_port_in_use on node-a rank 0 at 2025-07-23T03:47:57.070463: HCCL")
    report = diagnosis.render_markdown(found)
    assert "## First failure" in report and PORT_LOG[0] in report and "node-b" in report


def test_a_cause_is_named_before_an_earlier_symptom(tmp_path):
    write(tmp_path / "nodes" / "n1" / "a.log", real_lines("allreduce_error_code_6.log"))  # 2025-04, a timeout
    write(tmp_path / "nodes" / "n2" / "b.log", real_lines("llamafactory_hccl_cann_env.log"))  # 2024-10
    write(tmp_path / "nodes" / "n3" / "c.log", PORT_LOG)  # 2025-07
    first = diagnosis.diagnose([tmp_path])["first"]
    assert (first["id"], first["node"]) == ("cann_env_not_sourced", "n2")
    only_symptoms = diagnosis.diagnose([tmp_path / "nodes" / "n1"])
    assert only_symptoms["first"]["id"] == "hccl_operation_error" and only_symptoms["first"]["symptom"]


def test_nothing_known_binary_files_and_a_missing_path(tmp_path):
    healthy = write(tmp_path / "ok.log", ["{'loss': 1.2, 'epoch': 0.5}", "training finished"])
    (tmp_path / "core").write_bytes(b"\0\x01ELF NPU out of memory")
    found = diagnosis.diagnose([tmp_path])
    assert (found["files"], found["matches"], found["first"]) == (2, [], None)
    assert diagnosis.summary(found) == "no known failure signature matched"
    assert "No known failure signature matched in 2 file(s)" in diagnosis.render_markdown(found)
    with pytest.raises(FileNotFoundError, match="does not exist: give log files or an evidence folder"):
        diagnosis.diagnose([healthy, tmp_path / "nope"])


def test_a_big_log_is_read_from_its_end(tmp_path):
    log = tmp_path / "big.log"
    log.write_text("x" * 100 + "\n" + PORT_LOG[0] + "\n", encoding="utf-8")
    assert diagnosis.read_tail(log, limit=len(PORT_LOG[0]) + 1).strip() == PORT_LOG[0]


def test_a_repeated_line_is_kept_a_bounded_number_of_times():
    matches = diagnosis.scan_text("\n".join([PORT_LOG[3]] * 100), "x.log")
    assert len(matches) == diagnosis.MATCHES_PER_SIGNATURE


LAB = DATA / "lab"


def test_a_killed_rank_in_the_lab_is_the_first_failure_and_the_survivor_a_consequence():
    """Recorded in the lab: rank 1's worker killed with SIGKILL mid-run; npufleet then stopped rank 0,
    whose gloo lost its peer first."""
    found = diagnosis.diagnose([LAB / "killed_rank"])
    first = found["first"]
    assert (first["id"], first["node"], first["rank"]) == ("rank_killed", "npufleet-lab-node2", 1)
    assert first["time"] == "2026-12-02T15:23:57.477000"
    assert first["file"] == "nodes/npufleet-lab-node2/logs/killed-rank1.log"
    survivor = [match for match in found["consequences"] if match["node"] == "npufleet-lab-node1"]
    assert [match["id"] for match in survivor] == ["peer_lost", "rank_stopped", "rank_stopped"]
    assert all(match["symptom"] for match in survivor)


def test_a_taken_master_port_in_the_lab_is_named_on_the_master():
    found = diagnosis.diagnose([LAB / "master_port"])
    first = found["first"]
    assert (first["id"], first["node"], first["rank"]) == ("master_port_in_use", "npufleet-lab-node1", 0)
    assert "EADDRINUSE" in first["line"]


def test_a_plog_line_takes_the_rank_of_the_node_that_ran_one():
    """Recorded in the lab: RANK_TABLE_FILE named a file that node 2 does not have. HCCL's line is in
    node 2's plog (it names a pid, not a rank); node 2 ran rank 1 alone."""
    found = diagnosis.diagnose([LAB / "rank_table_path"])
    first = found["first"]
    assert (first["id"], first["node"], first["rank"]) == ("hccl_rank_table_missing", "npufleet-lab-node2", 1)
    assert first["file"].startswith("nodes/npufleet-lab-node2/containers/npufleet-workload/plog/")
    assert first["time"] == "2026-12-02T19:46:43.125038"
    assert [match["id"] for match in found["consequences"]] == ["torch_npu_backend_not_loaded"]


def test_a_line_without_a_rank_on_a_node_of_several_ranks_keeps_none(tmp_path):
    node = tmp_path / "nodes" / "node1"
    (node / "logs").mkdir(parents=True)
    (node / "logs" / "sft-rank0.log").write_text(
        "[rank0]: RuntimeError: NPU out of memory. Tried to allocate\n"
    )
    (node / "logs" / "sft-rank1.log").write_text(
        "[rank1]: RuntimeError: NPU out of memory. Tried to allocate\n"
    )
    (node / "plog.log").write_text(
        "[ERROR] HCCL(45,python3):2026-12-02-19:46:43.125.038 [param_check.cc:98] [45]"
        "[HcomLoadRanktableFile]get file[/workspace/x.json] real path error\n"
    )
    found = diagnosis.diagnose([tmp_path])
    assert {match["rank"] for match in found["matches"] if match["id"] == "npu_out_of_memory"} == {0, 1}
    plog = next(match for match in found["matches"] if match["id"] == "hccl_rank_table_missing")
    assert plog["rank"] is None
    # A node whose logs name two ranks, of which only one has a matching line, ran two ranks.
    (node / "logs" / "sft-rank0.log").write_text("[rank0]: {'loss': 1.2}\n")
    plog = next(m for m in diagnosis.diagnose([tmp_path])["matches"] if m["id"] == "hccl_rank_table_missing")
    assert plog["rank"] is None


def test_the_bundles_own_records_are_not_read_as_logs(tmp_path):
    """A node that could not be reached gets NOT_COLLECTED.txt quoting the connection's error; it is
    not that node's failure."""
    write(
        tmp_path / "nodes" / "n2" / "NOT_COLLECTED.txt",
        ["n2: no evidence collected: Connection reset by peer"],
    )
    write(tmp_path / "nodes" / "n1" / "MANIFEST.json", ['{"source": "Connection reset by peer"}'])
    assert diagnosis.diagnose([tmp_path])["matches"] == []


def test_a_matched_line_is_redacted_in_the_report(tmp_path):
    log = write(
        tmp_path / "serve.log", ["api_server.py: error: unrecognized arguments: --api-key sk-live-0123abcd"]
    )
    (match,) = diagnosis.diagnose([log])["matches"]
    assert match["id"] == "server_flag_rejected" and "sk-live" not in match["line"]
    assert match["line"].endswith("--api-key <redacted>")
