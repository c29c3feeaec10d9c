"""finetrainers' CogVideoX SFT output read for the report (finetrainers_metrics), on a recorded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils import finetrainers_metrics
from ansible_collections.npufleet.ascend.plugins.plugin_utils.training_report import ReportError, write_report

DATA = Path(__file__).resolve().parents[3] / "data" / "training"
# Recorded here (tests/data/SOURCES.md): finetrainers at the manual's revision 80d1150 with the lab's CPU
# adaptation, training/cogvideox_text_to_video_sft.py on the lab's tiny CogVideoX, 12 steps, torch 2.13.0.
RUN = DATA / "finetrainers-80d1150-cogvideox-sft-cpu.log"
# The whole log of a lab run through the train role and llm_launch (the data cache, then 12 steps).
LAB_RUN = DATA / "finetrainers-80d1150-cogvideox-sft-cpu-lab.log"
# The same script without the CPU adaptation: it stops before the first step.
UNPATCHED = DATA / "finetrainers-80d1150-cogvideox-sft-cpu-unpatched.log"

# The losses of the 12 steps as tqdm's postfix drew them (3 significant digits).
LOSSES = [1.29, 1.68, 1.86, 1.9, 1.36, 2.0, 1.39, 2.59, 2.07, 1.85, 1.92, 1.97]


def test_every_step_with_its_own_loss_from_the_redrawn_bar():
    parsed = finetrainers_metrics.read_finetrainers_log(RUN.read_text())
    steps = parsed["steps"]
    assert [record["step"] for record in steps] == list(range(1, 13))
    assert all(record["total_steps"] == 12 for record in steps)
    # Step 7 is drawn first with step 6's postfix (loss=2), then with its own (loss=1.39).
    assert [loss for _, loss in finetrainers_metrics.losses(steps)] == LOSSES
    assert steps[0]["logs"]["lr"] == pytest.approx(1e-4) and steps[-1]["logs"]["lr"] == 0
    assert steps[7]["logs"]["gradient_norm_before_clip"] == pytest.approx(2.65)
    assert parsed["total_train_batch_size"] == 1


def test_throughput_in_the_unit_tqdm_printed():
    parsed = finetrainers_metrics.read_finetrainers_log(RUN.read_text())
    result = finetrainers_metrics.finetrainers_throughput(parsed, cards=1)
    # The bar's last rate is 21.33it/s (tqdm redraws its rate every 0.1 s, not every step).
    assert result["as_printed"] == "21.33it/s"
    assert result["steps_per_second"] == pytest.approx(21.33)
    assert result["seconds_per_step"] == pytest.approx(1 / 21.33)
    assert result["videos_per_second_per_card"] == pytest.approx(21.33)
    assert (result["steps"], result["total_steps"]) == (12, 12)


def test_seconds_per_step_and_several_cards():
    text = (
        "  Total train batch size (w. parallel, distributed & accumulation) = 32\n"
        "Steps:  50%|█████     | 1/2 [00:12<00:12, 12.50s/it]\r"
        "Steps:  50%|█████     | 1/2 [00:12<00:12, 12.50s/it, loss=0.5, lr=1e-4]\r"
        "Steps: 100%|██████████| 2/2 [00:25<00:00, 12.80s/it, loss=0.4, lr=0]\n"
    )
    result = finetrainers_metrics.finetrainers_throughput(
        finetrainers_metrics.read_finetrainers_log(text), cards=8
    )
    assert result["as_printed"] == "12.8s/it"
    assert result["steps_per_second"] == pytest.approx(1 / 12.8)
    assert result["videos_per_second_per_card"] == pytest.approx(32 / 12.8 / 8)
    assert result["elapsed_seconds"] == 25


@pytest.mark.parametrize(("text", "seconds"), [("00:04", 4), ("01:05", 65), ("1:02:03", 3723)])
def test_tqdm_elapsed_forms(text, seconds):
    assert finetrainers_metrics.tqdm_seconds(text) == seconds


def test_a_run_that_stopped_before_its_first_step_has_no_figures():
    parsed = finetrainers_metrics.read_finetrainers_log(UNPATCHED.read_text())
    assert parsed["steps"] == []
    with pytest.raises(ValueError, match="no 'Steps' bar with a rate"):
        finetrainers_metrics.finetrainers_throughput(parsed, cards=1)


def params(log: Path, dest: Path) -> dict:
    return {
        "log": str(log), "format": "finetrainers", "cards": 1, "seq_length": None, "global_batch_size": None,
        "min_window_seconds": 10, "dest": str(dest),
        "info": {"run": "cogvideox-sft", "framework": "finetrainers"},
    }  # fmt: skip


def test_the_report_of_the_recorded_run_and_a_rerun_that_changes_nothing(tmp_path):
    first = write_report(params(RUN, tmp_path))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["loss_points"] == 12 and report["loss"]["first"] == 1.29 and report["loss"]["last"] == 1.97
    # A random-weight model on 4 clips for 12 steps: the loss does not fall, and the report says so.
    assert report["loss"]["verdict"] == "not falling"
    markdown = (tmp_path / "report.md").read_text()
    assert "| speed (as printed) | **21.33it/s** |" in markdown and "tokens/s" not in markdown
    assert first.changed and not write_report(params(RUN, tmp_path)).changed


def test_the_report_of_a_run_without_steps_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ReportError, match="no 'Steps' bar"):
        write_report(params(UNPATCHED, tmp_path))


def test_the_lab_run_through_the_role_after_its_data_cache():
    parsed = finetrainers_metrics.read_finetrainers_log(LAB_RUN.read_text())
    assert [record["step"] for record in parsed["steps"]] == list(range(1, 13))
    assert finetrainers_metrics.losses(parsed["steps"])[-1] == (12, 1.86)
    result = finetrainers_metrics.finetrainers_throughput(parsed, cards=1)
    # Step 12's first drawing (13.32it/s), not the bar's closing one after saving (3.97it/s).
    assert result["as_printed"] == "13.32it/s"
