"""evidence_collect on this machine's files and commands, and a fake docker for the containers: what
goes into the archive, bounded, with secrets redacted and links left out."""

from __future__ import annotations

import json
import os
import sys
import tarfile
import time

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


def test_since_is_read_on_the_nodes_clock(tmp_path, capsys):
    """The controller's clock is an hour behind this node's: a log written 10 minutes ago by the node's
    clock is from before a run that started 5 minutes ago by the controller's."""
    now = time.time()
    (tmp_path / "earlier.log").write_text("an earlier run\n")
    os.utime(tmp_path / "earlier.log", (now - 600, now - 600))
    (tmp_path / "this.log").write_text("this run\n")
    behind = now - 3600
    result = run_module(capsys, dest=str(tmp_path / "e.tar.gz"), host_files=[str(tmp_path / "*.log")],
                        since=behind - 300, controller_time=behind)  # fmt: skip
    assert [entry["name"] for entry in result["files"]] == ["logs/this.log"]


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


FAKE_DOCKER = """#!/bin/sh
# Records each call; answers as docker would for a container whose image has ma-user but not nobody2.
echo "$*" >> "$DOCKER_CALLS"
case "$1" in
  inspect) echo '[{"Config": {"Env": []}}]' ;;
  logs) echo "container log line" ;;
  exec)
    shift
    if [ "$1" = "-u" ]; then
      if [ "$2" = "nobody2" ]; then
        echo "unable to find user nobody2: no matching entries in passwd file"; exit 126
      fi
      shift 2
    fi
    shift  # the container
    if [ "$1" = "sh" ]; then echo /home/ma-user/ascend/log/debug/plog/plog-45_1.log
    else echo "[ERROR] HCCL plog line"; fi ;;
esac
"""


def fake_docker(tmp_path, monkeypatch, script: str):
    """``script`` as the docker on PATH; the file where it records each call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(script)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CALLS", str(calls))
    return calls


@pytest.mark.parametrize(("user", "exec_prefix"), [("ma-user", "exec -u ma-user work"), ("", "exec work"),
                                                    ("nobody2", "exec work")])  # fmt: skip
def test_plog_folders_are_read_as_the_container_user_or_the_containers_own(
    tmp_path, capsys, monkeypatch, user, exec_prefix
):
    calls = fake_docker(tmp_path, monkeypatch, FAKE_DOCKER)
    dest = tmp_path / "evidence.tar.gz"
    run_module(capsys, dest=str(dest), containers=["work"], container_user=user)
    files = archive(dest)
    plog = "containers/work/plog/home_ma-user_ascend_log_debug_plog_plog-45_1.log"
    assert files[plog] == "[ERROR] HCCL plog line\n"
    execs = [line for line in calls.read_text().splitlines() if line.startswith("exec")]
    # The listing and the read run as the same user; a user the image lacks falls back to its own.
    assert execs[-2].startswith(f"{exec_prefix} sh -c ")
    assert execs[-1].startswith(f"{exec_prefix} tail -c ")


FAKE_STOPPED_DOCKER = """#!/bin/sh
# A stopped container: inspect says so, exec is refused, cp streams a tar of the folder asked for.
echo "$*" >> "$DOCKER_CALLS"
case "$1" in
  inspect) echo '[{"State": {"Running": false},
                   "Config": {"Env": ["ASCEND_PROCESS_LOG_PATH=/logs/cann"]}}]' ;;
  logs) echo "container log line" ;;
  exec) echo "Error response from daemon: container is not running"; exit 1 ;;
  cp)
    path=${2#*:}
    if [ -e "$ROOT$path" ]; then tar -C "$ROOT$(dirname "$path")" -cf - "$(basename "$path")"
    else echo "Error response from daemon: Could not find the file $path in container work" >&2; exit 1; fi ;;
esac
"""


def test_a_stopped_containers_plogs_are_copied_out_newest_first_and_bounded(tmp_path, capsys, monkeypatch):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    passwd = "root:x:0:0:root:/root:/bin/bash\nma-user:x:1000:1000::/srv/ma:/bin/sh\n"
    (root / "etc" / "passwd").write_text(passwd)
    plog = root / "srv" / "ma" / "ascend" / "log" / "debug" / "plog"
    plog.mkdir(parents=True)
    for index in range(3):
        log = plog / f"plog-{index}.log"
        log.write_text("x" * 5000 + f"\n[ERROR] HCCL line {index}\n")
        os.utime(log, (1_700_000_000 + index, 1_700_000_000 + index))
    (plog / "plog-old.log").write_text("an earlier run\n")
    os.utime(plog / "plog-old.log", (1_600_000_000, 1_600_000_000))
    calls = fake_docker(tmp_path, monkeypatch, FAKE_STOPPED_DOCKER)
    monkeypatch.setenv("ROOT", str(root))
    dest = tmp_path / "evidence.tar.gz"
    # The user as docker run -u takes it, uid:gid: its home is the passwd's.
    result = run_module(capsys, dest=str(dest), containers=["work"], container_user="1000:1000",
                        container_log_files=2, max_file_bytes=1024, since=1_650_000_000)  # fmt: skip
    files = archive(dest)
    names = sorted(name for name in files if "/plog/" in name)
    # The two newest of the run (not the earlier one), from the home the container's passwd gives.
    expected = [f"containers/work/plog/srv_ma_ascend_log_debug_plog_plog-{index}.log" for index in (1, 2)]
    assert names == expected
    for index, name in zip((1, 2), expected, strict=True):
        text = files[name]
        assert text.endswith(f"[ERROR] HCCL line {index}\n") and len(text) <= 1024
    assert not [line for line in calls.read_text().splitlines() if line.startswith("exec")]
    # ASCEND_PROCESS_LOG_PATH is missing in this container: said so, the rest still taken.
    sources = {problem["source"]: problem["reason"] for problem in result["problems"]}
    assert "Could not find the file /logs/cann" in sources["work:/logs/cann (stopped)"]
