"""llm_benchmark's node side (backend vllm) run in-process against a stand-in ``docker``: the API key
reaches `vllm bench serve` as OPENAI_API_KEY from a file of mode 0600 given with --env-file, is on no
argv, in no result and in no report, and the file is gone afterwards, whether the run passed or failed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.module_utils import vllm_bench
from ansible_collections.npufleet.ascend.plugins.modules import llm_benchmark

from tests.unit.plugins.action.test_llm_benchmark import VLLM_RESULT

SECRET = "sk-node-side-secret-42"

# `docker exec [--env-file F] NAME bash -c LINE` records its argv, the env file's mode and contents,
# and writes a result in vllm bench serve's format where LINE's --result-filename says (in the stand-in's
# folder, for the container's /tmp); `docker exec NAME cat /tmp/X` prints it. A file named "fail" makes
# the bench fail as vllm bench serve does.
FAKE_DOCKER = f"""#!{sys.executable}
import json, shlex, stat, sys
from pathlib import Path

here = Path(__file__).resolve().parent
args = sys.argv[1:]
record = {{"argv": args}}
assert args[0] == "exec", args
args = args[1:]
if args[0] == "--env-file":
    path = Path(args[1])
    record["env_file"] = str(path)
    record["env_file_mode"] = oct(stat.S_IMODE(path.stat().st_mode))
    record["env"] = dict(line.split("=", 1) for line in path.read_text().splitlines())
    args = args[2:]
argv = args[1:]
with open(here / "calls.jsonl", "a", encoding="utf-8") as log:
    log.write(json.dumps(record) + "\\n")
if argv[:2] == ["bash", "-c"]:
    if (here / "fail").exists():
        print("Initial test run failed - Error: 401 Unauthorized", file=sys.stderr)
        sys.exit(1)
    words = shlex.split(argv[2])
    name = words[words.index("--result-filename") + 1]
    level = int(words[words.index("--max-concurrency") + 1])
    (here / name).write_text(json.dumps(dict({json.dumps(VLLM_RESULT)}, max_concurrency=level)))
elif argv[0] == "cat":
    print((here / Path(argv[1]).name).read_text())
else:
    sys.exit(f"unexpected {{argv}}")
