#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_benchmark
short_description: Benchmark an OpenAI-compatible LLM server and write the report
description:
  - With O(backend=npufleet), the collection's load generator (C(plugins/plugin_utils/bench), also
    C(npufleet bench)) runs on the controller, in this module's action plugin, against O(url), and writes
    C(bench.json), C(bench.md) and C(bench.png) into O(dest) on the controller. Nothing runs on the
    node, so no C(delegate_to) is needed; the controller's Python needs aiohttp and matplotlib (the
    project's virtualenv has them).
  - With O(backend=vllm), the action plugin hands the task to this module on the node, which runs
    C(vllm bench serve) inside O(container) (the serving container has vLLM) for each level, and
    normalizes its results into the same report (C(bench.json) in O(dest) on the node), to cross-check
    the two.
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
  tokenizer:
    description:
      - The tokenizer C(vllm bench serve) loads (V(vllm) backend), a path in O(container) or a name, when
        O(model) is a served name that is none (a LoRA adapter's, or C(--served-model-name)).
      - Default O(model).
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
    description:
      - A file of prompts instead of synthetic ones.
      - With V(npufleet), a JSONL file on the controller, one JSON object a line with C(prompt) (text);
        a line may also give C(messages) (chat), C(max_tokens) (else O(output_tokens)) and C(ignore_eos)
        (true, every answer as long as asked).
      - With V(vllm), a file in O(container) given to C(vllm bench serve), its prompts sent as written, in
        the file's order (C(--disable-shuffle)), each asking for O(output_tokens), C(--ignore-eos).
      - "A C(.json) file in ShareGPT's format, a list of C({\"conversations\": [{\"from\": \"human\",
        \"value\": PROMPT}, {\"from\": \"gpt\", \"value\": \"\"}]}) (C(--dataset-name sharegpt
        --sharegpt-output-len)); else JSONL with a C(prompt) per line (C(--dataset-name custom
        --skip-chat-template --custom-output-len); vllm needs pandas in the container for it)."
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
    type: float
    default: 600
  api_key:
    description:
      - The server's API key (vLLM's C(VLLM_API_KEY)), a secret, kept in Ansible Vault. Empty, no key is sent.
      - "With V(npufleet), each request carries C(Authorization: Bearer <key>)."
      - With V(vllm), C(vllm bench serve) gets it as C(OPENAI_API_KEY) from a file of mode 0600 on the node,
        passed with C(docker exec --env-file) and removed afterwards, never on a command line.
      - It is never written in the report.
    type: str
    default: ""
  dest:
    description: The report's folder (created), on the controller with V(npufleet), on the node with V(vllm).
    type: path
    required: true
attributes:
  action:
    support: full
    description: The action plugin runs V(npufleet) on the controller, this module on the node for V(vllm).
  check_mode:
    support: full
    description:
      - A benchmark sends load, so check mode sends none. The options are checked as for a run (with
        V(npufleet), the dataset is read and the prompts made), and the result says what would run, with
        C(changed) true (a run writes its report). Whether the server answers is not known in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Sweep concurrency against a node's vLLM server (the load generator runs on the controller)
  npufleet.ascend.llm_benchmark:
    url: "http://{{ ansible_host }}:8000"
    model: /models/qwen2-7b
    concurrency: [1, 16, 64]
    requests: 200
    slo: {ttft_ms: 2000, tpot_ms: 100}
    api_key: "{{ serve_api_key }}"  # from an Ansible Vault-encrypted vars file; empty: the server needs none
    dest: reports/bench/qwen2-7b
  run_once: true

- name: The same with vllm bench serve inside the serving container on the node, to cross-check
  npufleet.ascend.llm_benchmark:
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
  description: >-
    Paths of bench.json, bench.md and bench.png on the controller (V(npufleet)), or of bench.json
    on the node (V(vllm)).
  returned: success
  type: dict
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.docker_env import secret_env_file
from ansible_collections.npufleet.ascend.plugins.module_utils.vllm_bench import command, normalize

# The options and their rules: AnsibleModule's here, and the same on the controller for the action
# plugin (plugins/action/llm_benchmark.py) and the load generator's entry point (run_benchmark).
SPEC = dict(
    argument_spec={
        "url": {"type": "str", "required": True},
        "model": {"type": "str", "required": True},
        "backend": {"type": "str", "default": "npufleet", "choices": ["npufleet", "vllm"]},
        "container": {"type": "str"},
        "tokenizer": {"type": "str"},
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
        "timeout": {"type": "float", "default": 600},
        "api_key": {"type": "str", "default": "", "no_log": True},
        "dest": {"type": "path", "required": True},
    },
    mutually_exclusive=[["concurrency", "rate"]],
    required_one_of=[["concurrency", "rate"]],
)

ON_THE_CONTROLLER = (
    "backend npufleet runs on the controller, in the action plugin of npufleet.ascend.llm_benchmark, not in"
    " this module on the node: call the task as npufleet.ascend.llm_benchmark from the collection (which"
    " has that action plugin), or set backend: vllm"
)


def unauthorized(runs: list) -> bool:
    """Whether the server refused requests for want of the right API key (HTTP 401)."""
    return any(run["summary"].get("errors", {}).get("http_401") for run in runs)


