"""The npufleet command's answers to bad input and a missing engine: exit code and one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from npufleet.api import run_playbook
from npufleet.cli.stages import extra_vars, since_epoch

NPUFLEET = str(Path(sys.executable).parent / "npufleet")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NPUFLEET, *args], capture_output=True, text=True, check=False, env=os.environ | env
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("lab", "up", "--nodes", "0"), "--nodes must be between 1 and 16, got 0"),
        (("lab", "up", "--npus", "17"), "--npus must be between 1 and 16, got 17"),
        (("lab", "up", "--chip", "H100"), "unknown chip 'H100': choose one of 910B1"),
        (
            ("check", "--inventory", "/nonexistent/hosts.yml"),
            "inventory /nonexistent/hosts.yml does not exist",
        ),
        (("up", "-e", "novalue"), "--extra-var 'novalue' is not KEY=VALUE"),
        (("up", "-e", "=CANARY"), "--extra-var has no variable name before '=' (its text is not shown)"),
        (("up", "-e", "CANARY-x"), "--extra-var (its text is not shown) is not KEY=VALUE"),
        (
            ("up", "-e", "registry_password=[CANARY"),
            "--extra-var registry_password: its value is not a valid",
        ),
        (
            ("up", "-e", "npu_container_npus=[0, 1"),
            "--extra-var npu_container_npus: its value is not a valid list",
        ),
    ],
)
def test_bad_input_exits_2_before_anything_starts(args, message):
    done = run(*args)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("npufleet: ")
    assert message in " ".join(done.stderr.split())
    assert "CANARY" not in done.stderr + done.stdout


def test_extra_vars_read_lists_mappings_numbers_and_booleans_and_keep_other_values_as_strings():
    # Numbers and true/false as the roles' defaults have them (serve_port: 8000, train_force: false):
    # ansible-core 2.19 fails a condition on the string "false".
    given = ["npu_container_npus=[0, 1]", 'train_env={"RANK_TABLE_FILE": "/workspace/hccl.json"}',
             "train_name=sft=two", "serve_port=8000", "note= [not a list", "train_force=false",
             "serve_trust_remote_code=True", "serve_gpu_memory_utilization=0.9", "train_learning_rate=1e-5",
             "offset=-3"]  # fmt: skip
    assert extra_vars(given) == {
        "npu_container_npus": [0, 1],
        "train_env": {"RANK_TABLE_FILE": "/workspace/hccl.json"},
        "train_name": "sft=two",
        "serve_port": 8000,
        "note": " [not a list",
        "train_force": False,
        "serve_trust_remote_code": True,
        "serve_gpu_memory_utilization": 0.9,
        "train_learning_rate": 1e-5,
        "offset": -3,
    }


@pytest.mark.parametrize(
    "value", ["1.10", "24.1.rc2", "0123", " 8000", "8000 ", "1_000", "NaN", "Infinity", "null", "yes", "",
              '"quoted"', "0x10", "-0"],
)  # fmt: skip
def test_extra_vars_keep_what_does_not_read_back_the_same_as_a_string(value):
    # 1.10 is a version, not 1.1; 0123 and " 8000" are not what the number 123 or 8000 would print.
    assert extra_vars([f"image_tag={value}"]) == {"image_tag": value}


def test_extra_vars_from_files_yaml_or_json_later_ones_win(tmp_path):
    (tmp_path / "train.yml").write_text("train_name: sft\ntrain_epochs: 3\nnpu_container_npus: [0, 1]\n")
    (tmp_path / "serve.json").write_text('{"serve_port": 8100, "train_epochs": 1}')
    given = [f"@{tmp_path / 'train.yml'}", "train_name=dpo", f"@{tmp_path / 'serve.json'}"]
    assert extra_vars(given) == {
        "train_name": "dpo", "train_epochs": 1, "npu_container_npus": [0, 1], "serve_port": 8100,
    }  # fmt: skip


def test_a_list_given_with_e_reaches_the_play_as_a_list(tmp_path):
    # Issue 21: -e 'npu_container_npus=[0,1]' arrives as a list, not the string "[0,1]" (a real run).
    playbook = tmp_path / "show.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.assert:\n"
        "        that: [npu_container_npus is sequence, npu_container_npus is not string,"
        " npu_container_npus | length == 2, train_force is boolean, serve_port is integer]\n"
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")  # fmt: skip
    given = extra_vars(["npu_container_npus=[0,1]", "train_force=false", "serve_port=8000"])
    result = run_playbook(str(playbook), inventory, extravars=given, artifacts=tmp_path / "runs")
    assert result.succeeded, result.first_failure()


def test_collect_since_takes_a_span_or_a_utc_time():
    now = 1_800_000_000.0
    assert since_epoch("90s", now) == now - 90
    assert since_epoch("30m", now) == now - 1800
    assert since_epoch("2h", now) == now - 7200
    assert since_epoch("1.5d", now) == now - 129600
    assert since_epoch("2026-12-03T05:30:00Z", now) == 1796275800
    assert since_epoch("2026-12-03T05:30:00", now) == 1796275800
    assert since_epoch("2026-12-03T06:30:00+01:00", now) == 1796275800
    refused = (("2027-06-01T00:00:00Z", "is in the future"), ("", "is neither a span nor a time"))
    for given, problem in refused:
        with pytest.raises(ValueError, match=problem):
            since_epoch(given, now)


def test_collect_since_refuses_what_it_cannot_read_before_running_anything():
    done = run("collect", "--since", "yesterday", "-i", "/nonexistent/hosts.yml")
    assert done.returncode == 2
    message = "--since 'yesterday' is neither a span nor a time: write 30m, 2h, 1d"
    assert message in " ".join(done.stderr.split())


def test_no_engine_exits_3_and_says_how_to_start_one(tmp_path):
    done = run("lab", "status", DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    assert done.returncode == 3
    assert "no Docker engine answers: start one (make setup starts dockerd" in " ".join(done.stderr.split())


def test_unknown_fault_is_a_usage_error():
    done = run("lab", "fault", "node1", "meltdown")
    assert done.returncode == 2
    assert "invalid choice: 'meltdown'" in done.stderr


def test_report_prints_the_latest_run_or_the_one_named(tmp_path):
    for name, tokens in (("older", 1.0), ("newer", 2.0)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "report.json").write_text(f'{{"run": "{name}", "tokens": {tokens}}}')
        (folder / "report.md").write_text(f"# Training report: {name}\n")
        os.utime(folder / "report.json", (tokens, tokens))
    latest = run("report", "--dir", str(tmp_path))
    assert latest.returncode == 0
    assert latest.stdout.startswith("# Training report: newer\n")
    named = run("--json", "report", "older", "--dir", str(tmp_path))
    assert named.returncode == 0
    assert named.stdout.strip() == '{"run": "older", "tokens": 1.0}'
    missing = run("report", "gone", "--dir", str(tmp_path))
    assert missing.returncode == 2
    assert (
        "no report for run 'gone'" in missing.stderr and "runs with a report: older, newer" in missing.stderr
    )
    empty = run("report", "--dir", str(tmp_path / "none"))
    assert (empty.returncode, empty.stderr.strip()) == (
        2,
        f"npufleet: no training report in {tmp_path / 'none'}: run 'npufleet train' (or 'npufleet up') first",
    )


def test_endpoints_says_where_the_model_answers_and_how_to_call_it(tmp_path):
    from tests.unit.plugins.plugin_utils.test_bench import socket_port, synthetic_server  # noqa: PLC0415 -- its server helper

    with synthetic_server(ttft_ms=1, itl_ms=1) as port:
        record = {"name": "api", "host": "node1", "engine": "vllm", "model": "tiny"}
        (tmp_path / "api-node1.json").write_text(json.dumps(record | {"url": f"http://127.0.0.1:{port}/v1"}))
        done = run("endpoints", "--dir", str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert f"http://127.0.0.1:{port}/v1" in done.stdout and "yes" in done.stdout
        curl = next(line for line in done.stdout.splitlines() if "curl" in line)
        assert f"http://127.0.0.1:{port}/v1/chat/completions" in curl and '"model": "tiny"' in curl
        listed = json.loads(run("--json", "endpoints", "--dir", str(tmp_path)).stdout)
        assert listed[0]["answers"] == "yes" and listed[0]["model"] == "tiny"

    # The server is gone: the record stays, and the command says nothing answers.
    (tmp_path / "api-node1.json").write_text(
        json.dumps({"name": "api", "model": "tiny", "url": f"http://127.0.0.1:{socket_port()}/v1"})
    )
    gone = run("--json", "endpoints", "--dir", str(tmp_path))
    assert gone.returncode == 1
    assert json.loads(gone.stdout)[0]["answers"].startswith("no (")


def test_endpoints_refuses_a_missing_or_broken_record(tmp_path):
    none = run("endpoints", "--dir", str(tmp_path))
    assert none.returncode == 2
    assert "no served model is recorded" in none.stderr and "npufleet serve" in none.stderr
    (tmp_path / "api-node1.json").write_text('{"name": "api"}')
    broken = run("endpoints", "--dir", str(tmp_path))
    assert broken.returncode == 2
    assert "is not a service record" in broken.stderr
    (tmp_path / "api-node1.json").write_text('{"url": "file:///etc/passwd"}')
    assert "is not http(s)" in run("endpoints", "--dir", str(tmp_path)).stderr


def _ok(task: str, res: dict, host: str = "node1") -> dict:
    return {"event": "runner_on_ok", "event_data": {"host": host, "task": task, "res": res}}


def test_live_view_shows_the_progress_a_result_carries_whatever_the_task_is_named():
    from npufleet.cli.live import LiveView  # noqa: PLC0415

    view = LiveView("train.yml")
    view.event({"event": "runner_on_start", "event_data": {"host": "node1", "task": "Wait for the ranks"}})
    assert view.hosts["node1"]["task"] == "Wait for the ranks"
    view.event(_ok("Any task at all", {"changed": False, "npufleet_progress": "rank 0: running, step 3/12"}))
    assert view.hosts["node1"]["task"] == "rank 0: running, step 3/12"
    # A task named as the train role's once was, without the key, is not progress.
    view.event(_ok("Show progress", {"msg": "rank 0: running, step 4/12"}))
    assert view.hosts["node1"]["task"] == "rank 0: running, step 3/12"
    view.event(_ok("Multi-line", {"changed": True, "npufleet_progress": "step 5/12\n  loss 1.2"}))
    assert view.hosts["node1"] | {} == {"task": "step 5/12 loss 1.2", "ok": 3, "changed": 1, "failed": 0,
                                        "unreachable": 0}  # fmt: skip


def test_bench_with_url_gives_the_entry_point_the_modules_options(monkeypatch, tmp_path):
    """The --url path calls the collection's run_benchmark, the llm_benchmark action's entry point,
    with options its argument spec accepts."""
    from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench import entry  # noqa: PLC0415

    from npufleet.cli import bench, build_parser  # noqa: PLC0415

    args = build_parser().parse_args(
        ["bench", "--url", "http://127.0.0.1:9", "--model", "m", "--rate", "1,2", "--seed", "3",
         "--slo-ttft-ms", "500", "--request-timeout", "2.5", "--out", str(tmp_path)]
    )  # fmt: skip
    checked = entry.options(bench.benchmark_params(args))
    assert checked["timeout"] == 2.5  # seconds, fractions too, as the command line always took
    assert (checked["rate"], checked["concurrency"], checked["seed"]) == ([1.0, 2.0], [], 3)
    assert checked["slo"] == {"ttft_ms": 500.0} and checked["dest"] == str(tmp_path)
    called = []

    def fake_run_benchmark(params: dict) -> dict:
        called.append(params)
        (tmp_path / "bench.json").write_text('{"runs": []}')
        (tmp_path / "bench.md").write_text("# bench\n")
        files = {"json": str(tmp_path / "bench.json"), "markdown": str(tmp_path / "bench.md")}
        return {"data": {"runs": [{"summary": {"completed": 1}}]}, "files": files}

    monkeypatch.setattr(entry, "run_benchmark", fake_run_benchmark)
    assert bench.cmd_bench(args) == 0
    assert called == [bench.benchmark_params(args)]


def test_bench_with_url_runs_the_load_and_writes_the_report(tmp_path):
    from tests.unit.plugins.plugin_utils.test_bench import synthetic_server  # noqa: PLC0415 -- its server helper

    with synthetic_server(ttft_ms=1, itl_ms=1) as port:
        done = run("bench", "--url", f"http://127.0.0.1:{port}", "--model", "tiny", "--concurrency", "2",
                   "--requests", "4", "--warmup", "0", "--output-tokens", "4",
                   "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"report: {tmp_path / 'bench.md'} (bench.json, bench.png)" in " ".join(done.stderr.split())
    assert json.loads((tmp_path / "bench.json").read_text())["runs"][0]["summary"]["completed"] == 4
    missing = run("bench", "--url", "http://127.0.0.1:9")
    assert missing.returncode == 2
    assert "with --url, give --model and one of --concurrency or --rate" in missing.stderr


def test_bench_with_url_takes_the_api_key_from_the_environment_only(tmp_path):
    """The key comes from NPUFLEET_API_KEY (or the variable --api-key-env names), never from an option;
    it is sent as a bearer token and written in no report; a 401 says which variable to set."""
    from tests.unit.plugins.plugin_utils.test_bench import synthetic_server  # noqa: PLC0415 -- its server helper

    secret = "sk-cli-secret-7"
    load = [
        "--model",
        "tiny",
        "--concurrency",
        "2",
        "--requests",
        "4",
        "--warmup",
        "0",
        "--output-tokens",
        "3",
    ]
    with synthetic_server(ttft_ms=1, itl_ms=1, api_key=secret) as port:
        url = f"http://127.0.0.1:{port}"
        keyed = run("bench", "--url", url, *load, "--out", str(tmp_path / "keyed"), NPUFLEET_API_KEY=secret)
        named = run("bench", "--url", url, *load, "--api-key-env", "LAB_KEY",
                    "--out", str(tmp_path / "named"), NPUFLEET_API_KEY="", LAB_KEY=secret)  # fmt: skip
        keyless = run("bench", "--url", url, *load, "--out", str(tmp_path / "keyless"), NPUFLEET_API_KEY="")
    assert keyed.returncode == 0, keyed.stderr
    assert named.returncode == 0, named.stderr
    for folder in ("keyed", "named"):
        data = json.loads((tmp_path / folder / "bench.json").read_text())
        assert data["runs"][0]["summary"]["completed"] == 4 and data["config"]["api_key_sent"] is True
        for path in (tmp_path / folder).iterdir():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in keyed.stdout + keyed.stderr
    assert keyless.returncode == 1
    assert "401 Unauthorized: set its API key in the environment variable NPUFLEET_API_KEY" in " ".join(
        keyless.stderr.split()
    )
    assert "--api-key " not in run("bench", "--help").stdout


def test_bench_options_for_the_inventory_path_and_backend_vllm_needs_one(tmp_path, monkeypatch):
    from npufleet.cli import bench, build_parser  # noqa: PLC0415

    args = build_parser().parse_args(
        ["bench", "--backend", "vllm", "--concurrency", "1,4", "--requests", "32", "--out", str(tmp_path)]
    )
    role_vars = bench.bench_role_vars(args)
    assert role_vars["bench_backend"] == "vllm" and role_vars["bench_dest"] == str(tmp_path.resolve())
    assert (role_vars["bench_concurrency"], role_vars["bench_requests"]) == ([1, 4], 32)
    assert not any("key" in name for name in role_vars)  # the key comes from the inventory's vault
    plain = bench.bench_role_vars(build_parser().parse_args(["bench", "--concurrency", "1"]))
    assert "bench_backend" not in plain and "bench_dest" not in plain and "bench_dataset" not in plain
    # --dataset: a file here made absolute for backend npufleet; a path in the container for vllm.
    monkeypatch.chdir(tmp_path)
    ours = build_parser().parse_args(["bench", "--concurrency", "1", "--dataset", "prompts.jsonl"])
    assert bench.bench_role_vars(ours)["bench_dataset"] == str(tmp_path.resolve() / "prompts.jsonl")
    theirs = ["bench", "--backend", "vllm", "--concurrency", "1", "--dataset", "/workspace/p.json"]
    assert bench.bench_role_vars(build_parser().parse_args(theirs))["bench_dataset"] == "/workspace/p.json"
    # Through the inventory, a key in the environment is dropped before ansible-runner (which records
    # the environment in its artifacts) starts.
    seen = []
    monkeypatch.setattr(bench, "run_stage", lambda *_, **__: seen.append(os.environ.get("LAB_KEY")) or 0)
    monkeypatch.setenv("LAB_KEY", "sk-not-for-runner")
    keyed = build_parser().parse_args(["bench", "--concurrency", "1", "--api-key-env", "LAB_KEY"])
    assert bench.cmd_bench(keyed) == 0 and seen == [None]
    done = run(
        "bench", "--url", "http://127.0.0.1:9", "--model", "m", "--concurrency", "1", "--backend", "vllm"
    )
    assert (
        done.returncode == 2
        and "--backend vllm runs vllm bench serve in the serving container" in done.stderr
    )


def bench_args(*options: str):
    from npufleet.cli import build_parser  # noqa: PLC0415

    return build_parser().parse_args(["bench", *options])


@pytest.mark.parametrize(
    ("options", "sent"),
    [
        ((), {}),
        (("--requests", "5"), {"bench_requests": 5}),
        (("--no-stream",), {"bench_stream": False}),
        (("--stream",), {"bench_stream": True}),
        (("--endpoint", "completions"), {"bench_endpoint": "completions"}),
        (("--arrival", "constant"), {"bench_arrival": "constant"}),
        (("--input-tokens", "64", "--output-tokens", "32"),
         {"bench_input_tokens": 64, "bench_output_tokens": 32}),
        (("--warmup", "0"), {"bench_warmup": 0}),
        (("--request-timeout", "2.5"), {"bench_timeout": 3}),  # the role's bench_timeout is whole seconds
        (("--model", "tiny"), {"bench_model": "tiny"}),
        (("--slo-ttft-ms", "500"), {"bench_slo": {"ttft_ms": 500.0}}),
        # A sweep given replaces the inventory's sweep of either kind (the role runs bench_rate when set).
        (("--concurrency", "1,4"), {"bench_concurrency": [1, 4], "bench_rate": []}),
        (("--rate", "2"), {"bench_rate": [2.0], "bench_concurrency": []}),
    ],
)  # fmt: skip
def test_bench_through_the_inventory_sends_only_the_options_given(options, sent):
    # Issue 21: every default was sent as an extra var, over the inventory (bench_requests: 5 ran 100).
    from npufleet.cli import bench  # noqa: PLC0415

    assert bench.bench_role_vars(bench_args(*options)) == sent


def test_bench_with_url_takes_the_bench_roles_defaults_for_the_options_not_given():
    from npufleet.cli import bench  # noqa: PLC0415

    role = yaml.safe_load((Path(__file__).resolve().parents[3] / "roles/bench/defaults/main.yml").read_text())
    params = bench.benchmark_params(
        bench_args("--url", "http://127.0.0.1:9", "--model", "m", "--concurrency", "1")
    )
    for option in ("endpoint", "stream", "arrival", "requests", "input_tokens", "output_tokens", "warmup",
                   "timeout"):  # fmt: skip
        assert params[option] == role[f"bench_{option}"], option
    assert (params["seed"], params["text"], params["ignore_eos"]) == (0, "What is in the image?", True)
    given = bench.benchmark_params(bench_args("--url", "http://127.0.0.1:9", "--model", "m", "--rate", "2",
                                              "--requests", "7", "--no-stream", "--seed", "4"))  # fmt: skip
    assert (given["requests"], given["stream"], given["seed"], given["concurrency"]) == (7, False, 4, [])


def test_bench_through_the_inventory_refuses_the_options_only_url_has():
    done = run("bench", "-i", "/nonexistent/hosts.yml", "--seed", "3", "--no-ignore-eos")
    assert done.returncode == 2
    assert (
        "npufleet: --no-ignore-eos, --seed apply with --url only: the bench role (the inventory's bench) has"
        " no such setting; drop them, or benchmark the server from here with --url and --model"
    ) in " ".join(done.stderr.split())


def test_bench_through_the_inventory_runs_its_settings_and_check_mode_sends_nothing(tmp_path):
    """A real run of bench.yml (npufleet bench -i) on a node that is this machine, against the synthetic
    server: the inventory's settings apply, an option given wins over its one setting, and --check
    exits 0 saying what would run, with the server gone."""
    from tests.unit.plugins.plugin_utils.test_bench import socket_port, synthetic_server  # noqa: PLC0415

    inventory = tmp_path / "hosts.yml"

    def write_inventory(url: str) -> None:
        node = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        settings = {"bench_url": url, "bench_model": "synthetic", "bench_requests": 3,
                    "bench_concurrency": [2], "bench_warmup": 0, "bench_input_tokens": 4,
                    "bench_output_tokens": 3, "bench_node_readings": False,
                    "bench_dest": str(tmp_path / "inventory")}  # fmt: skip
        inventory.write_text(yaml.safe_dump({"all": {"children": {"npu_nodes": {"hosts": {"node1": node}}},
                                                      "vars": settings}}))  # fmt: skip

    def levels(folder: str) -> list:
        report = json.loads((tmp_path / folder / "bench.json").read_text())
        return [(run["mode"], run["level"], run["summary"]["completed"]) for run in report["runs"]]

    with synthetic_server(ttft_ms=1, itl_ms=1) as port:
        write_inventory(f"http://127.0.0.1:{port}")
        settings = run("bench", "-i", str(inventory))
        given = run("bench", "-i", str(inventory), "--requests", "2", "--out", str(tmp_path / "given"))
    assert settings.returncode == 0, settings.stdout + settings.stderr
    assert levels("inventory") == [("concurrency", 2, 3)]  # not the CLI's 100 requests at 1, 4 and 16
    assert given.returncode == 0, given.stdout + given.stderr
    assert levels("given") == [("concurrency", 2, 2)]
    write_inventory(f"http://127.0.0.1:{socket_port()}")  # nothing answers there
    (tmp_path / "inventory").rename(tmp_path / "before")
    checked = run("bench", "-i", str(inventory), "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (
        "check mode: would benchmark model 'synthetic' at http://127.0.0.1:" in checked.stdout
        and "from the controller: concurrency 2, 3 requests a level after 0 warm-up" in checked.stdout
    )
    assert "would change on node1: Benchmark the server from the controller" in checked.stderr
    assert not (tmp_path / "inventory").exists()  # no report written


FAILURE_LOGS = Path(__file__).resolve().parents[2] / "data" / "failure_logs"


def test_diagnose_names_each_match_with_its_cause_fix_file_and_line():
    done = run("--json", "diagnose", str(FAILURE_LOGS / "hccl_listen_port_in_use_then_link_timeout.log"))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["first"]["id"] == "hccl_listen_port_in_use"
    assert found["summary"].startswith(
        "hccl_listen_port_in_use on hccl_listen_port_in_use_then_link_timeout.log"
    )
    assert [match["id"] for match in found["matches"]] == ["hccl_listen_port_in_use"] + [
        "hccl_link_establish_timeout"
    ] * 2
    for match in found["matches"]:
        assert match["cause"] and match["fix"] and match["file"].endswith(".log") and match["line_no"] > 2
    text = run("diagnose", str(FAILURE_LOGS))
    assert text.returncode == 0 and "## First failure" in text.stdout and "**Fix**:" in text.stdout
    # --json after the subcommand is the same as before it.
    after = run("diagnose", str(FAILURE_LOGS / "hccl_listen_port_in_use_then_link_timeout.log"), "--json")
    assert json.loads(after.stdout) == found


def test_diagnose_exits_1_when_nothing_matched_and_2_on_a_missing_path(tmp_path):
    healthy = tmp_path / "train.log"
    healthy.write_text("{'loss': 1.2, 'epoch': 0.5}\ntraining finished\n", encoding="utf-8")
    done = run("diagnose", str(healthy))
    assert done.returncode == 1 and "No known failure signature matched in 1 file(s)" in done.stdout
    missing = run("diagnose", str(tmp_path / "nope.log"))
    assert missing.returncode == 2
    assert "nope.log does not exist: give log files or an evidence folder" in missing.stderr


def test_report_shows_the_latest_failed_runs_diagnosis_when_it_is_newer(tmp_path):
    train = tmp_path / "train" / "sft"
    train.mkdir(parents=True)
    (train / "report.json").write_text('{"run": "sft"}')
    (train / "report.md").write_text("# Training report: sft\n")
    os.utime(train / "report.json", (1.0, 1.0))
    failed = tmp_path / "train" / "20261202T101500Z"
    failed.mkdir()
    (failed / "diagnosis.json").write_text(
        json.dumps({"summary": "hccl_listen_port_in_use on node1: HCCL failed", "first": {"id": "x"}})
    )
    nothing = tmp_path / "train" / "20261202T101600Z"
    nothing.mkdir()
    (nothing / "diagnosis.json").write_text(
        '{"summary": "no known failure signature matched", "first": null}'
    )
    done = run("report", "--dir", str(tmp_path / "train"))
    assert done.returncode == 0 and done.stdout.startswith("# Training report: sft\n")
    assert f"The latest failed run ({failed}): hccl_listen_port_in_use on node1" in done.stdout
    as_json = json.loads(run("--json", "report", "--dir", str(tmp_path / "train")).stdout)
    assert as_json["run"] == "sft" and as_json["diagnosis"]["summary"].startswith("hccl_listen_port_in_use")


def test_a_failure_with_brackets_is_printed_as_it_is_not_as_markup(tmp_path):
    """Issue 21: a rank's log line such as "[/__w/pytorch/.../pair.cc:537] Read error" in a failure made
    the CLI crash with rich's MarkupError. A real run whose failure holds such text."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"npu_nodes": {"hosts": {"here": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))  # fmt: skip
    text = "gloo[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537]"
    done = run("serve", "-i", str(inventory), "-e", f"serve_engine={text}")
    assert done.returncode == 1, done.stderr
    assert "rich.errors" not in done.stderr and "Traceback" not in done.stderr
    assert f"value of serve_engine must be one of: vllm, mindie, llamafactory, got: {text}" in done.stderr
