# Copyright: npufleet contributors
# Apache License 2.0
"""Filters for the serve role: vLLM's command line from variables, the checks the manual's FAQ asks
for before launch, the address the server listens on and the one its URL names, and MindIE's
multi-node config.json and rank table."""

from __future__ import annotations

import copy
import csv
import ipaddress
import json
import re
from functools import cache
from pathlib import Path

from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter.rank_tables import render_rank_table

HERE = Path(__file__).parent
# The manual's vLLM table (supported models, fp16/bf16 and quantization columns) and its MindIE
# config.json example, carried as data.
VLLM_MODELS = HERE / "vllm_models.csv"
MINDIE_BASE = HERE / "mindie_config_base.json"
# --quantization (or kv-cache dtype) to the table's column.
QUANTIZATION_COLUMNS = {
    "awq": "w4a16",
    "w4a16": "w4a16",
    "gptq": "w4a16",
    "w8a8": "w8a8",
    "smoothquant": "w8a8",
    "ascend": "w8a8",
    "w8a16": "w8a16",
    "kv_int8": "kv_int8",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "vocab.txt")
# A host name (RFC 1123): dot-separated labels of letters, digits and inner hyphens, 253 characters at most.
HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# The addresses that mean every interface.
WILDCARDS = ("0.0.0.0", "::")


@cache
def _vllm_table() -> dict[str, dict]:
    with VLLM_MODELS.open(encoding="utf-8", newline="") as handle:
        return {row["model"].lower(): row for row in csv.DictReader(handle)}


def vllm_args(settings: dict) -> list[str]:
    """``python -m vllm.entrypoints.openai.api_server`` arguments, in the manual's order; unset
    (empty) optional flags are left out."""
    order = (
        ("model", "--model"),
        ("served_model_name", "--served-model-name"),
        ("max_num_seqs", "--max-num-seqs"),
        ("max_model_len", "--max-model-len"),
        ("max_num_batched_tokens", "--max-num-batched-tokens"),
        ("tensor_parallel_size", "--tensor-parallel-size"),
        ("pipeline_parallel_size", "--pipeline-parallel-size"),
        ("block_size", "--block-size"),
        ("chat_template", "--chat-template"),
        ("dtype", "--dtype"),
        ("host", "--host"),
        ("port", "--port"),
        ("gpu_memory_utilization", "--gpu-memory-utilization"),
        ("num_scheduler_steps", "--num-scheduler-steps"),
        ("quantization", "--quantization"),
        ("max_lora_rank", "--max-lora-rank"),
    )
    if not settings.get("model"):
        raise AnsibleFilterError("vllm_args: settings need 'model', the model dir in the container")
    args = []
    for key, flag in order:
        value = settings.get(key)
        if value in (None, "", [], 0) and key != "port":
            continue
        args.append(f"{flag}={value}")
    if settings.get("trust_remote_code"):
        args.append("--trust-remote-code")
    # Adapters as NAME=PATH, served beside the base model under their own names.
    modules = [str(item) for item in settings.get("lora_modules") or []]
    if modules:
        args += ["--enable-lora", "--lora-modules", *modules]
    args.extend(str(item) for item in settings.get("extra_args") or [])
    return args


def serving_problems(
    settings: dict, model_config: dict | None, model_files: list[str], npus: int, model_key: str = ""
) -> list[str]:
    """What would make the server fail or misbehave, each naming the fix (empty when none)."""
    problems = []
    config = model_config or {}
    max_len = int(settings.get("max_model_len") or 0)
    limits = {key: int(config[key]) for key in ("seq_length", "max_position_embeddings") if config.get(key)}
    if max_len and limits:
        key, limit = min(limits.items(), key=lambda item: item[1])
        if max_len > limit:
            problems.append(
                f"--max-model-len {max_len} is larger than the model's {key} {limit} in config.json (the"
                " manual's inference FAQ 2: 'max_model_len is greater than the derived max_model_len'): lower"
                f" serve_max_model_len to {limit} or less, or raise {key} in the model's config.json"
            )
    batched = int(settings.get("max_num_batched_tokens") or 0)
    if max_len and batched and batched < max_len:
        problems.append(
            f"--max-num-batched-tokens {batched} is smaller than --max-model-len {max_len}; the manual asks"
            " for at least max-model-len (4096 or 8192 recommended): raise serve_max_num_batched_tokens"
        )
    tp = int(settings.get("tensor_parallel_size") or 1)
    pp = int(settings.get("pipeline_parallel_size") or 1)
    if tp * pp != int(npus):
        problems.append(
            f"tensor parallel {tp} x pipeline parallel {pp} = {tp * pp} must equal the NPUs given to the"
            f" server ({npus}): set serve_tensor_parallel_size (and pipeline) or the NPUs (serve_npus)"
        )
    quantization = str(settings.get("quantization") or "").lower()
    if quantization:
        column = QUANTIZATION_COLUMNS.get(quantization)
        if column is None:
            known = ", ".join(sorted(QUANTIZATION_COLUMNS))
            problems.append(f"quantization {quantization!r} is not one the manual's table knows ({known})")
        elif model_key:
            row = _vllm_table().get(model_key.lower())
            if row is None:
                problems.append(
                    f"model {model_key!r} is not in the manual's vLLM table: cannot check quantization"
                    f" {quantization}; leave serve_model_key empty to skip the check"
                )
            elif row[column] != "true":
                supported = [name for name, col in sorted(QUANTIZATION_COLUMNS.items()) if row[col] == "true"]
                problems.append(
                    f"the manual's vLLM table marks {column.upper()} ({quantization}) unsupported for"
                    f" {row['model']}; supported: {', '.join(supported) or 'none (fp16/bf16 only)'}"
                )
    if model_config is None:
        problems.append(
            "the model dir has no config.json: point serve_model_path at a HuggingFace-format model dir"
        )
    if not any(name in model_files for name in TOKENIZER_FILES):
        problems.append(
            "the model dir has no tokenizer files (tokenizer.json, tokenizer.model or tokenizer_config.json):"
            " a model converted to HuggingFace format needs the original tokenizer files copied beside it"
        )
    return problems


