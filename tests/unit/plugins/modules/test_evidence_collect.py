"""evidence_collect on this machine's files and commands (no docker): what goes into the archive,
bounded, with secrets redacted and links left out."""

from __future__ import annotations

import json
import os
import sys
import tarfile

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import evidence_collect

CANARY = "s3cr3t-Canary-9f2e"


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        evidence_collect.main()
    return json.loads(capsys.readouterr().out)


def archive(path) -> dict[str, str]:
    with tarfile.open(path) as bundle:
        return {member.name: bundle.extractfile(member).read().decode() for member in bundle.getmembers()}


def test_logs_commands_and_the_manifest_go_in_bounded_and_redacted(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.log").write_text(
            f"step 1\nHF_TOKEN={CANARY}\n" + "x" * 300 + "\nlast line\n"
        )
    os.symlink("/etc/passwd", tmp_path / "a" / "passwd.log")
    dest = tmp_path / "out" / "evidence.tar.gz"
    patterns = [str(tmp_path / folder / "*.log") for folder in ("a", "b")] + [str(tmp_path / "none*.log")]
    result = run_module(
        capsys,
        dest=str(dest),
        host_files=patterns,
        commands=[{"name": "echo", "argv": [sys.executable, "-c", f"print('--password {CANARY} ok')"]},
                  {"name": "missing", "argv": ["/nonexistent/tool"]}],
        max_file_bytes=64,
        redact_values=[CANARY],
    )  # fmt: skip
    assert result["changed"] and result["dest"] == str(dest)
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    files = archive(dest)
    names = set(files)
    assert {"logs/train.log", "MANIFEST.json", "commands/echo.txt", "commands/missing.txt"} <= names
    assert any(name.endswith("b_train.log") for name in names), names
    assert not any("passwd" in name for name in names)
    for text in files.values():
        assert CANARY not in text
    assert files["logs/train.log"].endswith("last line\n") and len(files["logs/train.log"]) <= 64
    assert "--password <redacted> ok" in files["commands/echo.txt"]
    manifest = json.loads(files["MANIFEST.json"])
    assert all(entry["truncated"] for entry in manifest["files"] if entry["name"].startswith("logs/"))
    reasons = {problem["source"]: problem["reason"] for problem in manifest["problems"]}
    assert "symbolic link" in reasons[str(tmp_path / "a" / "*.log")]
    assert reasons[str(tmp_path / "none*.log")] == "no file of the run matches"
    assert reasons["missing"] == "/nonexistent/tool is not installed"
    assert CANARY not in json.dumps(result)


def test_older_logs_stay_out_and_bad_limits_are_refused(tmp_path, capsys):
    (tmp_path / "old.log").write_text("old run\n")
    os.utime(tmp_path / "old.log", (1000, 1000))
    (tmp_path / "new.log").write_text("this run\n")
    result = run_module(
        capsys, dest=str(tmp_path / "e.tar.gz"), host_files=[str(tmp_path / "*.log")], since=2000.0
    )
    assert [entry["name"] for entry in result["files"]] == ["logs/new.log"]
    assert result["problems"][0]["reason"] == "left out 1 file(s) older than the run"
    refused = run_module(capsys, dest=str(tmp_path / "f.tar.gz"), max_file_bytes=0)
    assert refused["failed"] and "max_file_bytes must be 1 or more, got 0" in refused["msg"]
    assert not (tmp_path / "f.tar.gz").exists()


def test_hccn_tool_readings_run_as_argv_per_npu(tmp_path, capsys):
    """echo stands in for hccn_tool: each NPU's four readings are run without a shell, in order."""
    dest = tmp_path / "e.tar.gz"
    result = run_module(capsys, dest=str(dest), hccn_tool="/bin/echo", hccn_npus=[0, 3])
    text = archive(dest)["commands/hccn_tool.txt"]
    readings = [line for line in text.splitlines() if not line.startswith("## ")]
    assert readings == [
        f"-i {npu} -{what} -g" for npu in (0, 3) for what in ("link", "net_health", "ip", "tls")
    ]
    assert text.startswith("## /bin/echo -i 0 -link -g (exit 0)\n")
    assert result["problems"] == []