"""


@pytest.fixture
def docker(stand_in):
    return stand_in("docker", FAKE_DOCKER)


def calls(docker: Path) -> list[dict]:
    path = docker / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        llm_benchmark.main()
    return json.loads(capsys.readouterr().out)


def params(tmp_path: Path, **more) -> dict:
    return {"url": "http://127.0.0.1:8000", "model": "tiny-qwen2", "backend": "vllm",
            "container": "npufleet-inference", "concurrency": [1, 4], "requests": 8,
            "dest": str(tmp_path / "report")} | more  # fmt: skip


def test_the_key_goes_by_env_file_never_on_argv_nor_in_the_report(docker, tmp_path, capsys):
    result = run_module(capsys, **params(tmp_path, api_key=SECRET, tokenizer="/workspace/models/tiny-qwen2"))
    assert not result.get("failed"), result
    assert [run["level"] for run in result["runs"]] == [1, 4]
    benches = [call for call in calls(docker) if "bash" in call["argv"]]
    assert len(benches) == 2
    for call in calls(docker):
        assert SECRET not in json.dumps(call["argv"])
    for call in benches:
        assert call["argv"][:2] == ["exec", "--env-file"]
        assert call["argv"][3:5] == ["npufleet-inference", "bash"]
        assert call["env"] == {"OPENAI_API_KEY": SECRET}
        assert call["env_file_mode"] == "0o600"
        assert not Path(call["env_file"]).exists()  # removed afterwards
    line = benches[0]["argv"][-1]
    assert "--model tiny-qwen2 " in line and "--tokenizer /workspace/models/tiny-qwen2" in line
    assert "--ignore-eos --seed 0" in line
    report = (tmp_path / "report" / "bench.json").read_text()
    assert SECRET not in report
    assert json.loads(report)["config"]["api_key_sent"] is True
    assert SECRET not in json.dumps(result)


def test_without_a_key_there_is_no_env_file(docker, tmp_path, capsys):
    result = run_module(capsys, **params(tmp_path, concurrency=[2]))
    assert result["runs"][0]["summary"]["completed"] == VLLM_RESULT["completed"]
    (bench,) = [call for call in calls(docker) if "bash" in call["argv"]]
    assert bench["argv"][:3] == ["exec", "npufleet-inference", "bash"] and "env_file" not in bench
    assert "--tokenizer" not in bench["argv"][-1]
    assert json.loads((tmp_path / "report" / "bench.json").read_text())["config"]["api_key_sent"] is False


def test_a_failed_bench_names_no_key_and_removes_the_file(docker, tmp_path, capsys):
    (docker / "fail").write_text("")
    result = run_module(capsys, **params(tmp_path, api_key=SECRET))
    assert (
        result["failed"] and "vllm bench serve failed at concurrency 1 in npufleet-inference" in result["msg"]
    )
    assert "401 Unauthorized" in result["msg"]
    assert SECRET not in json.dumps(result) and SECRET not in json.dumps(result["cmd"])
    (bench,) = calls(docker)
    assert not Path(bench["env_file"]).exists()


def test_a_dataset_in_the_container_replaces_the_random_one(docker, tmp_path, capsys):
    """The same prompts as npufleet's: vllm bench serve reads the dataset in the container, in its order,
    each prompt asking for output_tokens (ShareGPT's .json; JSONL as its custom dataset)."""
    shared = params(
        tmp_path, concurrency=[1], output_tokens=64, dataset="/workspace/bench/prompts.sharegpt.json"
    )
    result = run_module(capsys, **shared)
    assert not result.get("failed"), result
    (bench,) = [call for call in calls(docker) if "bash" in call["argv"]]
    words = bench["argv"][-1].split()
    assert words[words.index("--dataset-name") + 1] == "sharegpt"
    assert words[words.index("--dataset-path") + 1] == "/workspace/bench/prompts.sharegpt.json"
    assert words[words.index("--sharegpt-output-len") + 1] == "64"
    assert "--disable-shuffle" in words and "--ignore-eos" in words and "--random-input-len" not in words
    line = vllm_bench.command(url="http://127.0.0.1:8000", model="m", endpoint="completions", concurrency=4,
                              rate=None, requests=8, input_tokens=128, output_tokens=32, result_dir="/tmp",
                              result_file="r.json", dataset="/workspace/prompts.jsonl").split()  # fmt: skip
    assert line[line.index("--dataset-name") + 1] == "custom" and "--skip-chat-template" in line
    assert line[line.index("--custom-output-len") + 1] == "32" and "--disable-shuffle" in line
    random = vllm_bench.command(url="http://127.0.0.1:8000", model="m", endpoint="chat", concurrency=4,
                                rate=None, requests=8, input_tokens=128, output_tokens=32, result_dir="/tmp",
                                result_file="r.json").split()  # fmt: skip
    assert random[random.index("--dataset-name") + 1] == "random" and "--dataset-path" not in random
    assert random[random.index("--random-input-len") + 1] == "128"


def test_check_mode_says_what_would_run_for_either_backend():
    params = {"url": "http://127.0.0.1:8000", "model": "/models/q", "backend": "vllm", "container": "llm",
              "endpoint": "completions", "stream": False, "concurrency": [], "rate": [0.5, 2.0],
              "arrival": "constant", "requests": 10, "input_tokens": 64, "output_tokens": 16,
              "dataset": "/workspace/p.jsonl", "warmup": 2, "dest": "/tmp/npufleet-bench/"}  # fmt: skip
    assert llm_benchmark.check_mode_result(params) == {
        "changed": True,
        "msg": "check mode: would benchmark model '/models/q' at http://127.0.0.1:8000 with vllm bench serve"
        " in the container llm: request rates 0.5, 2 per second (constant arrivals), 10 requests a level,"
        " the prompts of /workspace/p.jsonl, up to 16 tokens each (completions endpoint, not streamed); the"
        " report into /tmp/npufleet-bench on the node. Nothing was sent: whether the server answers is known"
        " only when the benchmark runs.",
    }