def listen_host_problems(host, var: str = "serve_host") -> list[str]:
    """Why ``host`` cannot be the address a server listens on (empty when it can): it must be an IP
    address or a host name, nothing more (no port, scheme, path or space)."""
    text = "" if host is None else str(host)
    try:
        ipaddress.ip_address(text)
        return []
    except ValueError:
        pass
    # A name whose labels are all digits is a mistyped IPv4 address (RFC 3696: no all-numeric TLD).
    if HOST_NAME.fullmatch(text) and not re.fullmatch(r"[0-9.]+", text):
        return []
    if not text.strip():
        hint = "it is empty"
    elif "://" in text:
        hint = "drop the scheme: a URL is not an address"
    elif re.fullmatch(r"\[?[0-9A-Fa-f:.]*\]?:[0-9]+|[^:/\s]+:[0-9]+", text):
        hint = "drop the port: it goes in serve_port"
    elif text.startswith("["):
        hint = "drop the brackets around an IPv6 address"
    else:
        hint = "it is neither an IP address nor a host name"
    return [
        f"{var} must be an IP address or a host name to listen on (got {text!r}: {hint}): set it to this"
        f" node's address (its default, npufleet_node_address), a host name of the node, or 0.0.0.0 to"
        f" listen on every interface (then set serve_api_key)"
    ]


def url_host(host, wildcard: str = "127.0.0.1") -> str:
    """The host part of a URL that reaches a server listening on ``host``: ``wildcard`` when it listens
    on every interface (0.0.0.0, ::), an IPv6 address in brackets, else ``host`` itself."""
    text = str(host).strip()
    if text in WILDCARDS:
        text = str(wildcard).strip()
    try:
        if ipaddress.ip_address(text).version == 6:
            return f"[{text}]"
    except ValueError:
        pass
    return text


def mindie_config(settings: dict, base: dict | None = None) -> dict:
    """The MindIE config.json every container of a multi-node service shares: the manual's example
    with ipAddress / managementIpAddress = the master's address, multi-node on, TLS off unless asked,
    and the model's name, weights, NPUs and lengths (maxSeqLen = maxInputTokenLen + maxIterTimes,
    maxPrefillTokens = maxInputTokenLen)."""
    config = copy.deepcopy(base) if base else json.loads(MINDIE_BASE.read_text(encoding="utf-8"))
    for key in ("master_address", "model_name", "model_weight_path", "npu_device_ids"):
        if not settings.get(key):
            raise AnsibleFilterError(f"mindie_config: settings need {key!r}")
    server, backend = config["ServerConfig"], config["BackendConfig"]
    deploy = backend["ModelDeployConfig"]
    model = deploy["ModelConfig"][0]
    schedule = backend["ScheduleConfig"]
    input_len = int(settings.get("max_input_token_len", deploy["maxInputTokenLen"]))
    iter_times = int(settings.get("max_iter_times", schedule["maxIterTimes"]))
    tls = bool(settings.get("tls", False))
    devices = [int(device) for device in settings["npu_device_ids"]]
    server |= {
        "ipAddress": settings["master_address"],
        "managementIpAddress": settings["master_address"],
        "port": int(settings.get("port", server["port"])),
        "httpsEnabled": tls,
        "interCommTLSEnabled": tls,
    }
    backend |= {"npuDeviceIds": [devices], "multiNodesInferEnabled": bool(settings.get("multi_node", True)),
                "interNodeTLSEnabled": tls}  # fmt: skip
    deploy |= {"maxSeqLen": input_len + iter_times, "maxInputTokenLen": input_len}
    model |= {"modelName": settings["model_name"], "modelWeightPath": settings["model_weight_path"],
              "worldSize": len(devices)}  # fmt: skip
    schedule |= {"maxIterTimes": iter_times, "maxPrefillTokens": input_len}
    if settings.get("max_prefill_batch_size"):
        schedule["maxPrefillBatchSize"] = int(settings["max_prefill_batch_size"])
    return config


def rank_table(servers: list[dict]) -> dict:
    """An Ascend rank table (version 1.0) for ``servers`` in rank order: each has server_id (its
    address; the first is the master), and devices with device_id and device_ip (the NPU's own
    network address, from hccn_tool); rank ids run across servers. MindIE's layout is HCCL's, so
    rank_tables renders both."""
    return render_rank_table(servers, "rank_table")


class FilterModule:
    def filters(self):
        return {
            "vllm_args": vllm_args,
            "serving_problems": serving_problems,
            "listen_host_problems": listen_host_problems,
            "url_host": url_host,
            "mindie_config": mindie_config,
            "rank_table": rank_table,
        }
