"""Secrets never in a record: a real run's kept artifacts hold no copy of the controller's environment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from npufleet.api import run_playbook

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
