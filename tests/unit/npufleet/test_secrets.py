"""Secrets never on a command line or in a record: extra vars named like secrets or holding
credential-shaped values are refused before anything runs, and a real run's kept artifacts hold no
copy of the controller's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from npufleet.api import refuse_secret_extravars, run_playbook, secret_name

ROOT = Path(__file__).resolve().parents[3]
NPUFLEET = str(Path(sys.executable).parent / "npufleet")
# The roles' own variables that hold secrets: refused as extra vars, given through the Vault.
ROLE_SECRETS = {
    "bench_api_key",
    "serve_api_key",
    "image_registry_password",
    "image_build_secrets",
    "evidence_redact_values",
}
CANARY = "CANARY4711"


def role_variables() -> set[str]:
    names = set()
    for defaults in ROOT.glob("roles/*/defaults/main.yml"):
        names |= set(yaml.safe_load(defaults.read_text(encoding="utf-8")) or {})
    return names


def test_the_roles_variables_pass_but_their_secrets():
    names = role_variables()
    assert len(names) > 300 and names >= ROLE_SECRETS
    assert {name for name in names if secret_name(name)} == ROLE_SECRETS


@pytest.mark.parametrize(
    "name",
    [
        # The probe's misses.
        "registry_pw", "image_registry_pass", "swr_auth_string",
        # Passwords and passphrases.
        "registry_password", "dbpasswd", "ansible_password", "ansible_ssh_pass", "ansible_become_pass",
        "mindie_server_key_pwd", "key_passphrase", "pw", "PASSWORD",
        # Secrets and credentials.
        "client_secret", "aws_secret_access_key", "registry_credentials", "docker_creds", "session_cookie",
        # Tokens.
        "token", "hf_token", "auth_token", "relay_token", "vault_swr_token", "hf_hub_token", "id_token",
        "accessToken", "HF_TOKEN", "apitoken", "api_tokens",
        # Auth.
        "auth", "basic_auth", "oauth", "proxy_authorization", "registry_auth",
        # Keys.
        "key", "api_key", "apiKey", "OPENAI_API_KEY", "x_api_key", "access_key", "secret_key", "ssh_key",
        "private_key", "privkey", "deploy_key", "license_key", "api_keys",
    ],
)  # fmt: skip
def test_names_of_secrets_are_refused(name):
    assert secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        # The model's tokens: counts, lengths, limits, ids, special tokens, the tokenizer.
        "max_tokens", "bench_input_tokens", "bench_output_tokens", "serve_gate_max_tokens",
        "serve_max_num_batched_tokens", "serve_mindie_max_input_token_len", "max_token_count",
        "max_token_length", "token_limit", "stop_token_ids", "eos_token", "pad_token", "new_special_tokens",
        "bench_tokenizer", "tokenizer_path", "train_mindspeed_tokenizer_path",
        # Words that hold "auth", "pass" or "key" but are not secrets.
        "author", "authors", "authority", "authorized_keys", "bypass", "passthrough", "compass",
        "serve_model_key", "train_model_key", "version_key", "sort_keys", "ssh_public_key", "monkey",
        "keyboard_layout",
        # Where a secret is, or how it is used: a path, a URL, a name, a method (the value is still checked).
        "docker_ce_repository_key_url", "ansible_ssh_private_key_file", "hf_token_file",
        "registry_token_file", "vault_password_file", "secret_name", "auth_method", "ssh_auth_sock",
        "access_key_id",
        # Plain settings.
        "image_registry_username", "k8s_job_kubeconfig", "git_lfs_tarball_sha256", "npufleet_report_dir",
    ],
)  # fmt: skip
def test_names_that_are_not_secrets_pass(name):
    assert not secret_name(name)


RANDOM_43 = "Hl2_2zroWAO6KdjNaN4MpADYbsahOTKsaMOLZnUl8tM"  # secrets.token_urlsafe(32)'s shape


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("https://user:s3cret@registry.example.com/v2/", "a URL with a user:password"),
        ("postgres://npufleet:pw@db:5432/runs", "a URL with a user:password"),
        ("hf_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h", "a Hugging Face token"),
        ("sk-proj-" + "Ab3De6Gh9Jk2Mn5Pq8St1Vw4", "an API key (sk-...)"),
        ("ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "a GitHub token"),
        ("AKIAIOSFODNN7EXAMPLE", "an AWS access key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "a JSON Web Token"),
        ("Authorization: Bearer abcd1234efgh5678ijkl", "a Bearer credential"),
        ("Basic dXNlcjpwYXNzd29yZA==", "a Basic credential (user:password)"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=", "a private key"),
        (RANDOM_43, "a long random string (a token or key)"),
        ("cCRfXp8WP0Mc30zRmcF6qZ7mvRyGoN7VroXLiOkZ", "a long random string (a token or key)"),
        ("k9x2m4q7w1e8r5t3y6u0i2o9p4a7s1d8", "a long random string (a token or key)"),
    ],
)
def test_credential_shaped_values_are_refused_and_named_not_shown(value, what):
    with pytest.raises(ValueError) as refused:
        refuse_secret_extravars({"note": value})
    message = str(refused.value)
    assert message.startswith("note look like secrets: keep them in an Ansible Vault")
    assert f"note's value looks like {what}" in message
    assert value not in message and value[-12:] not in message


@pytest.mark.parametrize(
    "value",
    [
        "swr.cn-north-4.myhuaweicloud.com/ascendhub/mindie@sha256:" + "4f" * 32,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # a sha256 checksum
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # a commit SHA
        "123e4567-e89b-12d3-a456-426614174000",
        "/home/ma-user/ws/models/Qwen2.5-7B-Instruct",
        "Qwen/Qwen2-VL-72B-Instruct-GPTQ-Int4",
        "Idefics3ForConditionalGeneration",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "/usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/lib64",
        "registry.local:5000/npufleet/workload:1.0",
        "http://127.0.0.1:8000/v1",
        "ssh://git@github.com:22/npufleet/npufleet.git",
        "Ascend-hdk-910b-npu-driver_24.1.rc2_linux-aarch64.run",
        "V100R001C19SPC001B128",
        "The bearer of bad news. Basic configuration.",
        "--max-num-seqs=256 --served-model-name tiny-sft",
        "2026-12-03T05:30:00Z",
    ],
)
def test_ordinary_values_pass(value):
    refuse_secret_extravars({"note": value, "nested": {"items": [value, {"deeper": value}]}})


def test_every_default_value_of_the_roles_passes():
    values = {}
    for defaults in ROOT.glob("roles/*/defaults/main.yml"):
        values |= yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}
    refuse_secret_extravars({key: value for key, value in values.items() if key not in ROLE_SECRETS})


def test_secrets_are_found_at_any_depth_and_each_is_named(tmp_path):
    inventory = tmp_path / "prod" / "hosts.yml"
    inventory.parent.mkdir()
    inventory.write_text("all: {}\n")
    extravars = {
        "train_env": {"HF_TOKEN": CANARY, "HCCL_CONNECT_TIMEOUT": "1200"},
        "serve_extra_args": ["--port", "8000", {"mirror": f"https://bot:{CANARY}@mirror.example.com"}],
        "train_name": "sft",
    }
    with pytest.raises(ValueError) as refused:
        refuse_secret_extravars(extravars, inventory)
    message = str(refused.value)
    assert message.startswith("train_env.HF_TOKEN, serve_extra_args[2].mirror look like secrets")
    assert "serve_extra_args[2].mirror's value looks like a URL with a user:password" in message
    vault_file = tmp_path / "prod" / "group_vars" / "all" / "vault.yml"
    assert f"ansible-vault encrypt_string --name HF_TOKEN, pasted under train_env in {vault_file}" in message
    assert "--ask-vault-pass or --vault-password-file FILE" in message
    assert CANARY not in message
    # An inventory folder holds its group_vars.
    with pytest.raises(ValueError, match=f"--name registry_pw >> {vault_file}, then"):
        refuse_secret_extravars({"registry_pw": CANARY}, tmp_path / "prod")


def test_a_refused_run_starts_nothing(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    for extravars in ({"registry_pw": CANARY}, {"image_registry_pass": CANARY}, {"swr_auth_string": CANARY},
                      {"note": "hf_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h"}):  # fmt: skip
        with pytest.raises(ValueError, match="look like secrets: keep them in an Ansible Vault"):
            run_playbook("preflight.yml", inventory, extravars=extravars, artifacts=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def npufleet(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([NPUFLEET, *args], capture_output=True, text=True, check=False, cwd=cwd)


def test_the_cli_refuses_secrets_with_exit_2_naming_them_and_the_vault(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    given = tmp_path / "vars.yml"
    given.write_text(f"train_name: sft\nregistry:\n  url: https://robot:{CANARY}@swr.example.com\n")
    done = npufleet("up", "-i", str(inventory), "-e", f"registry_pw={CANARY}", "-e", f"@{given}",
                    "-e", f"swr_auth_string={CANARY}")  # fmt: skip
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert message.startswith("npufleet: registry_pw, registry.url, swr_auth_string look like secrets")
    assert "registry.url's value looks like a URL with a user:password" in message
    vault_file = tmp_path / "group_vars" / "all" / "vault.yml"
    assert f"ansible-vault encrypt_string --name registry_pw >> {vault_file}" in message
    assert CANARY not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        ("$ANSIBLE_VAULT;1.1;AES256\n6162\n", "is encrypted with Ansible Vault, which npufleet does not"),
        ("key: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n", "is encrypted with Ansible Vault"),
        ("- 0\n- 1\n", "is not a mapping of variable names to values"),
        (f"a: [{CANARY}\n", "is not valid YAML or JSON at line 2"),
        (f"{CANARY}-x: 1\n", "has a key that is not a variable name (it is not shown)"),
    ],
)
def test_a_vars_file_that_cannot_be_read_exits_2_naming_it(tmp_path, content, problem):
    # Brackets in the file's name are printed as they are, not read as rich markup.
    given = tmp_path / "vars[prod].yml"
    if content is not None:
        given.write_text(content)
    done = npufleet("check", "-i", str(tmp_path / "hosts.yml"), "-e", f"@{given}")
    assert done.returncode == 2
    assert f"npufleet: --extra-var @{given} {problem}" in " ".join(done.stderr.split())
    assert CANARY not in done.stderr + done.stdout


HELLO = """\
- name: Say hello on the controller
  hosts: all
  gather_facts: false
  tasks:
    - name: Hello
      ansible.builtin.debug:
        msg: hello
