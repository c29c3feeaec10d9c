"""evidence_collect's pure logic (module_utils/evidence): a file bounded to its tail, and secrets
redacted from logs and docker inspect output."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.evidence import (
    REDACTED,
    redact,
    redact_inspect,
    tail_bytes,
)
from ansible_collections.npufleet.ascend.plugins.modules.evidence_collect import Collector

CANARY = "s3cr3t-Canary-9f2e"


def test_the_tail_is_kept_from_a_line_start():
    data = b"first line\nsecond line\nthird line\n"
    assert tail_bytes(data, 100) == (data, False)
    assert tail_bytes(data, 15) == (b"third line\n", True)
    # One long line: its end is kept as it is.
    assert tail_bytes(b"x" * 50, 10) == (b"x" * 10, True)


@pytest.mark.parametrize(
    "line",
    [f"HF_TOKEN={CANARY}", f'"registry_password": "{CANARY}"', f"image_registry_password: {CANARY}",
     f"OPENAI_API_KEY={CANARY}", f"Authorization: Bearer {CANARY}",
     f"curl -H 'Authorization: Basic {CANARY}'",
     f'{{"auths": {{"swr.example.com": {{"auth": "{CANARY.replace("-", "")}"}}}}}}',
     "token hf_abcdefghijklmnopqrstuvwxyz012345 given", f"client_secret={CANARY} next=1",
     f"vllm serve m --api-key={CANARY}", f"X-Api-Key: {CANARY}", f"--hf-token={CANARY}",
     f"accessToken={CANARY}",
     f"python x.py --password {CANARY} --port 8000", f'{{\\"password\\": \\"{CANARY}\\"}}',
     f'{{"Authorization": "Bearer {CANARY}"}}', f"git clone https://user:{CANARY}@git.example.com/x.git"],
)  # fmt: skip
def test_secret_settings_and_token_forms_are_redacted(line):
    text, count = redact(line)
    assert CANARY not in text and CANARY.replace("-", "") not in text and "hf_abcdefghij" not in text
    assert REDACTED in text and count >= 1


@pytest.mark.parametrize(
    "line",
    ["max_tokens=128", "serve_mindie_max_input_token_len: 15360", "bench_input_tokens: 64",
     "tokenizer_path=/models/qwen", "{'loss': 1.2, 'epoch': 0.5}", "vllm serve m --max-tokens 128",
     "the secret sauce is time", "https://git.example.com/x.git", "--api-key-file /run/secrets/key"],
)  # fmt: skip
def test_counts_paths_and_plain_lines_are_left_alone(line):
    assert redact(line) == (line, 0)


def test_given_values_are_redacted_anywhere_and_short_ones_are_not():
    text, count = redact(f"login to swr with {CANARY}; again {CANARY}; pw ab", [CANARY, "ab", ""])
    assert text == f"login to swr with {REDACTED}; again {REDACTED}; pw ab" and count == 2


def test_docker_inspect_env_values_are_redacted_by_name():
    env = [f"HF_TOKEN={CANARY}", "PATH=/usr/bin", "API_KEY=", f"REGISTRY_PASSWORD={CANARY}x", "MAX_TOKENS=8"]
    inspect = [{"Name": "/npufleet-workload", "Config": {"Env": env}}]
    text, count = redact_inspect(json.dumps(inspect))
    env = json.loads(text)[0]["Config"]["Env"]
    assert env == [
        f"HF_TOKEN={REDACTED}",
        "PATH=/usr/bin",
        "API_KEY=",
        f"REGISTRY_PASSWORD={REDACTED}",
        "MAX_TOKENS=8",
    ]
    assert count == 2 and CANARY not in text
    # Not JSON (docker failed): redacted as text.
    assert redact_inspect(f"Error: HF_TOKEN={CANARY}")[0] == f"Error: HF_TOKEN={REDACTED}"


def test_the_plog_listing_takes_the_newest_files_of_the_run_only(tmp_path):
    """The shell script evidence_collect runs in each container, run here with sh: folders given with
    a leading ~ are the user's home, ASCEND_PROCESS_LOG_PATH comes first, older files stay out."""
    plog = tmp_path / "ascend" / "log" / "run" / "plog"
    plog.mkdir(parents=True)
    custom = tmp_path / "custom"
    custom.mkdir()
    for folder, name, mtime in ((plog, "old.log", 1000), (plog, "new.log", 5000), (custom, "job.log", 6000)):
        (folder / name).write_text("x\n")
        os.utime(folder / name, (mtime, mtime))
    done = subprocess.run(
        ["sh", "-c", Collector._LIST_LOGS, "sh", "8", repr(2000.0), "~/ascend/log/run/plog", "~/none"],
        capture_output=True, text=True, check=True,
        env={"HOME": str(tmp_path), "PATH": os.environ["PATH"], "ASCEND_PROCESS_LOG_PATH": str(custom)},
    )  # fmt: skip
    assert done.stdout.splitlines() == [str(custom / "job.log"), str(plog / "new.log")]
