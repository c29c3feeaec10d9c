"""secret_env / plain_env: a container environment split into what may go on a command line and the
secrets, by name and by where the value came from (Ansible Vault), through ansible-playbook itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter.secret_env import plain_env, secret_env

ROOT = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent
# The project's own list, as fleet_defaults gives it to serve and train.
PATTERNS = yaml.safe_load((ROOT / "roles/fleet_defaults/defaults/main.yml").read_text())[
    "npufleet_sensitive_env_names"
]

SECRET_NAMES = [
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "hf_token", "GITHUB_TOKEN", "TOKEN", "WANDB_API_KEY",
    "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "PIP_INDEX_PASSWORD", "DB_PASSWD",
    "REGISTRY_PW", "SWR_PASS", "SWR_AUTH_STRING", "MODELSCOPE_CREDENTIALS", "SSH_PRIVATE_KEY",
]  # fmt: skip
PLAIN_NAMES = [
    "HCCL_IF_BASE_PORT", "ASCEND_RT_VISIBLE_DEVICES", "PYTORCH_NPU_ALLOC_CONF", "TOKENIZERS_PARALLELISM",
    "VLLM_MAX_NUM_BATCHED_TOKENS", "HF_ENDPOINT", "HF_HOME", "MASTER_PORT", "KEYBOARD", "PASSAGE_LEN",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names_go_to_the_env_file(name):
    env = {name: "value", "HCCL_IF_BASE_PORT": "60000"}
    assert secret_env(env, PATTERNS) == {name: "value"}
    assert plain_env(env, PATTERNS) == {"HCCL_IF_BASE_PORT": "60000"}


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_settings_stay_on_the_command_line(name):
    assert plain_env({name: "1"}, PATTERNS) == {name: "1"}
    assert secret_env({name: "1"}, PATTERNS) == {}


def test_bad_arguments_are_named():
    with pytest.raises(AnsibleFilterError, match="must be a mapping"):
        secret_env(["HF_TOKEN=x"], PATTERNS)
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        plain_env({}, "*TOKEN")


def test_a_vaulted_value_is_a_secret_whatever_its_name(tmp_path):
    """An inline !vault string, and a value of a vault-encrypted vars file: through templating, combine
    and set_fact, the split still finds both."""
    password = tmp_path / "vault.pass"
    password.write_text("test-only-password\n")
    inline = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", "vaulted-canary-5e1f",
         "--vault-password-file", str(password)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (tmp_path / "vars.yml").write_text(f"team_setting: {inline}\n")
    # A whole vars file encrypted: its values carry no vault tag, only the file they came from.
    (tmp_path / "vault.yml").write_text("file_setting: file-canary-0c2d\n")
    subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt", str(tmp_path / "vault.yml"),
         "--vault-password-file", str(password)],
        capture_output=True, check=True,
    )  # fmt: skip
    playbook = tmp_path / "split.yml"
    playbook.write_text(
        "- name: Split\n  hosts: localhost\n  gather_facts: false\n  vars_files: [vars.yml, vault.yml]\n"
        "  vars:\n"
        "    env: {MODEL_SETTING: '{{ team_setting }}', FILE_SETTING: '{{ file_setting }}',\n"
        "          HF_TOKEN: plain-named-secret, PLAIN: 'yes'}\n"
        "  tasks:\n"
        "    - name: Combine as the roles do\n      no_log: true\n      ansible.builtin.set_fact:\n"
        "        combined: \"{{ env | combine({'EXTRA': '1'}) }}\"\n"
        "    - name: Show the names only\n      ansible.builtin.debug:\n"
        "        msg: \"{{ {'secret': combined | npufleet.ascend.secret_env(patterns) | list | sort,\n"
        "                  'plain': combined | npufleet.ascend.plain_env(patterns) | list | sort}\n"
        '               | to_json }}"\n'
    )
    done = subprocess.run(
        # "-i localhost,": a host list (in ANSIBLE_INVENTORY the comma would make it a list of paths).
        [str(BIN / "ansible-playbook"), "-i", "localhost,", str(playbook),
         "--vault-password-file", str(password), "-e", json.dumps({"patterns": PATTERNS})],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
        env=os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "json",
                          "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(done.stdout)["plays"][0]["tasks"][1]["hosts"]["localhost"]
    assert json.loads(results["msg"]) == {
        "secret": ["FILE_SETTING", "HF_TOKEN", "MODEL_SETTING"],
        "plain": ["EXTRA", "PLAIN"],
    }
    assert "vaulted-canary-5e1f" not in done.stdout + done.stderr and "file-canary" not in done.stdout
