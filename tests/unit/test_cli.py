"""The npufleet command's answers to bad input and a missing engine: exit code and one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NPUFLEET = str(Path(sys.executable).parent / "npufleet")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NPUFLEET, *args], capture_output=True, text=True, check=False, env=os.environ | env
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("lab", "up", "--nodes", "0"), "--nodes must be between 1 and 16, got 0"),
        (("lab", "up", "--npus", "17"), "--npus must be between 1 and 16, got 17"),
        (("lab", "up", "--chip", "H100"), "unknown chip 'H100': choose one of 910B1"),
        (
            ("check", "--inventory", "/nonexistent/hosts.yml"),
            "inventory /nonexistent/hosts.yml does not exist",
        ),
        (("up", "-e", "novalue"), "--extra-var 'novalue' is not KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_before_anything_starts(args, message):
    done = run(*args)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("npufleet: ")
    assert message in " ".join(done.stderr.split())


def test_no_engine_exits_3_and_says_how_to_start_one(tmp_path):
    done = run("lab", "status", DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    assert done.returncode == 3
    assert "no Docker engine answers: start one (make setup starts dockerd" in " ".join(done.stderr.split())


def test_unknown_fault_is_a_usage_error():
    done = run("lab", "fault", "node1", "meltdown")
    assert done.returncode == 2
    assert "invalid choice: 'meltdown'" in done.stderr


def test_report_prints_the_latest_run_or_the_one_named(tmp_path):
    for name, tokens in (("older", 1.0), ("newer", 2.0)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "report.json").write_text(f'{{"run": "{name}", "tokens": {tokens}}}')
        (folder / "report.md").write_text(f"# Training report: {name}\n")
        os.utime(folder / "report.json", (tokens, tokens))
    latest = run("report", "--dir", str(tmp_path))
    assert latest.returncode == 0
    assert latest.stdout.startswith("# Training report: newer\n")
    named = run("--json", "report", "older", "--dir", str(tmp_path))
    assert named.returncode == 0
    assert named.stdout.strip() == '{"run": "older", "tokens": 1.0}'
    missing = run("report", "gone", "--dir", str(tmp_path))
    assert missing.returncode == 2
    assert (
        "no report for run 'gone'" in missing.stderr and "runs with a report: older, newer" in missing.stderr
    )
    empty = run("report", "--dir", str(tmp_path / "none"))
    assert (empty.returncode, empty.stderr.strip()) == (
        2,
        f"npufleet: no training report in {tmp_path / 'none'}: run 'npufleet train' (or 'npufleet up') first",
    )
