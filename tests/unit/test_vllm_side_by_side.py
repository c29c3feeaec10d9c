"""benchmarks/vllm_side_by_side.py without a vLLM server: its options, the commands it would run (no
secret on them), and the comparison built from two bench.json files in the schema both backends write
(npufleet's from a real run against the synthetic server, vllm's from a result in vllm bench serve's
format, normalized by the module's own code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.vllm_bench import normalize
from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.entry import run_benchmark

from tests.unit.plugins.action.test_llm_benchmark import VLLM_RESULT
from tests.unit.plugins.plugin_utils.test_bench import synthetic_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "vllm_side_by_side.py"
sys.path.insert(0, str(SCRIPT.parent))
import vllm_side_by_side as side  # a script beside its results_io, not a package


def vllm_document(levels: list[int]) -> dict:
    """bench.json as the module's vllm backend writes it, one run per level."""
    runs = [{"mode": "concurrency", "level": level, "summary": normalize(VLLM_RESULT), "samples": {}}
            for level in levels]  # fmt: skip
    return {"config": {"backend": "vllm bench serve", "api_key_sent": True}, "runs": runs}


def test_compare_puts_each_metric_side_by_side_with_its_difference():
    ours = {"runs": [{"mode": "concurrency", "level": 4, "summary": normalize(VLLM_RESULT | {
        "median_ttft_ms": 121.0, "p99_itl_ms": 45.0, "request_throughput": 9.8})}]}  # fmt: skip
    rows = {row["metric"]: row for row in side.compare(ours, vllm_document([1, 4]))}
    assert [row["metric"] for row in side.compare(ours, vllm_document([4]))] == [m[0] for m in side.METRICS]
    assert rows["TTFT p50"]["npufleet"] == 121.0 and rows["TTFT p50"]["vllm"] == 110.0
    assert rows["TTFT p50"]["ratio"] == pytest.approx(1.1) and rows["TTFT p50"]["diff_pct"] == pytest.approx(
        10
    )
    assert rows["ITL p99"]["diff_pct"] == pytest.approx(0)
    assert rows["request throughput"]["ratio"] == pytest.approx(2.0)
    assert rows["prompt tokens / request"]["vllm"] == pytest.approx(12800 / 98)
    assert {row["level"] for row in rows.values()} == {4}  # level 1: vllm only, not compared
    # A figure one tool lacks (no TPOT) is shown as missing, not as 0.
    empty = {"runs": [{"mode": "concurrency", "level": 4, "summary": normalize({"completed": 0})}]}
    tpot = next(row for row in side.compare(empty, vllm_document([4])) if row["metric"] == "TPOT p50")
    assert (tpot["npufleet"], tpot["ratio"], tpot["diff_pct"]) == (None, None, None)


def test_the_commands_alternate_tools_and_carry_no_key(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    args = side.parse(["--inventory", str(inventory), "--model", "tiny-qwen2-sft", "--requests", "8"])
    assert (args.levels, args.requests, args.input_tokens, args.output_tokens) == ([1, 4, 16], 8, 128, 128)
    ours = side.bench_command("npufleet", 4, tmp_path / "n", args)
    theirs = side.bench_command("vllm", 4, tmp_path / "v", args)
    assert ours[1:6] == ["bench", "--inventory", str(inventory), "--backend", "npufleet"]
    assert theirs[5] == "vllm" and theirs[-2:] == ["-e", "bench_model=tiny-qwen2-sft"]
    for command in (ours, theirs):
        assert "--concurrency 4 --requests 8 --input-tokens 128 --output-tokens 128" in " ".join(command)
    url = side.parse(["--inventory", str(inventory), "--url", "http://h:8000", "--model", "m"])
    direct = side.bench_command("npufleet", 1, tmp_path / "n", url)
    assert direct[1:4] == ["bench", "--url", "http://h:8000"] and "--api-key-env" in direct
    assert side.bench_command("vllm", 1, tmp_path / "v", url)[4:6] == ["--backend", "vllm"]
    assert not any("key=" in item.lower() for item in ours + theirs + direct)
    os.environ["NPUFLEET_API_KEY"] = "sk-only-for-url"
    try:
        assert side.environment(direct, url)["NPUFLEET_API_KEY"] == "sk-only-for-url"
        assert "NPUFLEET_API_KEY" not in side.environment(theirs, args)
    finally:
        del os.environ["NPUFLEET_API_KEY"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "1,x"], "is not a comma-separated list of integers"),
        (["--concurrency", "0"], "levels of at least 1"),
        (["--url", "http://h:1"], "--url needs --model"),
        (["--inventory", "/nonexistent.yml"], "inventory /nonexistent.yml does not exist"),
    ],
)
def test_bad_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        side.parse(argv)
    assert message in capsys.readouterr().err