def task_result(outcome: dict, url: str) -> dict:
    """The task's result from a benchmark's outcome ({"data": ..., "files": ...}), for either backend:
    the levels' summaries and the report's files; failed when not one request completed."""
    runs = [{key: run[key] for key in ("mode", "level", "summary")} for run in outcome["data"]["runs"]]
    result = {"changed": True, "runs": runs, "files": outcome["files"]}
    if not sum(run["summary"]["completed"] for run in runs):
        why = (
            "the server answered 401 Unauthorized: it requires an API key (api_key, the bench role's"
            " bench_api_key, from serve_api_key)"
            if unauthorized(runs)
            else "is the server up?"
        )
        result.update(failed=True, msg=f"every request failed against {url}: {why}")
    return result


def check_mode_result(params: dict) -> dict:
    """What a check run reports: the benchmark it would run, nothing sent; changed, as a run writes its
    report."""
    if params["rate"]:
        rates = ", ".join(f"{rate:g}" for rate in params["rate"])
        levels = f"request rates {rates} per second ({params['arrival']} arrivals)"
    else:
        levels = "concurrency " + ", ".join(str(level) for level in params["concurrency"])
    if params["dataset"]:
        prompts = f"the prompts of {params['dataset']}"
    else:
        prompts = f"synthetic prompts of {params['input_tokens']} words"
    if params["backend"] == "vllm":
        where = f"with vllm bench serve in the container {params['container']}"
        warmup, dest = "", f"{os.path.normpath(params['dest'])} on the node"
    else:
        where = "from the controller"
        warmup, dest = f" after {params['warmup']} warm-up", os.path.normpath(params["dest"])
    streamed = "streamed" if params["stream"] else "not streamed"
    msg = (
        f"check mode: would benchmark model {params['model']!r} at {params['url']} {where}: {levels},"
        f" {params['requests']} requests a level{warmup}, {prompts}, up to {params['output_tokens']} tokens"
        f" each ({params['endpoint']} endpoint, {streamed}); the report into {dest}. Nothing was sent:"
        " whether the server answers is known only when the benchmark runs."
    )
    return {"changed": True, "msg": msg}


class VllmBench:
    """`vllm bench serve` in the serving container, one run per level, normalized into the report's
    data and written to bench.json in dest (on the node)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.docker = ""
        self.env_file = ""

    def run(self) -> dict:
        params = self.params
        if not params["container"]:
            self.module.fail_json(
                msg="backend vllm runs vllm bench serve in the serving container: set container"
            )
        self.docker = self.module.get_bin_path("docker", required=True)
        levels = [("concurrency", level) for level in params["concurrency"]]
        levels += [("rate", rate) for rate in params["rate"]]
        # The key reaches vllm bench serve by environment (OPENAI_API_KEY), never on a command line.
        secrets = {"OPENAI_API_KEY": params["api_key"]} if params["api_key"] else {}
        try:
            with secret_env_file(secrets) as path:
                self.env_file = path or ""
                runs = [self._level(mode, level) for mode, level in levels]
        except ValueError:
            self.module.fail_json(msg="api_key must be one line")
        finally:
            self.env_file = ""
        config = {key: params[key] for key in ("url", "model", "endpoint", "stream", "arrival")}
        config.update(
            concurrencies=params["concurrency"],
            rates=params["rate"],
            requests_per_level=params["requests"],
            backend="vllm bench serve",
            slo=params["slo"],
            api_key_sent=bool(params["api_key"]),
        )
        data = {"config": config, "warmup": {"requests": 0, "failed": 0}, "runs": runs}
        return {"data": data, "files": {"json": self._write(data)}}

    def _level(self, mode: str, level) -> dict:
        params = self.params
        name = f"npufleet-bench-{mode}-{level}.json"
        line = command(url=params["url"], model=params["model"], endpoint=params["endpoint"],
                       concurrency=level if mode == "concurrency" else None,
                       rate=level if mode == "rate" else None, requests=params["requests"],
                       input_tokens=params["input_tokens"], output_tokens=params["output_tokens"],
                       result_dir="/tmp", result_file=name, tokenizer=params["tokenizer"],
                       dataset=params["dataset"])  # fmt: skip
        container = params["container"]
        # The key reaches vllm bench serve as OPENAI_API_KEY from a file: only the file's path is on argv.
        env = ["--env-file", self.env_file] if self.env_file else []
        argv = [self.docker, "exec", *env, container, "bash", "-c", line]
        rc, out, err = self.module.run_command(argv, environ_update={"LC_ALL": "C"})
        if rc != 0:
            message = (
                f"vllm bench serve failed at {mode} {level} in {container}: {(err or out).strip()[-1500:]}"
            )
            self.module.fail_json(msg=message, cmd=argv, rc=rc, stdout=out, stderr=err)
        argv = [self.docker, "exec", container, "cat", f"/tmp/{name}"]
        rc, out, err = self.module.run_command(argv, environ_update={"LC_ALL": "C"})
        if rc != 0:
            self.module.fail_json(msg=f"vllm bench serve wrote no result at {mode} {level}: {err.strip()}",
                                  cmd=argv, rc=rc, stdout=out, stderr=err)  # fmt: skip
        return {"mode": mode, "level": level, "summary": normalize(json.loads(out)), "samples": {}}

    def _write(self, data: dict) -> str:
        dest = self.params["dest"]
        os.makedirs(dest, exist_ok=True)
        path = os.path.join(dest, "bench.json")
        with tempfile.NamedTemporaryFile("w", dir=dest, delete=False, encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(handle.name, path)
        return path


def main() -> None:
    module = AnsibleModule(supports_check_mode=False, **SPEC)
    if module.params["backend"] == "npufleet":
        module.fail_json(msg=ON_THE_CONTROLLER)
    try:
        outcome = VllmBench(module).run()
    except ValueError as error:
        module.fail_json(msg=str(error))
    result = task_result(outcome, module.params["url"])
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
