"""Serving filters: vLLM's command line, the checks before launch, MindIE's config.json and rank table."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter import serving

from tests.fixtures import SEED_TABLES

SEED = SEED_TABLES  # the manual's tables, carried in tests/data/seed-tables
MANUAL_SETTINGS = {
    "model": "/models/qwen2-7b",
    "max_num_seqs": 256,
    "max_model_len": 4096,
    "max_num_batched_tokens": 4096,
    "tensor_parallel_size": 1,
    "block_size": 128,
    "chat_template": "/tpl/chat.jinja",
    "dtype": "bfloat16",
    "host": "192.168.0.10",
    "port": 8080,
    "gpu_memory_utilization": 0.9,
    "num_scheduler_steps": 8,
    "quantization": "awq",
    "trust_remote_code": True,
}
GOOD_CONFIG = {"seq_length": 8192, "max_position_embeddings": 32768}
GOOD_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def test_vllm_args_follow_the_manuals_command():
    args = serving.vllm_args(MANUAL_SETTINGS)
    assert args == [
        "--model=/models/qwen2-7b", "--max-num-seqs=256", "--max-model-len=4096",
        "--max-num-batched-tokens=4096", "--tensor-parallel-size=1", "--block-size=128",
        "--chat-template=/tpl/chat.jinja", "--dtype=bfloat16", "--host=192.168.0.10", "--port=8080",
        "--gpu-memory-utilization=0.9", "--num-scheduler-steps=8", "--quantization=awq",
        "--trust-remote-code",
    ]  # fmt: skip
    manual = yaml.safe_load((SEED / "serving_params.yaml").read_text())["vllm_openai_server"][
        "launch_command"
    ]
    command = " ".join(
        line.rstrip("\\ ") for line in manual.splitlines() if not line.startswith(("export", "#"))
    )
    flags = [word.split("=")[0] for word in shlex.split(command) if word.startswith("--")]
    assert [arg.split("=")[0] for arg in args] == flags
    minimal = serving.vllm_args(
        {"model": "/m", "port": 8000, "host": "0.0.0.0", "extra_args": ["--enforce-eager"]}
    )
    assert minimal == ["--model=/m", "--host=0.0.0.0", "--port=8000", "--enforce-eager"]
    # An adapter: served beside the base model under its own name, the rank flag with it.
    adapter = serving.vllm_args(
        {"model": "/m", "port": 8000, "lora_modules": ["m-sft=/out/sft"], "max_lora_rank": 16}
    )
    assert adapter == [
        "--model=/m",
        "--port=8000",
        "--max-lora-rank=16",
        "--enable-lora",
        "--lora-modules",
        "m-sft=/out/sft",
    ]
    with pytest.raises(AnsibleFilterError, match="settings need 'model'"):
        serving.vllm_args({})


def test_a_good_configuration_has_no_problem():
    assert serving.serving_problems(MANUAL_SETTINGS | {"quantization": ""}, GOOD_CONFIG, GOOD_FILES, 1) == []
    assert serving.serving_problems(MANUAL_SETTINGS, GOOD_CONFIG, GOOD_FILES, 1, "qwen2-7b") == []


@pytest.mark.parametrize(
    "case",
    [
        ({"max_model_len": 16384, "max_num_batched_tokens": 16384}, {"seq_length": 8192}, GOOD_FILES, 1, "",
         "--max-model-len 16384 is larger than the model's seq_length 8192 in config.json (the manual's"
         " inference FAQ 2"),
        ({"max_model_len": 40000, "max_num_batched_tokens": 40000}, {"max_position_embeddings": 32768},
         GOOD_FILES, 1, "", "larger than the model's max_position_embeddings 32768"),
        ({"max_num_batched_tokens": 2048}, GOOD_CONFIG, GOOD_FILES, 1, "",
         "--max-num-batched-tokens 2048 is smaller than --max-model-len 4096"),
        ({"tensor_parallel_size": 4}, GOOD_CONFIG, GOOD_FILES, 8, "",
         "tensor parallel 4 x pipeline parallel 1 = 4 must equal the NPUs given to the server (8)"),
        ({"quantization": "w8a8"}, GOOD_CONFIG, GOOD_FILES, 1, "qwen2-7b",
         "the manual's vLLM table marks W8A8 (w8a8) unsupported for qwen2-7b;"
         " supported: awq, gptq, w4a16, w8a16"),
        ({"quantization": "awq"}, GOOD_CONFIG, GOOD_FILES, 1, "glm-4-9b",
         "marks W4A16 (awq) unsupported for glm-4-9b; supported: none (fp16/bf16 only)"),
        ({"quantization": "fp4"}, GOOD_CONFIG, GOOD_FILES, 1, "",
         "quantization 'fp4' is not one the manual's"),
        ({}, GOOD_CONFIG, ["config.json", "model.safetensors"], 1, "",
         "the model dir has no tokenizer files"),
        ({}, None, GOOD_FILES, 1, "", "the model dir has no config.json"),
    ],
)  # fmt: skip
def test_each_check_before_launch(case):
    change, config, files, npus, key, message = case
    settings = MANUAL_SETTINGS | {"quantization": ""} | change
    problems = serving.serving_problems(settings, config, files, npus, key)
    assert len(problems) == 1, problems
    assert message in problems[0]


def test_mindie_config_for_two_nodes_is_the_manuals_example():
    example = json.loads(serving.MINDIE_BASE.read_text())
    assert json.loads((SEED / "mindie_config_example.json").read_text()) == example
    settings = {
        "master_address": "7.242.110.112", "model_name": "DeepSeek-V3",
        "model_weight_path": "/data/model/DeepSeek-V3-w8a8", "npu_device_ids": [0, 1, 2, 3],
        "max_input_token_len": 15360, "max_iter_times": 1024,
    }  # fmt: skip
    # The manual's example is what its own settings give, field for field.
    assert serving.mindie_config(settings) == example
    other = serving.mindie_config(settings | {"master_address": "10.0.0.1", "model_name": "DeepSeek-R1",
                                              "max_input_token_len": 30720, "max_iter_times": 2048,
                                              "npu_device_ids": list(range(8))})  # fmt: skip
    assert other["ServerConfig"]["ipAddress"] == other["ServerConfig"]["managementIpAddress"] == "10.0.0.1"
    deploy = other["BackendConfig"]["ModelDeployConfig"]
    assert (deploy["maxSeqLen"], deploy["maxInputTokenLen"]) == (32768, 30720)
    assert other["BackendConfig"]["ScheduleConfig"]["maxPrefillTokens"] == 30720
    assert deploy["ModelConfig"][0]["worldSize"] == 8
    assert other["BackendConfig"]["npuDeviceIds"] == [list(range(8))]
    assert other["ServerConfig"]["httpsEnabled"] is False and other["BackendConfig"]["multiNodesInferEnabled"]
    with pytest.raises(AnsibleFilterError, match="settings need 'model_weight_path'"):
        serving.mindie_config({"master_address": "a", "model_name": "b", "npu_device_ids": [0]})


def test_rank_table_for_two_nodes():
    servers = [
        {"server_id": f"192.168.0.{node}", "devices": [{"device_id": d, "device_ip": f"29.{node}.0.{d}"}
                                                       for d in range(8)]}
        for node in (1, 2)
    ]  # fmt: skip
    table = serving.rank_table(servers)
    assert (table["version"], table["server_count"], table["status"]) == ("1.0", "2", "completed")
    assert [s["server_id"] for s in table["server_list"]] == ["192.168.0.1", "192.168.0.2"]
    ranks = [d["rank_id"] for s in table["server_list"] for d in s["device"]]
    assert ranks == [str(rank) for rank in range(16)]
    assert table["server_list"][1]["device"][0] == {"device_id": "0", "device_ip": "29.2.0.0", "rank_id": "8"}
    with pytest.raises(AnsibleFilterError, match="needs device_id and device_ip"):
        serving.rank_table([{"server_id": "a", "devices": [{"device_id": 0}]}])


# serve_host: an address or a name to listen on, and the URL that reaches it.


@pytest.mark.parametrize(
    "host",
    ["192.168.0.10", "0.0.0.0", "::", "fe80::1", "2001:db8::5", "node1", "node-1.lab.example", "localhost"],
)
def test_a_listen_host_may_be_an_address_or_a_name(host):
    assert serving.listen_host_problems(host) == []


@pytest.mark.parametrize(
    ("host", "hint"),
    [
        ("0.0.0.0:8000", "drop the port: it goes in serve_port"),
        ("node1:8000", "drop the port: it goes in serve_port"),
        ("[::1]:8000", "drop the port: it goes in serve_port"),
        ("http://x", "drop the scheme: a URL is not an address"),
        ("http://10.0.0.5:8000/v1", "drop the scheme: a URL is not an address"),
        ("[fe80::1]", "drop the brackets around an IPv6 address"),
        ("a b", "it is neither an IP address nor a host name"),
        ("999.1.1.1", "it is neither an IP address nor a host name"),
        ("10.0.0", "it is neither an IP address nor a host name"),
        ("node_1", "it is neither an IP address nor a host name"),
        ("-node", "it is neither an IP address nor a host name"),
        ("", "it is empty"),
        (None, "it is empty"),
    ],
)
def test_a_listen_host_that_is_neither_is_refused_with_the_value_and_the_fix(host, hint):
    (problem,) = serving.listen_host_problems(host)
    shown = "" if host is None else host
    assert problem.startswith(
        f"serve_host must be an IP address or a host name to listen on (got {shown!r}: {hint})"
    )
    assert "set it to this node's address (its default, npufleet_node_address)" in problem
    assert "0.0.0.0 to listen on every interface (then set serve_api_key)" in problem


@pytest.mark.parametrize(
    ("host", "wildcard", "expected"),
    [
        ("192.168.0.10", "127.0.0.1", "192.168.0.10"),
        ("node1", "127.0.0.1", "node1"),
        ("0.0.0.0", "127.0.0.1", "127.0.0.1"),
        ("::", "127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "192.168.0.10", "192.168.0.10"),
        ("::", "fd00::10", "[fd00::10]"),
        ("fd00::10", "127.0.0.1", "[fd00::10]"),
    ],
)
def test_url_host_names_the_listen_address_or_the_fallback_for_every_interface(host, wildcard, expected):
    assert serving.url_host(host, wildcard) == expected
