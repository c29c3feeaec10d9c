"""Training logic: the manual's parallel plan table, report math on recorded LLaMA-Factory logs,
the loss verdict, and llm_launch's reading of logs and its shell lines."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import launch_log
import parallel_plan
import pytest
import training_metrics
from ansible.errors import AnsibleFilterError
from train_assets import train_asset_parents, train_asset_problems

from tests.fixtures import SEED_TABLES

DATA = Path(__file__).resolve().parents[1] / "data" / "training"
MANUAL_TABLE = SEED_TABLES / "training_parallel_plan.csv"
# Recorded here: llamafactory 0.9.3 on the CPU, torch 2.13.0, the lab's tiny Qwen2 (lab_sft, 64
# samples x 2 epochs); one process, and two processes with torchrun and gloo.
TWO_RANKS = DATA / "llamafactory-0.9.3-cpu-2ranks-trainer_log.jsonl"
ONE_RANK = DATA / "llamafactory-0.9.3-cpu-1rank-trainer_log.jsonl"


def table_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


ROWS = table_rows(parallel_plan.PLAN_TABLE)
# The manual's table asks TP 8 x PP 2 = 16 NPUs of one 8-NPU node here: the role refuses it as written.
ROWS_THAT_CANNOT_RUN = {("baichuan2-13b", "full", "8192")}


def test_the_project_carries_the_manuals_table_unchanged():
    assert table_rows(MANUAL_TABLE) == ROWS
    assert len(ROWS) == 124


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['model']}-{r['strategy']}-{r['seq_len']}" for r in ROWS])
def test_parallel_plan_returns_each_row_of_the_table(row):
    plan = parallel_plan.parallel_plan(row["model"].upper(), row["strategy"], row["seq_len"])
    assert plan == row | {
        key: int(row[key]) for key in ("seq_len", "tp", "pp", "mbs", "nodes", "npus_per_node")
    }
    problems = parallel_plan.parallel_plan_problems(plan, plan["nodes"], plan["npus_per_node"])
    assert problems["warnings"] == []
    if (row["model"], row["strategy"], row["seq_len"]) in ROWS_THAT_CANNOT_RUN:
        assert problems["errors"] == [
            "TP x PP = 8 x 2 = 16 does not divide the world size 8 (1 node(s) x 8 NPUs):"
            " change train_tp/train_pp or the NPUs per node"
        ]
    else:
        # Every other plan of the manual runs on the nodes and NPUs it recommends.
        assert problems["errors"] == []
        assert problems["data_parallel"] * plan["tp"] * plan["pp"] == plan["nodes"] * plan["npus_per_node"]


def test_known_rows_written_out():
    assert parallel_plan.parallel_plan("llama2-70b", "full", 8192) | {} == {
        "family": "llama2", "model": "llama2-70b", "strategy": "full", "seq_len": 8192,
        "tp": 8, "pp": 8, "mbs": 1, "nodes": 8, "npus_per_node": 8,
    }  # fmt: skip
    glm = parallel_plan.parallel_plan("glm4-9b", "lora", "4096")
    assert (glm["tp"], glm["pp"], glm["mbs"], glm["nodes"], glm["npus_per_node"]) == (1, 2, 1, 1, 4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("gpt-5", "lora", 4096),
            "no plan for model 'gpt-5' in the manual's table; known models: baichuan2-13b",
        ),
        (("mistral-7b", "lora", 8192), "has no 'lora' plan at sequence length 8192 for mistral-7b; it has"),
        (("mixtral-8x7b", "lora", 4096), "it has (strategy/seq_len): full/4096, full/8192"),
        (("qwen2-7b", "lora", "long"), "seq_len must be a number, got 'long'"),
    ],
)
def test_parallel_plan_refuses_what_the_table_lacks(args, message):
    with pytest.raises(AnsibleFilterError) as error:
        parallel_plan.parallel_plan(*args)
    assert message in str(error.value)


def test_bad_plans_are_refused_and_small_inventories_warned():
    plan = parallel_plan.parallel_plan("qwen2-72b", "full", 4096)  # TP 8, PP 4, 4 nodes of 8
    problems = parallel_plan.parallel_plan_problems(plan, 2, 8)
    assert problems["errors"] == [
        "TP x PP = 8 x 4 = 32 does not divide the world size 16 (2 node(s) x 8 NPUs):"
        " change train_tp/train_pp or the NPUs per node"
    ]
    assert problems["warnings"] == [
        "the manual recommends 4 node(s) for qwen2-72b (full, seq_len 4096); the inventory has 2"
    ]
    odd = parallel_plan.parallel_plan_problems({"tp": 4, "pp": 2}, 1, 4)
    assert odd["errors"] == [
        "TP x PP = 4 x 2 = 8 does not divide the world size 4 (1 node(s) x 4 NPUs):"
        " change train_tp/train_pp or the NPUs per node"
    ]
    assert parallel_plan.parallel_plan_problems({"tp": 3, "pp": 1}, 2, 8)["errors"]
    assert parallel_plan.parallel_plan_problems({"tp": 0, "pp": 1}, 1, 8)["errors"] == [
        "TP and PP must be at least 1, got TP=0, PP=1"
    ]
    few = parallel_plan.parallel_plan_problems(
        parallel_plan.parallel_plan("baichuan2-13b", "lora", 8192), 1, 8
    )
    assert few["errors"] == []
    assert few["warnings"] == [
        "the manual recommends 2 node(s) for baichuan2-13b (lora, seq_len 8192); the inventory has 1"
    ]
    assert parallel_plan.parallel_plan_problems({"tp": 1, "pp": 1, "npus_per_node": 8}, 1, 4)["warnings"] == [
        "the manual recommends 8 NPUs per node; 4 are given"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0:00:00", 0), ("0:00:27", 27), ("1:02:03", 3723), ("12:00:00", 43200), ("1 day, 2:03:04", 93784),
     ("3 days, 0:00:01", 259201), ("0:00:05.5", 5)],
)  # fmt: skip
def test_elapsed_time_strings(text, seconds):
    assert training_metrics.elapsed_seconds(text) == seconds


@pytest.mark.parametrize("text", ["27", "0:27", "a:b:c", ""])
def test_elapsed_time_refuses_other_forms(text):
    with pytest.raises(ValueError, match="is not H:MM:SS"):
        training_metrics.elapsed_seconds(text)


def test_throughput_by_the_manuals_formula_on_a_recorded_two_rank_log():
    records, bad = training_metrics.read_trainer_log(TWO_RANKS.read_text())
    assert (len(records), bad) == (33, 0)
    result = training_metrics.llamafactory_throughput(records, cards=2)
    # 32 step lines; the middle 60% runs from step 7 (6720 tokens, 0:00:07) to step 26 (24960, 0:00:22).
    assert result["window"] == {"first_step": 7, "last_step": 26, "delta_tokens": 18240, "delta_seconds": 15}
    assert result["tokens_per_second_per_card"] == pytest.approx(18240 / 15 / 2)  # 608.0
    assert result["llamafactory_tokens_per_second_per_card"] == pytest.approx(1098.94 / 2)
    assert result["method"].startswith(
        "manual's formula: delta total_tokens / delta elapsed_time / 2 card(s)"
    )
    assert result["steps"] == 32


def test_a_short_run_falls_back_to_llamafactorys_figure_and_says_so():
    records, _ = training_metrics.read_trainer_log(ONE_RANK.read_text())
    result = training_metrics.llamafactory_throughput(records, cards=1)
    # The whole run took 1 s: the one-second elapsed_time cannot measure a window.
    assert result["window"]["delta_seconds"] < 10
    assert result["tokens_per_second_per_card"] == pytest.approx(20230.83)  # step 64's throughput
    assert "LLaMA-Factory's throughput field / 1 card(s)" in result["method"]
    assert "too short for one-second elapsed_time" in result["method"]
    longer = training_metrics.llamafactory_throughput(records, cards=1, min_window_seconds=0)
    assert longer["method"].startswith("manual's formula")


def test_unreadable_lines_are_counted_and_missing_fields_refused():
    records, bad = training_metrics.read_trainer_log('{"current_steps": 1}\nnot json\n[1, 2]\n\n')
    assert (records, bad) == ([{"current_steps": 1}], 2)
    with pytest.raises(ValueError, match="no step in the log carries total_tokens and elapsed_time"):
        training_metrics.llamafactory_throughput(records, cards=1)
    with pytest.raises(ValueError, match="cards must be at least 1"):
        training_metrics.llamafactory_throughput(records, cards=0)


# Megatron-LM's training_log line format (megatron/training/training.py), as MindSpeed-LLM prints it;
# written here with chosen values, not recorded on an NPU (none is reachable).
MEGATRON_LOG = "\n".join(
    f" [2026-11-28 03:00:{i:02d}] iteration {i:8d}/{50:8d} | consumed samples: {i * 64:12d} |"
    f" elapsed time per iteration (ms): {ms:.1f} | throughput per GPU (TFLOP/s/GPU): {tflops:.1f} |"
    f" learning rate: 1.000000E-05 | global batch size: {64:5d} | lm loss: {loss:.6E} | loss scale: 1.0 |"
    for i, ms, tflops, loss in [
        (1, 9000.0, 60.0, 10.5), (2, 4100.0, 150.0, 9.8), (3, 4000.0, 160.0, 9.0), (4, 4000.0, 160.0, 8.1),
        (5, 3900.0, 170.0, 7.9), (6, 4000.0, 160.0, 7.8), (7, 4000.0, 160.0, 7.8), (8, 4100.0, 150.0, 7.7),
        (9, 4000.0, 160.0, 7.75), (10, 5000.0, 120.0, 7.72),
    ]
)  # fmt: skip


def test_megatron_throughput_from_iteration_lines():
    records = training_metrics.read_megatron_log("startup noise\n" + MEGATRON_LOG)
    assert len(records) == 10
    assert records[0] == {"iteration": 1, "total_iterations": 50, "ms_per_iteration": 9000.0, "tflops": 60.0,
                          "global_batch_size": 64, "loss": 10.5}  # fmt: skip
    result = training_metrics.megatron_throughput(records, seq_length=4096, world_size=16)
    # Middle 60% of 10 iterations: 3 to 8 (first two are warm-up, the last one slow).
    assert result["window"] == {"first_step": 3, "last_step": 8}
    expected = [64 * 4096 / (ms / 1000) / 16 for ms in (4000, 4000, 3900, 4000, 4000, 4100)]
    assert result["tokens_per_second_per_card"] == pytest.approx(sum(expected) / 6)
    assert result["tflops_per_card"] == pytest.approx((160 + 160 + 170 + 160 + 160 + 150) / 6)
    with pytest.raises(ValueError, match="no iteration line"):
        training_metrics.megatron_throughput([], seq_length=4096, world_size=8)


def test_loss_verdicts():
    records, _ = training_metrics.read_trainer_log(TWO_RANKS.read_text())
    recorded = training_metrics.judge_loss([r["loss"] for r in records if "loss" in r])
    assert recorded["verdict"] == "converging"
    assert recorded["start_mean"] == pytest.approx((5.6984 + 5.7533 + 5.7204) / 3)
    assert (recorded["first"], recorded["last"], recorded["minimum"]) == (5.6984, 5.5246, 5.4928)
    falling = training_metrics.judge_loss([10 - i * 0.15 for i in range(60)])  # a straight line
    assert falling["verdict"] == "falling" and "still falling" in falling["summary"]
    assert training_metrics.judge_loss([2.0, 2.1, 1.98, 2.05, 2.0, 2.02, 1.99])["verdict"] == "not falling"
    assert training_metrics.judge_loss([3.0, 2.0, float("nan"), 1.0, 1, 1])["verdict"] == "diverged"
    assert training_metrics.judge_loss([3.0, 2.0])["verdict"] == "too short"


def test_markdown_report_shows_both_figures():
    records, _ = training_metrics.read_trainer_log(TWO_RANKS.read_text())
    report = {
        "run": "sft", "framework": "llamafactory", "nodes": 2, "cards": 2, "plot": "loss.png",
        "throughput": training_metrics.llamafactory_throughput(records, cards=2),
        "loss": training_metrics.judge_loss([r["loss"] for r in records if "loss" in r]),
    }  # fmt: skip
    text = training_metrics.markdown(report)
    assert "| tokens/s per card | **608.0** |" in text
    assert "| LLaMA-Factory's own figure per card | 549.5 |" in text
    assert "| loss | converging: falls" in text
    assert "![loss](loss.png)" in text


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


def test_asset_problems_name_each_entry():
    assert train_asset_problems([
        {"name": "code", "git": "https://example.invalid/x.git", "version": "abc", "dest": "code"},
        {"name": "weights", "src": "/data/w", "dest": "models/w"},
        {"path": "/mnt/sfs_turbo/d", "dest": "data"},
    ]) == []  # fmt: skip
    assert train_asset_problems([
        {"name": "w", "git": "file:///srv/w.git", "dest": "w"},
        {"src": "/a", "path": "/b", "dest": "x"},
        {"name": "abs", "src": "/a", "dest": "/etc"},
        {"name": "up", "src": "/a", "dest": "a/../../b"},
        {"name": "none", "dest": "n", "sha": 1},
        "text",
    ]) == [
        "train_assets[0] (w) clones file:///srv/w.git without version: pin the commit (or tag) so every node"
        " gets the same code and weights",
        "train_assets[1] (x) needs exactly one source: git (a repository), src (a path on the controller) or"
        " path (a path on the node, a shared volume say); found src, path",
        "train_assets[2] (abs) dest '/etc' must be relative to train_host_work_dir, without '..'",
        "train_assets[3] (up) dest 'a/../../b' must be relative to train_host_work_dir, without '..'",
        "train_assets[4] (none) needs exactly one source: git (a repository), src (a path on the controller)"
        " or path (a path on the node, a shared volume say); found none",
        "train_assets[4] (none) has unknown keys sha",
        "train_assets[5] must be a mapping, got 'text'",
    ]  # fmt: skip
    assert train_asset_problems("x") == ["train_assets must be a list of entries, got str"]


def test_asset_parents_in_order():
    assets = [{"dest": "models/a/b"}, {"dest": "data/lab"}, {"dest": "models/c"}, {"dest": "code"}]
    assert train_asset_parents(assets) == ["models", "models/a", "data"]
    assert train_asset_parents([]) == []
