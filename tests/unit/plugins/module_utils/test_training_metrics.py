"""Report math on recorded LLaMA-Factory logs and the loss verdict (training_metrics)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils import training_metrics

DATA = Path(__file__).resolve().parents[3] / "data" / "training"
# Recorded here: llamafactory 0.9.3 on the CPU, torch 2.13.0, the lab's tiny Qwen2 (lab_sft, 64
# samples x 2 epochs); one process, and two processes with torchrun and gloo.
TWO_RANKS = DATA / "llamafactory-0.9.3-cpu-2ranks-trainer_log.jsonl"
ONE_RANK = DATA / "llamafactory-0.9.3-cpu-1rank-trainer_log.jsonl"


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


MEGATRON = Path(__file__).resolve().parents[3] / "data" / "megatron"


def test_megatron_lines_recorded_in_public_issues():
    """Real Megatron-LM training_log lines (tests/data/megatron/SOURCES.md), the format MindSpeed-LLM
    prints: 2024's with a timestamp, TFLOP/s and an extra loss; 2022's without them, skipped steps."""
    first = training_metrics.read_megatron_log(
        (MEGATRON / "megatron-lm-issue-756-mixtral-16xh100.log").read_text()
    )
    assert first[0] == {"iteration": 10, "total_iterations": 500000, "ms_per_iteration": 9496.4,
                        "tflops": 137.5, "global_batch_size": 128, "loss": 0.2092005}  # fmt: skip
    later = training_metrics.read_megatron_log(
        (MEGATRON / "megatron-lm-issue-756-mixtral-16xh100-later.log").read_text()
    )
    assert [r["iteration"] for r in later] == [43, 44, 45]
    # lm loss, not load_balancing_loss.
    assert [r["loss"] for r in later] == [1.825991, 1.875063, 1.834162]
    result = training_metrics.megatron_throughput(later, seq_length=4096, world_size=16)
    # Three iterations are too few to leave any out: the mean of all three.
    assert result["window"] == {"first_step": 43, "last_step": 45}
    expected = [128 * 4096 / (ms / 1000) / 16 for ms in (5444.9, 5533.8, 5718.6)]
    assert result["tokens_per_second_per_card"] == pytest.approx(sum(expected) / 3)
    assert result["tflops_per_card"] == pytest.approx((239.8 + 236.0 + 228.4) / 3)
    assert "from the launch's --seq-length" in result["method"]
    bert = training_metrics.read_megatron_log((MEGATRON / "nccl-issue-743-megatron-bert.log").read_text())
    # All its steps were skipped (loss scale search): timed, but without a loss.
    assert bert == [
        {"iteration": 10, "total_iterations": 1000000, "ms_per_iteration": 356.2, "global_batch_size": 4}
    ]


def test_megatron_sequence_length_from_the_logs_arguments():
    # Megatron's _print_args: "  name <dots to column 48> value", sorted, on rank 0 only.
    block = ["------------------------ arguments ------------------------"]
    for name, value in [("global_batch_size", 64), ("seq_length", 2048), ("world_size", 16)]:
        block.append(f"  {name} {'.' * (48 - len(name))} {value}")
    block.append("-------------------- end of arguments ---------------------")
    log = "\n".join(block) + "\n" + MEGATRON_LOG
    arguments = training_metrics.read_megatron_arguments(log)
    assert arguments == {"global_batch_size": "64", "seq_length": "2048", "world_size": "16"}
    records = training_metrics.read_megatron_log(log)
    result = training_metrics.megatron_throughput(
        records, seq_length=4096, world_size=16, arguments=arguments
    )
    assert result["seq_length"] == 2048
    assert "from the log's arguments (the launch asked 4096)" in result["method"]
    expected = [64 * 2048 / (ms / 1000) / 16 for ms in (4000, 4000, 3900, 4000, 4000, 4100)]
    assert result["tokens_per_second_per_card"] == pytest.approx(sum(expected) / 6)
    # A last rank on another node has no arguments block: the launch's value is used.
    assert training_metrics.read_megatron_arguments(MEGATRON_LOG) == {}
