"""run_stop run in-process against this machine's real /proc: real processes started here with and
without a run's id in their environment; only those of the run are stopped, SIGKILL after the grace
for one that ignores SIGTERM, and check mode stops nothing."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.module_utils.run_processes import (
    RUN_ID_VARIABLE,
    processes_of_run,
    run_id_problem,
    stop_processes,
)
from ansible_collections.npufleet.ascend.plugins.modules import run_stop

from npufleet import api

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
)


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        run_stop.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def processes():
    """Start processes with the given run ids (None: no id), and reap them all at the end."""
    started: list[subprocess.Popen] = []

    def start(run_id: str | None, argv: list[str] | None = None) -> subprocess.Popen:
        env = {key: value for key, value in os.environ.items() if key != RUN_ID_VARIABLE}
        if run_id:
            env[RUN_ID_VARIABLE] = run_id
        process = subprocess.Popen(argv or ["sleep", "60"], env=env, stdout=subprocess.PIPE)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def new_id() -> str:
    return f"test-{secrets.token_hex(6)}"


def test_only_the_runs_processes_and_their_children_are_found(processes):
    run_id, other_id = new_id(), new_id()
    ours = processes(run_id, ["bash", "-c", "sleep 60 & wait"])
    theirs = processes(other_id)
    no_run = processes(None)
    # The child inherits the environment, as a module's children and a rank's workers do.
    deadline = time.monotonic() + 5
    while len(found := processes_of_run(run_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ours.pid in found and len(found) == 2
    assert theirs.pid not in found and no_run.pid not in found
    # An id that is a prefix of another's matches nothing of the other run.
    assert processes_of_run(run_id[:-1]) == []
    assert processes_of_run(run_id, own_namespace_only=True) == found


def test_own_namespace_only_leaves_the_processes_of_containers(processes):
    """What the controller stops: not a lab node's processes, which are in other PID namespaces."""
    run_id = new_id()
    here = processes(run_id)
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "--pid", "--fork", "true"], check=False).returncode:
        pytest.skip("no new PID namespace here (unshare needs root)")
    elsewhere = processes(run_id, [unshare, "--pid", "--fork", "sleep", "60"])
    deadline = time.monotonic() + 5
    while len(everywhere := processes_of_run(run_id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    # unshare itself, in this namespace; its sleep, in the new one.
    assert here.pid in everywhere and elsewhere.pid in everywhere and len(everywhere) == 3
    assert processes_of_run(run_id, own_namespace_only=True) == sorted([here.pid, elsewhere.pid])


def test_stop_sends_sigterm_then_sigkill_after_the_grace(processes):
    run_id = new_id()
    polite = processes(run_id)
    stubborn = processes(run_id, [sys.executable, "-c", IGNORES_SIGTERM])
    stubborn.stdout.readline()  # its handler is set
    started = time.monotonic()
    left = stop_processes(processes_of_run(run_id), grace=1)
    took = time.monotonic() - started
    assert left == []
    assert polite.wait(timeout=5) == -15  # SIGTERM
    assert stubborn.wait(timeout=5) == -9  # SIGKILL, once the grace was over
    assert 1 <= took < 8
    assert processes_of_run(run_id) == []


def test_the_module_stops_the_run_and_says_what_it_stopped(processes, capsys):
    run_id = new_id()
    sleeper = processes(run_id)
    bystander = processes(None)
    checked = run_module(capsys, run_id=run_id, _ansible_check_mode=True)
    assert checked["changed"] and checked["left"] == []
    assert checked["summary"] == "would stop 1 process: sleep"
    assert sleeper.poll() is None
    stopped = run_module(capsys, run_id=run_id, grace=2)
    assert stopped["changed"] and stopped["summary"] == "stopped 1 process: sleep"
    assert [item["pid"] for item in stopped["stopped"]] == [sleeper.pid]
    assert stopped["stopped"][0]["cmdline"] == "sleep 60" and stopped["stopped"][0]["container"] == ""
    assert sleeper.wait(timeout=5) == -15 and bystander.poll() is None
    again = run_module(capsys, run_id=run_id)
    assert not again["changed"] and again["summary"] == "nothing of the run was running"


@pytest.mark.parametrize("run_id", ["", "short", "UPPER-case-id", "../../etc", "a" * 65, "id with space"])
def test_a_run_id_that_could_match_other_runs_is_refused(capsys, run_id):
    assert run_id_problem(run_id)
    result = run_module(capsys, run_id=run_id)
    assert result["failed"] and "must be 8 to 64 lower-case letters" in result["msg"]


def test_a_grace_of_zero_is_refused(capsys):
    result = run_module(capsys, run_id=new_id(), grace=0)
    assert result["failed"] and result["msg"] == "grace must be a number of seconds above 0, got 0.0"


def test_the_api_and_the_nodes_name_the_variable_alike():
    assert api.RUN_ID_VARIABLE == RUN_ID_VARIABLE
