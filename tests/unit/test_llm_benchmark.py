"""llm_benchmark: the module run by Ansible against the synthetic server on loopback, and the
normalization of `vllm bench serve` results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import vllm_bench

from tests.unit.test_bench import synthetic_server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The keys `vllm bench serve --save-result` writes (vLLM's benchmarks/serve.py), with chosen values;
# written here, not recorded on an NPU.
VLLM_RESULT = {
    "duration": 20.0, "completed": 98, "num_prompts": 100, "total_input_tokens": 12800,
    "total_output_tokens": 12544, "request_throughput": 4.9, "output_throughput": 627.2,
    "total_token_throughput": 1267.2, "mean_ttft_ms": 120.0, "median_ttft_ms": 110.0, "p90_ttft_ms": 150.0,
    "p99_ttft_ms": 300.0, "mean_tpot_ms": 20.0, "median_tpot_ms": 19.0, "p99_tpot_ms": 30.0,
    "mean_itl_ms": 20.5, "median_itl_ms": 19.5, "p99_itl_ms": 45.0, "mean_e2el_ms": 2600.0,
    "median_e2el_ms": 2550.0, "p99_e2el_ms": 3100.0, "max_concurrency": 16,
}  # fmt: skip


def test_vllm_results_are_normalized_into_our_summary():
    summary = vllm_bench.normalize(VLLM_RESULT)
    assert (summary["requests"], summary["completed"], summary["failed"]) == (100, 98, 2)
    assert summary["errors"] == {"vllm": 2}
    assert summary["ttft_ms"] == {"count": 98, "mean": 120.0, "p50": 110.0, "p90": 150.0, "p99": 300.0}
    assert summary["tpot_ms"] == {"count": 98, "mean": 20.0, "p50": 19.0, "p99": 30.0}
    assert summary["e2e_ms"]["p50"] == 2550.0 and summary["output_token_throughput"] == 627.2
    assert vllm_bench.normalize({"completed": 0, "num_prompts": 3})["ttft_ms"] == {"count": 0}


def test_vllm_command_line():
    line = vllm_bench.command(url="http://127.0.0.1:8000", model="/models/q", endpoint="chat", concurrency=16,
                              rate=None, requests=100, input_tokens=128, output_tokens=64, result_dir="/tmp",
                              result_file="r.json")  # fmt: skip
    assert line.startswith("vllm bench serve --backend openai-chat --base-url http://127.0.0.1:8000")
    assert "--endpoint /v1/chat/completions" in line and "--max-concurrency 16 --request-rate inf" in line
    assert "--random-input-len 128 --random-output-len 64 --num-prompts 100" in line
    rated = vllm_bench.command(url="u", model="m", endpoint="completions", concurrency=None, rate=2.5,
                               requests=10, input_tokens=8, output_tokens=8, result_dir="/tmp",
                               result_file="r.json")  # fmt: skip
    assert "--backend vllm" in rated and rated.endswith("--request-rate 2.5")


def test_the_module_through_ansible_against_the_synthetic_server(tmp_path):
    with synthetic_server(ttft_ms=10, itl_ms=1) as port:
        args = json.dumps({"url": f"http://127.0.0.1:{port}", "model": "synthetic", "concurrency": [1, 4],
                           "requests": 8, "output_tokens": 6, "input_tokens": 4, "dest": str(tmp_path / "b"),
                           "slo": {"ttft_ms": 10000}})  # fmt: skip
        result = subprocess.run(
            [str(BIN / "ansible"), "localhost", "-m", "llm_benchmark", "-a", args, "-e",
             f"ansible_python_interpreter={sys.executable}", "-o"],
            capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
            env=os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                              "ANSIBLE_INVENTORY": "localhost,", "ANSIBLE_CONNECTION": "local"},
        )  # fmt: skip
    assert "CHANGED" in result.stdout, result.stdout + result.stderr
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert [(run["level"], run["summary"]["completed"]) for run in report["runs"]] == [(1, 8), (4, 8)]
    assert (tmp_path / "b" / "bench.md").read_text().startswith("# Benchmark: synthetic")
