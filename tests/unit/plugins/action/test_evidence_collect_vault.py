"""evidence_collect's action through ansible-playbook on localhost: every value the vault gave the host,
from an encrypted vars file or an inline !vault string and whatever its name, is redacted from the
bundle, and shown nowhere in Ansible's output."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from ansible_collections.npufleet.ascend.plugins.action.evidence_collect import vaulted_values

ROOT = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent
FILE_SECRET = "vault-file-canary-3b7e"
INLINE_SECRET = "vault-inline-canary-91d4"


def vault(*args: str, password: Path) -> str:
    done = subprocess.run(
        [str(BIN / "ansible-vault"), *args, "--vault-password-file", str(password)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def test_every_value_the_vault_gave_is_redacted_from_the_bundle(tmp_path):
    password = tmp_path / "vault.pass"
    password.write_text("test-only-password\n")
    group_vars = tmp_path / "inventory" / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    # A numeric secret too; how Ansible connects (often kept there) is not a secret.
    secrets_file = (
        f"hub_credential: {FILE_SECRET}\nnested: {{deep: [{FILE_SECRET}x]}}\npin_code: 73019264\n"
        "ansible_user: deploy-user\n"
    )
    (group_vars / "vault.yml").write_text(secrets_file)
    vault("encrypt", str(group_vars / "vault.yml"), password=password)
    inline = vault("encrypt_string", INLINE_SECRET, password=password)
    (group_vars / "main.yml").write_text(f"team_note: {inline}\nplain_setting: not-a-secret-value\n")
    (tmp_path / "inventory" / "hosts.yml").write_text(
        f"all:\n  hosts:\n    here:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    log = tmp_path / "rank0.log"
    lines = [f"logged in with {FILE_SECRET}", f"token {INLINE_SECRET}x and {FILE_SECRET}x"]
    lines += ["pin 73019264", "not-a-secret-value as deploy-user", "given-as-one-string"]
    log.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "evidence.tar.gz"
    playbook = tmp_path / "collect.yml"
    playbook.write_text(
        "- name: Collect\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Gather\n      npufleet.ascend.evidence_collect:\n"
        f"        dest: {dest}\n        host_files: ['{log}']\n        commands: []\n"
        "        redact_values: given-as-one-string\n"
    )
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory" / "hosts.yml"), str(playbook),
         "--vault-password-file", str(password), "-v"],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
        env=os.environ | {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with tarfile.open(dest) as bundle:
        text = bundle.extractfile("logs/rank0.log").read().decode()
    assert FILE_SECRET not in text and INLINE_SECRET not in text
    assert "73019264" not in text and "given-as-one-string" not in text
    assert text.count("<redacted>") == 5
    # A value from a plain vars file stays, and so does the connection's user (and every letter).
    assert "not-a-secret-value as deploy-user" in text
    assert FILE_SECRET not in done.stdout + done.stderr and INLINE_SECRET not in done.stdout + done.stderr


def test_values_from_plain_variables_are_not_taken_and_short_ones_never():
    assert vaulted_values({"plain": "some-value", "listed": ["a", {"b": "c"}], "hostvars": {"x": "y"}}) == []


def test_a_variable_met_twice_or_holding_itself_is_read_once():
    looped: dict = {"name": "x"}
    looped["self"] = looped
    big = [str(number) for number in range(200_000)]
    assert vaulted_values({"looped": looped, "big": big, "again": big}) == []
