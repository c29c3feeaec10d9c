#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_benchmark
short_description: Benchmark an OpenAI-compatible LLM server and write the report
description:
  - With O(backend=npufleet), runs npufleet's load generator (C(npufleet.bench), also C(npufleet bench))
    where the task runs, normally the controller (with C(delegate_to) localhost, whose Python has
    npufleet installed), against O(url); writes C(bench.json), C(bench.md) and C(bench.png) into O(dest).
  - With O(backend=vllm), runs C(vllm bench serve) inside O(container) on the node (the serving
    container has vLLM) for each level, and normalizes its results into the same report, to
    cross-check the two.
  - "Metrics. TTFT: from the write of the request's body to the arrival (stamped when the connection
    received the bytes) of the first chunk whose content is not empty (a role-only first chunk does not
    count); the client's own delay before the write is reported apart as send_delay_ms. TPOT: per
    request, (E2E - TTFT) / (output tokens - 1). ITL: per token, the gap between two content chunks
    divided by the tokens the later chunk carries (server usage counts where the server sends them).
    E2E: the write of the request to the end of the response. Request, output and total token throughput
    over the run's duration; goodput: requests per second meeting every SLO given. p50, p90 and p99 of
    each. Failed requests are counted by kind, never dropped; an answer without content (the model
    stopped at once) is completed, without a TTFT, and counted as empty."
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  url:
    description: Base URL of the server; with V(vllm), as seen from inside the container.
    type: str
    required: true
  model:
    description: Model name the server serves.
    type: str
    required: true
  backend:
    description: V(npufleet) (the project's load generator) or V(vllm) (C(vllm bench serve) in O(container)).
    type: str
    choices: [npufleet, vllm]
    default: npufleet
  container:
    description: The serving container (V(vllm) backend).
    type: str
  endpoint:
    description: Chat or completions API.
    type: str
    choices: [chat, completions]
    default: chat
  stream:
    description: Stream the answers (SSE).
    type: bool
    default: true
  concurrency:
    description: Requests in flight; one run per value (a sweep). Exclusive with O(rate).
    type: list
    elements: int
    default: []
  rate:
    description: Requests per second; one run per value. Exclusive with O(concurrency).
    type: list
    elements: float
    default: []
  arrival:
    description: Arrival process with O(rate).
    type: str
    choices: [poisson, constant]
    default: poisson
  requests:
    description: Requests per level.
    type: int
    default: 100
  input_tokens:
    description: Length of the synthetic prompts (words).
    type: int
    default: 128
  output_tokens:
    description: max_tokens of each request.
    type: int
    default: 128
  dataset:
    description: A JSONL file of prompts instead of synthetic ones (V(npufleet)).
    type: path
  warmup:
    description: Requests sent first and not counted (V(npufleet)).
    type: int
    default: 2
  slo:
    description: Goodput limits, any of C(ttft_ms), C(tpot_ms), C(e2e_ms).
    type: dict
    default: {}
  timeout:
    description: Seconds one request may take.
    type: int
    default: 600
  dest:
    description: Folder for the report (created), where the task runs.
    type: path
    required: true
attributes:
  check_mode:
    support: none
    description: A benchmark sends load; it does not run in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Sweep concurrency against a node's vLLM server, from the controller
  llm_benchmark:
    url: "http://{{ ansible_host }}:8000"
    model: /models/qwen2-7b
    concurrency: [1, 16, 64]
    requests: 200
    slo: {ttft_ms: 2000, tpot_ms: 100}
    dest: reports/bench/qwen2-7b
  delegate_to: localhost
  run_once: true

- name: The same with vllm bench serve inside the serving container, to cross-check
  llm_benchmark:
    backend: vllm
    container: npufleet-workload
    url: http://127.0.0.1:8000
    model: /models/qwen2-7b
    concurrency: [1, 16, 64]
    dest: /tmp/npufleet-bench
"""

RETURN = r"""
runs:
  description: One entry per level, with mode (concurrency or rate), level, and summary (the metrics above).
  returned: success
  type: list
  elements: dict
files:
  description: Paths of bench.json and bench.md (and bench.png for V(npufleet)).
  returned: success
  type: dict
"""

import json
import os
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.vllm_bench import command, normalize


def run_npufleet(module: AnsibleModule) -> dict:
    params = module.params
    try:
        from npufleet.bench import prompts as bench_prompts  # noqa: PLC0415 -- only this backend needs it
        from npufleet.bench import report as bench_report  # noqa: PLC0415
        from npufleet.bench.run import Settings, benchmark  # noqa: PLC0415
    except ImportError as error:
        module.fail_json(
            msg=f"npufleet's load generator is not importable here ({error}): run this task on the controller"
            " (delegate_to: localhost) with the project's virtualenv as its Python"
        )
    if params["dataset"]:
        prompts = bench_prompts.from_jsonl(params["dataset"], params["requests"], params["output_tokens"])
    else:
        prompts = bench_prompts.synthetic(params["requests"], params["input_tokens"], params["output_tokens"])
    settings = Settings(
        url=params["url"],
        model=params["model"],
        endpoint=params["endpoint"],
        stream=params["stream"],
        concurrencies=params["concurrency"],
        rates=params["rate"],
        arrival=params["arrival"],
        warmup=params["warmup"],
        timeout=params["timeout"],
        slo=params["slo"],
    )
    data = benchmark(settings, prompts)
    files = bench_report.write(data, Path(params["dest"]))
    return {"data": data, "files": {key: str(value) for key, value in files.items()}}


def run_vllm(module: AnsibleModule) -> dict:
    params = module.params
    if not params["container"]:
        module.fail_json(msg="backend vllm runs vllm bench serve in the serving container: set container")
    docker = module.get_bin_path("docker", required=True)
    runs = []
    levels = [("concurrency", level) for level in params["concurrency"]] + [
        ("rate", r) for r in params["rate"]
    ]
    for mode, level in levels:
        name = f"npufleet-bench-{mode}-{level}.json"
        line = command(url=params["url"], model=params["model"], endpoint=params["endpoint"],
                       concurrency=level if mode == "concurrency" else None,
                       rate=level if mode == "rate" else None, requests=params["requests"],
                       input_tokens=params["input_tokens"], output_tokens=params["output_tokens"],
                       result_dir="/tmp", result_file=name)  # fmt: skip
        rc, out, err = module.run_command([docker, "exec", params["container"], "bash", "-c", line])
        if rc != 0:
            module.fail_json(msg=f"vllm bench serve failed at {mode} {level}: {(err or out).strip()[-1500:]}")
        rc, out, err = module.run_command([docker, "exec", params["container"], "cat", f"/tmp/{name}"])
        if rc != 0:
            module.fail_json(msg=f"vllm bench serve wrote no result at {mode} {level}: {err.strip()}")
        runs.append({"mode": mode, "level": level, "summary": normalize(json.loads(out)), "samples": {}})
    data = {"config": {key: params[key] for key in ("url", "model", "endpoint", "stream", "arrival")}
            | {"concurrencies": params["concurrency"], "rates": params["rate"],
               "requests_per_level": params["requests"], "backend": "vllm bench serve", "slo": params["slo"]},
            "warmup": {"requests": 0, "failed": 0}, "runs": runs}  # fmt: skip
    os.makedirs(params["dest"], exist_ok=True)
    files = {"json": os.path.join(params["dest"], "bench.json")}
    with tempfile.NamedTemporaryFile("w", dir=params["dest"], delete=False, encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.replace(handle.name, files["json"])
    return {"data": data, "files": files}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "model": {"type": "str", "required": True},
            "backend": {"type": "str", "default": "npufleet", "choices": ["npufleet", "vllm"]},
            "container": {"type": "str"},
            "endpoint": {"type": "str", "default": "chat", "choices": ["chat", "completions"]},
            "stream": {"type": "bool", "default": True},
            "concurrency": {"type": "list", "elements": "int", "default": []},
            "rate": {"type": "list", "elements": "float", "default": []},
            "arrival": {"type": "str", "default": "poisson", "choices": ["poisson", "constant"]},
            "requests": {"type": "int", "default": 100},
            "input_tokens": {"type": "int", "default": 128},
            "output_tokens": {"type": "int", "default": 128},
            "dataset": {"type": "path"},
            "warmup": {"type": "int", "default": 2},
            "slo": {"type": "dict", "default": {}},
            "timeout": {"type": "int", "default": 600},
            "dest": {"type": "path", "required": True},
        },
        mutually_exclusive=[("concurrency", "rate")],
        required_one_of=[("concurrency", "rate")],
        supports_check_mode=False,
    )
    try:
        outcome = run_npufleet(module) if module.params["backend"] == "npufleet" else run_vllm(module)
    except ValueError as error:
        module.fail_json(msg=str(error))
    runs = [{key: run[key] for key in ("mode", "level", "summary")} for run in outcome["data"]["runs"]]
    completed = sum(run["summary"]["completed"] for run in runs)
    if not completed:
        module.fail_json(msg=f"every request failed against {module.params['url']}: is the server up?",
                         runs=runs, files=outcome["files"])  # fmt: skip
    module.exit_json(changed=True, runs=runs, files=outcome["files"])


if __name__ == "__main__":
    main()
