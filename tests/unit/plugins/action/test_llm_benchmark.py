"""llm_benchmark: the action (backend npufleet, on the controller) run by Ansible against the synthetic
server on loopback, the module's node side (backend vllm, and its refusal of backend npufleet), and the
normalization of `vllm bench serve` results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.npufleet.ascend.plugins.module_utils import vllm_bench

from tests.unit.plugins.plugin_utils.test_bench import socket_port, synthetic_server

ROOT = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent
MODULE = "npufleet.ascend.llm_benchmark"

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


def adhoc(args: dict, *options: str) -> subprocess.CompletedProcess:
    """``ansible localhost -m npufleet.ascend.llm_benchmark`` from the checkout (its ansible.cfg, so the
    collection is the checkout), with this Python as the target's. The inventory is given with -i:
    ANSIBLE_INVENTORY is a list of paths, and "localhost," there would parse the checkout as one."""
    return subprocess.run(
        [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-o", "-m", MODULE,
         "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}", *options],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
        env=os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip


def test_the_action_runs_on_the_controller_against_the_synthetic_server(tmp_path):
    with synthetic_server(ttft_ms=10, itl_ms=1) as port:
        result = adhoc({"url": f"http://127.0.0.1:{port}", "model": "synthetic", "concurrency": [1, 4],
                        "requests": 8, "output_tokens": 6, "input_tokens": 4, "dest": str(tmp_path / "b"),
                        "slo": {"ttft_ms": 10000}})  # fmt: skip
    assert "CHANGED" in result.stdout, result.stdout + result.stderr
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert [(run["level"], run["summary"]["completed"]) for run in report["runs"]] == [(1, 8), (4, 8)]
    assert (tmp_path / "b" / "bench.md").read_text().startswith("# Benchmark: synthetic")
    assert (tmp_path / "b" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert f'"json": "{tmp_path / "b" / "bench.json"}"' in result.stdout


def test_the_action_fails_when_every_request_failed_and_checks_its_arguments(tmp_path):
    dead = adhoc({"url": f"http://127.0.0.1:{socket_port()}", "model": "m", "concurrency": [2], "requests": 2,
                  "warmup": 0, "dest": str(tmp_path / "dead")})  # fmt: skip
    assert "FAILED" in dead.stdout and "every request failed against http://127.0.0.1:" in dead.stdout
    assert json.loads((tmp_path / "dead" / "bench.json").read_text())["runs"][0]["summary"]["errors"] == {
        "connection": 2
    }
    both = adhoc({"url": "http://127.0.0.1:9", "model": "m", "concurrency": [1], "rate": [1.0], "dest": "x"})
    assert "parameters are mutually exclusive: concurrency|rate" in both.stdout + both.stderr
    params = {"url": "http://127.0.0.1:9", "model": "m", "concurrency": [1], "dest": str(tmp_path / "c")}
    # Check mode sends nothing and writes no report: it checks the options as a run would, and says
    # what would run (changed: a run writes its report).
    checked = adhoc(params, "--check")
    assert "CHANGED" in checked.stdout and not (tmp_path / "c").exists()
    assert (
        "check mode: would benchmark model 'm' at http://127.0.0.1:9 from the controller: concurrency 1,"
        " 100 requests a level after 2 warm-up, synthetic prompts of 128 words, up to 128 tokens each (chat"
        " endpoint, streamed)"
    ) in checked.stdout
    missing = adhoc(params | {"dataset": str(tmp_path / "prompts.jsonl")}, "--check")
    assert "FAILED" in missing.stdout and f"{tmp_path / 'prompts.jsonl'}" in missing.stdout
    refused = adhoc(params | {"concurrency": [0]}, "--check")
    assert "FAILED" in refused.stdout and "every concurrency must be at least 1, got [0]" in refused.stdout


def test_backend_vllm_goes_to_the_module_and_needs_a_container(tmp_path):
    result = adhoc({"url": "http://127.0.0.1:8000", "model": "m", "backend": "vllm", "concurrency": [1],
                    "dest": str(tmp_path / "v")})  # fmt: skip
    assert "FAILED" in result.stdout
    assert "backend vllm runs vllm bench serve in the serving container: set container" in result.stdout


def test_the_module_on_a_node_refuses_backend_npufleet(tmp_path):
    # Run as Ansible runs it on a node, without its action plugin: arguments in a file.
    args = tmp_path / "args.json"
    params = {"url": "http://127.0.0.1:9", "model": "m", "concurrency": [1], "dest": str(tmp_path / "n")}
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    result = subprocess.run(
        [sys.executable, str(ROOT / "plugins/modules/llm_benchmark.py"), str(args)],
        capture_output=True, text=True, check=False, timeout=60,
        env=os.environ | {"PYTHONPATH": str(ROOT / "collections")},
    )  # fmt: skip
    answer = json.loads(result.stdout)
    assert answer["failed"] and answer["msg"].startswith(
        "backend npufleet runs on the controller, in the action plugin of npufleet.ascend.llm_benchmark"
    )
    assert not (tmp_path / "n").exists()


def test_the_bench_role_benchmarks_from_the_controller_without_touching_the_node(tmp_path):
    # The node is an address nothing answers on, over SSH: the npufleet backend must not connect to it
    # (with the node's readings off: they are read on the serving node).
    playbook = tmp_path / "bench.yml"
    playbook.write_text(
        "- name: Bench\n  hosts: all\n  gather_facts: false\n  roles:\n    - role: npufleet.ascend.bench\n"
    )
    variables = {"ansible_connection": "ssh", "ansible_host": "192.0.2.1",
                 "npufleet_report_dir": str(tmp_path), "bench_dest": str(tmp_path / "role"),
                 "bench_model": "synthetic", "bench_rate": [50], "bench_requests": 4,
                 "bench_output_tokens": 3, "bench_node_readings": False}  # fmt: skip
    with synthetic_server(ttft_ms=2, itl_ms=1) as port:
        variables["bench_url"] = f"http://127.0.0.1:{port}"
        result = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", "node.invalid,", str(playbook),
             "-e", json.dumps(variables)],
            capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
            env=os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                              "ANSIBLE_TIMEOUT": "5"},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# Benchmark: synthetic at http://127.0.0.1:" in result.stdout  # the report, shown
    report = json.loads((tmp_path / "role" / "bench.json").read_text())
    assert [(run["mode"], run["level"], run["summary"]["completed"]) for run in report["runs"]] == [
        ("rate", 50.0, 4)
    ]


def test_the_action_sends_the_api_key_and_shows_it_nowhere(tmp_path):
    secret = "sk-action-secret-9"
    with synthetic_server(ttft_ms=2, itl_ms=1, api_key=secret) as port:
        args = {"url": f"http://127.0.0.1:{port}", "model": "synthetic", "concurrency": [2], "requests": 4,
                "output_tokens": 3, "warmup": 0, "dest": str(tmp_path / "k")}  # fmt: skip
        keyed = adhoc(args | {"api_key": secret}, "-vvv")
        keyless = adhoc(args | {"dest": str(tmp_path / "none")})
    assert "CHANGED" in keyed.stdout, keyed.stdout + keyed.stderr
    assert secret not in keyed.stdout + keyed.stderr
    for path in (tmp_path / "k").iterdir():
        assert secret.encode() not in path.read_bytes(), path
    assert "FAILED" in keyless.stdout and "401 Unauthorized: it requires an API key" in keyless.stdout
