"""llm_launch run in-process against a stand-in ``docker`` that runs ``docker exec`` locally: a start,
a re-run that changes nothing, check mode, diff, stopping, and ``creates`` paths with non-ASCII names."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import llm_launch

# `docker inspect` answers from a file; `docker exec [-d] [-u U] [-w DIR] [-e K=V]... NAME ARGV` runs ARGV
# here (detached with -d), so the module's argv reaches a real process and a real file system.
FAKE_DOCKER = f"""#!{sys.executable}
import os, subprocess, sys
from pathlib import Path

args = sys.argv[1:]
here = Path(__file__).resolve().parent
with open(here / "calls.jsonl", "a", encoding="utf-8") as log:
    import json
    log.write(json.dumps(args) + "\\n")
if args[0] == "inspect":
    print((here / "running").read_text().strip() if (here / "running").exists() else "true")
    sys.exit(0)
assert args[0] == "exec", args
args, detach, cwd, env = args[1:], False, None, dict(os.environ)
while args[0].startswith("-"):
    if args[0] == "-d":
        detach, args = True, args[1:]
    elif args[0] == "-w":
        cwd, args = args[1], args[2:]
    elif args[0] == "-e":
        key, _, value = args[1].partition("=")
        env[key], args = value, args[2:]
    elif args[0] == "--env-file":
        for line in Path(args[1]).read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        args = args[2:]
    else:
        args = args[2:]
argv = args[1:]
if detach:
    # A child that waits for the command, so that it is reaped when it ends (PID 1 here may not reap).
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        subprocess.run(argv, cwd=cwd, env=env)
        os._exit(0)
    sys.exit(0)