"""


def test_a_real_runs_artifacts_keep_no_copy_of_the_environment(tmp_path, monkeypatch):
    """ansible-runner writes the run's whole environment into artifacts/<ident>/command: the record
    keeps the names of the variables, never their values, whatever they are named."""
    canaries = {
        "HF_TOKEN": "canary-hf-9d1e",
        "REGISTRY_PASSWORD": "canary-registry-4b7c",
        # An innocuous name with a token-shaped value.
        "NPUFLEET_NOTE": "hf_canaryQ7wE3rT9yU1iO5pA2sD8fG4hJ6kL0z",
    }
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)
    playbook = tmp_path / "hello.yml"
    playbook.write_text(HELLO)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        f"all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    result = run_playbook(
        str(playbook), inventory, artifacts=tmp_path / "runs", env={"NPUFLEET_GIVEN": "canary-given-2f8a"}
    )
    assert result.succeeded, result.first_failure()
    kept = [path for path in (tmp_path / "runs").rglob("*") if path.is_file()]
    assert len(kept) > 5  # command, stdout, status, rc, the events
    found = [
        (name, str(path))
        for path in kept
        for name, value in (canaries | {"NPUFLEET_GIVEN": "canary-given-2f8a"}).items()
        if value.encode() in path.read_bytes()
    ]
    assert found == []
    record = json.loads((Path(result.artifact_dir) / "command").read_text(encoding="utf-8"))
    assert record["command"][0] == "ansible-playbook" and record["cwd"] == os.getcwd()
    assert {"HF_TOKEN", "NPUFLEET_NOTE", "NPUFLEET_GIVEN", "PATH"} <= set(record["env"])
    # No env/ files (envvars, extravars, passwords, ssh key) in the private data dir.
    private = Path(result.artifact_dir).parents[1]
    assert not [path for path in (private / "env").rglob("*") if path.is_file()]
