"""training_report: the controller-side writer (plugin_utils) on a recorded LLaMA-Factory log, and the
action plugin through ansible-playbook: check mode with diff, a run, and a re-run that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.plugin_utils.training_report import ReportError, write_report

ROOT = Path(__file__).resolve().parents[4]
LOG = ROOT / "tests" / "data" / "training" / "llamafactory-0.9.3-cpu-1rank-trainer_log.jsonl"


def params(dest: Path, **more) -> dict:
    return {
        "log": str(LOG), "format": "llamafactory", "cards": 1, "seq_length": None, "global_batch_size": None,
        "min_window_seconds": 10, "dest": str(dest), "info": {"run": "sft", "nodes": 1},
    } | more  # fmt: skip


def test_check_mode_writes_nothing_and_says_what_would_change(tmp_path):
    dest = tmp_path / "reports" / "sft"
    outcome = write_report(params(dest), check_mode=True, diff=True)
    assert outcome.changed is True
    assert outcome.written == ["loss.png", "report.json", "report.md"]
    assert not dest.exists()
    headers = {entry["after_header"] for entry in outcome.diff}
    assert headers == {str(dest / "report.json"), str(dest / "report.md")}
    assert all(entry["before"] == "" for entry in outcome.diff)


def test_a_run_writes_the_files_and_a_rerun_changes_nothing(tmp_path):
    dest = tmp_path / "sft"
    first = write_report(params(dest))
    assert first.changed is True
    report = json.loads((dest / "report.json").read_text())
    assert report == first.report and report["plot"] == "loss.png" and report["run"] == "sft"
    assert (dest / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "| tokens/s per card |" in (dest / "report.md").read_text()
    again = write_report(params(dest), diff=True)
    assert (again.changed, again.written, again.diff) == (False, [], [])
    # Another run name changes the report: only the files that differ are written and diffed.
    other = write_report(params(dest, info={"run": "sft2", "nodes": 1}), diff=True)
    assert other.changed is True and other.written == ["loss.png", "report.json", "report.md"]
    assert '"run": "sft"' in other.diff[0]["before"] and '"run": "sft2"' in other.diff[0]["after"]


def test_unreadable_or_unfit_logs_are_refused(tmp_path):
    with pytest.raises(ReportError, match="cannot read the training log"):
        write_report(params(tmp_path, log=str(tmp_path / "missing.jsonl")))
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"current_steps": 1}\n')
    with pytest.raises(ReportError, match="cannot compute the report from"):
        write_report(params(tmp_path, log=str(empty)))


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Compute the report
      npufleet.ascend.training_report:
        log: {log}
        cards: 1
        dest: {dest}
        info: {{run: sft}}
      register: report
    - name: Hand the result to the test
      ansible.builtin.copy:
        content: "{{{{ report | to_json }}}}"
        dest: {out}
      check_mode: false
"""


def play(tmp_path: Path, *flags: str) -> dict:
    dest, out = tmp_path / "dest", tmp_path / "result.json"
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format(log=LOG, dest=dest, out=out))
    env = os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", f"ansible_python_interpreter={sys.executable}", str(playbook), *flags]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(out.read_text())


def test_the_action_plugin_runs_on_the_controller_with_check_mode_and_diff(tmp_path):
    checked = play(tmp_path, "--check", "--diff")
    assert checked["changed"] is True and checked["written"] == ["loss.png", "report.json", "report.md"]
    assert not (tmp_path / "dest").exists()
    assert {entry["after_header"] for entry in checked["diff"]} == {
        str(tmp_path / "dest" / "report.json"), str(tmp_path / "dest" / "report.md")
    }  # fmt: skip
    first = play(tmp_path)
    assert first["changed"] is True and (tmp_path / "dest" / "report.json").is_file()
    again = play(tmp_path)
    assert again["changed"] is False and again["written"] == []