sys.exit(subprocess.run(argv, cwd=cwd, env=env).returncode)
"""


# The arguments every call gets; the docker fixture puts record_dir in the test's temp dir.
DEFAULTS = {"name": "train", "container": "box"}


@pytest.fixture
def docker(stand_in, tmp_path, monkeypatch):
    monkeypatch.setitem(DEFAULTS, "record_dir", str(tmp_path / "records"))
    return stand_in("docker", FAKE_DOCKER)


def calls(docker: Path) -> list[list[str]]:
    path = docker / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_module(capsys, check_mode: bool = False, diff: bool = False, **args) -> dict:
    args = {**DEFAULTS, **args}
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        llm_launch.main()
    return json.loads(capsys.readouterr().out)


def wait_for(path: Path) -> None:
    for _ in range(100):
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_creates_with_a_non_ascii_name_is_found_so_nothing_restarts(docker, tmp_path, capsys):
    done = tmp_path / "输出 dir-é" / "train_results.json"
    done.parent.mkdir()
    log = tmp_path / "logs" / "train.log"
    ran = tmp_path / "ran"
    args = {"command": f"echo ran >> {ran}", "log_file": str(log), "creates": str(done), "wait": True}
    first = run_module(capsys, **args)
    assert (first["changed"], first["started"], first["status"]) == (True, True, "succeeded")
    done.write_text("{}")
    again = run_module(capsys, **args)
    assert (again["changed"], again["started"], again["status"]) == (False, False, "skipped")
    assert again["msg"] == f"{done} exists: nothing to start"
    # The path went to `test -e` as one argv item, as written: no shell, no JSON escapes.
    assert ["exec", "box", "test", "-e", str(done)] in calls(docker)
    assert (tmp_path / "ran").read_text() == "ran\n"


def test_start_then_a_rerun_changes_nothing_and_stop(docker, tmp_path, capsys):
    log = tmp_path / "logs" / "serve.log"
    args = {"name": "serve", "command": "sleep 60", "log_file": str(log), "env": {"A": "1"}}
    first = run_module(capsys, **args)
    assert (first["changed"], first["started"], first["status"]) == (True, True, "running")
    assert first["actions"] == ["start serve"]
    record = json.loads((Path(DEFAULTS["record_dir"]) / "serve.json").read_text())
    assert (record["command"], record["env"], record["log_file"]) == ("sleep 60", {"A": "1"}, str(log))
    again = run_module(capsys, **args)
    assert (again["changed"], again["started"], again["msg"]) == (False, False, "serve is already running")
    would = run_module(capsys, check_mode=True, name="serve", state="stopped", log_file=str(log))
    assert (would["changed"], would["status"], would["actions"]) == (True, "running", ["would stop serve"])
    stopped = run_module(capsys, name="serve", state="stopped", log_file=str(log))
    assert (stopped["changed"], stopped["status"]) == (True, "stopped")
    gone = run_module(capsys, name="serve", state="stopped", log_file=str(log))
    assert gone["changed"] is False


def test_check_mode_says_it_would_start_and_starts_nothing(docker, tmp_path, capsys):
    log = tmp_path / "logs" / "train.log"
    result = run_module(
        capsys, check_mode=True, diff=True, command=f"touch {tmp_path / 'ran'}", log_file=str(log), wait=True
    )
    assert (result["changed"], result["started"], result["status"]) == (True, False, "absent")
    assert result["msg"] == "would start train"
    assert result["actions"] == ["would start train"]
    assert not (tmp_path / "ran").exists() and not log.exists()
    assert not (Path(DEFAULTS["record_dir"]) / "train.json").exists()
    diff = result["diff"]
    assert diff["before"] == "" and json.loads(diff["after"])["command"] == f"touch {tmp_path / 'ran'}"
    assert diff["before_header"] == diff["after_header"] == str(Path(DEFAULTS["record_dir"]) / "train.json")
    # A stopped container: still no pretending.
    (docker / "running").write_text("false")
    later = run_module(capsys, check_mode=True, command="true", log_file=str(log))
    assert (later["changed"], later["started"], later["status"]) == (True, False, "absent")
    assert later["msg"] == "would start train once box runs"


def test_diff_shows_the_previous_record(docker, tmp_path, capsys):
    log = tmp_path / "logs" / "train.log"
    run_module(capsys, command="echo one", log_file=str(log))
    wait_for(Path(str(log) + ".state") / "rc")
    second = run_module(capsys, diff=True, command="echo two", log_file=str(log), wait=True, timeout=30)
    assert json.loads(second["diff"]["before"])["command"] == "echo one"
    assert json.loads(second["diff"]["after"])["command"] == "echo two"
    assert second["status"] == "succeeded"


def test_a_silent_log_fails_across_calls_by_its_age(docker, tmp_path, capsys):
    log = tmp_path / "logs" / "train.log"
    run_module(capsys, command="echo started; sleep 60", log_file=str(log))
    wait_for(log)
    time.sleep(2.2)
    # One short round, as the train role waits: the silence before it counts.
    result = run_module(
        capsys, state="finished", log_file=str(log), timeout=1, stall_timeout=1, poll_interval=0.2,
        fail_on_error=False,
    )  # fmt: skip
    assert result["status"] == "failed"
    assert result["reason"] == "its log did not grow for 1 s (stopped it)"
    assert result["actions"] == ["stop train: its log is silent"]


def test_secret_env_reaches_the_command_but_no_argv_and_no_record(docker, tmp_path, capsys):
    seen = tmp_path / "seen"
    secret = "sk-lab-0123456789"
    args = {"name": "serve", "command": f'echo "$VLLM_API_KEY" > {seen}', "log_file": str(tmp_path / "s.log"),
            "secret_env": {"VLLM_API_KEY": secret}, "wait": True}  # fmt: skip
    result = run_module(capsys, **args)
    assert result["status"] == "succeeded"
    assert seen.read_text().strip() == secret
    assert not any(secret in word for call in calls(docker) for word in call)
    env_files = [call[call.index("--env-file") + 1] for call in calls(docker) if "--env-file" in call]
    assert env_files and not any(Path(path).exists() for path in env_files)
    record = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert record["secret_env"] == ["VLLM_API_KEY"]
    assert secret not in json.dumps(record) and secret not in json.dumps(result)


def test_a_server_never_ready_fails_at_the_timeout_and_is_stopped(docker, tmp_path, capsys):
    log = tmp_path / "never.log"
    started = run_module(capsys, name="never", command="sleep 60", log_file=str(log))
    assert started["status"] == "running"
    # A port nothing listens on: the server never answers.
    result = run_module(capsys, name="never", state="ready", url="http://127.0.0.1:9/health",
                        log_file=str(log), timeout=1, poll_interval=0.2)  # fmt: skip
    assert result["failed"] and result["status"] == "stopped"
    assert "not ready after 1 s" in result["msg"] and "(stopped it)" in result["msg"]
    after = run_module(capsys, name="never", state="status", log_file=str(log))
    assert after["status"] != "running"