def test_compare_two_recorded_reports_prints_the_table_and_writes_json(tmp_path):
    with synthetic_server(ttft_ms=5, itl_ms=1) as port:
        ours = run_benchmark({"url": f"http://127.0.0.1:{port}", "model": "tiny-qwen2", "concurrency": [1, 4],
                              "requests": 8, "input_tokens": 8, "output_tokens": 6,
                              "dest": str(tmp_path / "npufleet")})  # fmt: skip
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "bench.json").write_text(json.dumps(vllm_document([1, 4, 16])))
    theirs = tmp_path / "vllm" / "bench.json"
    command = [sys.executable, str(SCRIPT), "--compare", ours["files"]["json"], str(theirs)]
    env = {"COLUMNS": "160", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([*command, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          check=False, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "npufleet and vllm bench serve, on" in done.stdout and "TTFT p50 (ms)" in done.stdout
    (written,) = (tmp_path / "out").glob("vllm_side_by_side-*.json")
    document = json.loads(written.read_text())
    assert set(document["machine"]) >= {"host", "cpus", "python"}
    assert {row["level"] for row in document["results"]} == {1, 4}
    completed = [row for row in document["results"] if row["metric"] == "completed"]
    assert [(row["npufleet"], row["vllm"]) for row in completed] == [(8.0, 98.0), (8.0, 98.0)]
    assert document["server"]["model"] == "tiny-qwen2"


class FakeServer:
    """A vLLM server's /tokenize and /detokenize: a greedy longest-match tokenizer whose vocabulary has
    special tokens, a partial byte, a blank, letters and merges ("ab", "cd"), so that decoded ids may
    tokenize to fewer tokens than drawn."""

    VOCAB = ("<|endoftext|>", "<|im_start|>", "\ufffd", " ", *"abcdefgh", "ab", "cd", " the")

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, text: str) -> list[int]:
        tokens, index = [], 0
        while index < len(text):
            best = max((i for i, piece in enumerate(self.VOCAB) if piece and text.startswith(piece, index)),
                       key=lambda i: len(self.VOCAB[i]))  # fmt: skip
            tokens.append(best)
            index += len(self.VOCAB[best])
        return tokens

    def __call__(self, server: str, path: str, body: dict) -> dict:
        self.calls += 1
        assert server == "http://node:8000" and body["model"] == "tiny-qwen2"
        if path == "/detokenize":
            return {"prompt": "".join(self.VOCAB[t] if t < len(self.VOCAB) else "" for t in body["tokens"])}
        tokens = self.encode(body["prompt"])
        return {"count": len(tokens), "tokens": tokens, "max_model_len": 512}


def test_the_prompts_are_random_seeded_and_exactly_as_long_as_asked_in_the_servers_tokenizer():
    server = FakeServer()
    tokenizer = side.Tokenizer("http://node:8000", "tiny-qwen2", post=server)
    assert side.vocab_size(tokenizer) == len(FakeServer.VOCAB)
    pool = side.token_pool(tokenizer, side.random.Random(0))
    assert pool == list(range(4, len(FakeServer.VOCAB)))  # no special token, partial byte or blank
    prompts = side.random_prompts(tokenizer, 6, 40, seed=0)
    assert [len(server.encode(text)) for text in prompts] == [40] * 6
    assert len(set(prompts)) == 6 and side.random_prompts(tokenizer, 6, 40, seed=0) == prompts
    assert side.random_prompts(tokenizer, 6, 40, seed=1) != prompts


def test_one_prompt_set_goes_to_both_tools(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    npu_nodes:\n      hosts:\n        lab-node1:\n"
        "          ansible_host: lab-node1\n          npufleet_node_address: 172.18.0.2\n"
    )
    assert side.lab_node(inventory) == ("lab-node1", "172.18.0.2", 8000)
    texts = ["ab cd", 'say "hi"']
    jsonl = side.write_dataset(tmp_path / "p.jsonl", texts, 64)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert lines == [{"prompt": text, "max_tokens": 64, "ignore_eos": True} for text in texts]
    sharegpt = json.loads(side.write_sharegpt(tmp_path / "p.sharegpt.json", texts).read_text())
    assert [entry["conversations"][0] for entry in sharegpt] == [{"from": "human", "value": t} for t in texts]
    args = side.parse(["--inventory", str(inventory), "--endpoint", "completions"])
    args.datasets = {"npufleet": jsonl, "vllm": "/workspace/bench/p.sharegpt.json"}
    ours = side.bench_command("npufleet", 4, tmp_path / "n", args)
    theirs = side.bench_command("vllm", 4, tmp_path / "v", args)
    assert ours[ours.index("--dataset") + 1] == str(jsonl)
    assert theirs[theirs.index("--dataset") + 1] == "/workspace/bench/p.sharegpt.json"
    assert ours[ours.index("--endpoint") + 1] == theirs[theirs.index("--endpoint") + 1] == "completions"
    merged = side.merge([{"config": {"model": "m"}, "runs": [1]}, {"config": {}, "runs": [2]}])
    assert merged == {"config": {"model": "m"}, "runs": [1, 2]}


def test_priming_sends_each_prompt_once_to_each_served_model():
    sent = []
    count = side.prime("http://node:8000", ["base", "adapter"], ["ab", "cd"], "chat",
                       post=lambda server, path, body, timeout: sent.append((path, body)) or {})  # fmt: skip
    assert count == 4 and {path for path, _ in sent} == {"/v1/chat/completions"}
    assert [(body["model"], body["messages"][0]["content"], body["max_tokens"]) for _, body in sent] == [
        ("base", "ab", 1), ("base", "cd", 1), ("adapter", "ab", 1), ("adapter", "cd", 1)]  # fmt: skip
    side.prime("http://node:8000", ["base"], ["ab"], "completions",
               post=lambda server, path, body, timeout: sent.append((path, body)) or {})  # fmt: skip
    assert sent[-1] == ("/v1/completions", {"model": "base", "max_tokens": 1, "prompt": "ab"})
