"""The fault catalogue (fault_signatures): its form, and every entry matched by a recorded line
(tests/data/failure_logs/signature_samples.txt and the real logs beside it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils import launch_log
from ansible_collections.npufleet.ascend.plugins.module_utils.fault_signatures import SIGNATURES
from ansible_collections.npufleet.ascend.plugins.plugin_utils.diagnosis import scan_text

DATA = Path(__file__).resolve().parents[3] / "data" / "failure_logs"
IDS = [entry["id"] for entry in SIGNATURES]


def samples() -> list[tuple[str, str, str]]:
    """(signature id, source, line) for every sample line."""
    found, current = [], None
    for line in (DATA / "signature_samples.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            signature, source, how = (part.strip() for part in line[4:].split(" | "))
            assert how.startswith(("verbatim", "rendered")), line
            current = (signature, source)
        elif current and line and not line.startswith("#"):
            found.append((*current, line))
    return found


SAMPLES = samples()


def test_the_catalogue_has_the_issues_coverage_and_a_sound_form():
    assert len(SIGNATURES) >= 25
    assert len(set(IDS)) == len(IDS)
    for entry in SIGNATURES:
        assert set(entry) == {"id", "patterns", "cause", "fix", "source", "symptom", "stops_launch"}
        assert re.fullmatch(r"[a-z0-9_]+", entry["id"])
        assert entry["patterns"] and all(re.compile(pattern) for pattern in entry["patterns"])
        assert entry["cause"] and entry["fix"] and entry["source"]
        assert isinstance(entry["symptom"], bool) and isinstance(entry["stops_launch"], bool)


def test_every_entry_has_a_sample_line():
    assert sorted({signature for signature, _, _ in SAMPLES}) == sorted(IDS)


@pytest.mark.parametrize(
    ("signature", "source", "line"), SAMPLES, ids=[f"{s}:{n}" for n, (s, _, _) in enumerate(SAMPLES)]
)
def test_each_sample_line_is_given_to_its_own_entry(signature, source, line):
    """A line goes to the first entry that matches it: a narrow entry is not shadowed by a broad one."""
    (found,) = scan_text(line, "sample.log")
    assert found["id"] == signature, f"{source}: {line}"


# The real logs of shared/fixtures/failure_logs: every line the catalogue names, in order.
FIXTURE_LOGS = {
    "allreduce_error_code_6.log": ["hccl_operation_error", "hccl_socket_timeout"],
    "dcmi_init_failed_8005.log": ["npu_device_busy_8005"],
    "ei0006_get_socket_timeout.log": ["hccl_socket_timeout"],
    "hccl_listen_port_in_use_then_link_timeout.log": [
        "hccl_listen_port_in_use", "hccl_link_establish_timeout", "hccl_link_establish_timeout",
    ],
    "hccl_watchdog_timeout.log": ["hccl_watchdog_timeout"],
    "libascend_hal_missing.log": ["driver_not_mounted", "torch_npu_backend_not_loaded"],
    "llamafactory_hccl_cann_env.log": ["torch_npu_hccl_call_failed", "cann_env_not_sourced"],
    "torch_npu_undefined_symbol.log": ["torch_npu_cann_skew"],
}  # fmt: skip


def log_lines(name: str) -> str:
    """A fixture log without its '#' header (the collector's notes on source and cause)."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("#")) + "\n"


def test_every_fixture_log_is_listed():
    assert sorted(FIXTURE_LOGS) == sorted(path.name for path in DATA.glob("*.log"))


@pytest.mark.parametrize(("name", "expected"), FIXTURE_LOGS.items(), ids=list(FIXTURE_LOGS))
def test_the_real_logs_lines_are_named(name, expected):
    text = log_lines(name)
    assert [match["id"] for match in scan_text(text, name)] == expected


@pytest.mark.parametrize(
    ("name", "signature", "symptom"),
    [("hccl_listen_port_in_use_then_link_timeout.log", "hccl_listen_port_in_use", False),
     ("llamafactory_hccl_cann_env.log", "cann_env_not_sourced", False),
     ("libascend_hal_missing.log", "driver_not_mounted", False),
     ("ei0006_get_socket_timeout.log", "hccl_socket_timeout", True)],
)  # fmt: skip
def test_llm_launch_stops_on_the_cause_before_the_symptom(name, signature, symptom):
    """The launch module's fatal lines are the catalogue's: the cause is named though a symptom is in
    the same log, and a symptom alone says a peer was lost (the train role blames the other node)."""
    found = launch_log.find_fatal(log_lines(name))
    assert (found["id"], found["symptom"]) == (signature, symptom)
    entry = SIGNATURES[IDS.index(signature)]
    assert (found["meaning"], found["hint"]) == (entry["cause"], entry["fix"])


def test_entries_that_do_not_stop_a_launch_are_left_to_the_diagnosis():
    quiet = {entry["id"] for entry in SIGNATURES if not entry["stops_launch"]}
    assert {"roce_link_down_event", "vllm_shm_broadcast_stall", "rank_failed"} <= quiet
    line = next(line for signature, _, line in SAMPLES if signature == "vllm_shm_broadcast_stall")
    assert launch_log.find_fatal(line) is None
