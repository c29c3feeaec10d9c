"""A thin wrapper over ansible-runner: run one of the project's playbooks, return per-host results."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner

from npufleet.lab.nodes import project_root


@dataclass
class HostResult:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    failures: list[dict] = field(default_factory=list)
    changed_tasks: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    status: str
    rc: int
    hosts: dict[str, HostResult]
    artifact_dir: str
    output_tail: str = ""

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    def first_failure(self) -> str:
        for host, result in sorted(self.hosts.items()):
            for failure in result.failures:
                return f"{host}: {failure['task']}: {failure['msg']}"
        detail = f": {self.output_tail.splitlines()[-1]}" if self.output_tail else ""
        return f"ansible-playbook ended {self.status} (rc {self.rc}){detail}; see {self.artifact_dir}"


# Names of secrets: passwords, secrets, API keys, and tokens (hf_token, token_file), but not token
# counts (max_tokens, bench_input_tokens).
_SECRET_KEY = re.compile(r"password|passwd|secret|api_?key|(?:^|_)token(?:$|_)", re.IGNORECASE)


def _failure(event: dict) -> tuple[str, dict]:
    data = event.get("event_data", {})
    res = data.get("res", {}) or {}
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
    if isinstance(msg, list):
        # A list message reads 'headline:', then one problem per item.
        head, *rest = [str(item) for item in msg] or [""]
        msg = f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join([head, *rest])
    return data.get("host", "?"), {"task": data.get("task", "?"), "msg": str(msg).strip()}


def run_playbook(
    playbook: str,
    inventory: Path,
    *,
    extravars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: str | None = None,
    on_event: Callable[[dict], None] | None = None,
    env: dict[str, str] | None = None,
) -> RunResult:
    """Run ``playbooks/<playbook>`` (or a playbook at an absolute path) on ``inventory``, and collect
    what each host did."""
    secret_keys = sorted(key for key in extravars or {} if _SECRET_KEY.search(key))
    if secret_keys:
        # ansible-runner puts extra vars on ansible-playbook's command line and in its artifacts.
        raise ValueError(
            f"{', '.join(secret_keys)} look like secrets: keep them in an Ansible Vault-encrypted vars file "
            "in the inventory (group_vars), not in extra vars, which appear on the command line"
        )
    root = project_root()
    playbook_path = Path(playbook) if Path(playbook).is_absolute() else root / "playbooks" / playbook
    if not playbook_path.is_file():
        raise FileNotFoundError(f"no playbook {playbook_path}: run npufleet from the project checkout")
    if not inventory.exists():
        raise FileNotFoundError(
            f"inventory {inventory} does not exist: run 'npufleet lab up' or pass --inventory"
        )
    private = Path(tempfile.mkdtemp(prefix="npufleet-run-"))
    hosts: dict[str, HostResult] = {}

    def handle(event: dict) -> bool:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            hosts.setdefault(data.get("host", "?"), HostResult()).changed_tasks.append(data.get("task", "?"))
        if event.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get(
            "ignore_errors"
        ):
            host, failure = _failure(event)
            hosts.setdefault(host, HostResult()).failures.append(failure)
        if on_event:
            on_event(event)
        return True

    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    runner = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(root),
        playbook=str(playbook_path),
        inventory=str(inventory.resolve()),
        extravars=extravars or {},
        limit=limit,
        tags=tags,
        cmdline=" ".join(cmdline) or None,
        envvars={
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            # ansible-playbook lives beside this interpreter (the project's virtualenv).
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }
        | (env or {}),
        event_handler=handle,
        quiet=True,
        suppress_env_files=True,
        timeout=int(os.environ.get("NPUFLEET_RUN_TIMEOUT", "3600")),
    )
    stats = runner.stats or {}
    for key, attribute in (
        ("ok", "ok"),
        ("changed", "changed"),
        ("failures", "failed"),
        ("dark", "unreachable"),
        ("skipped", "skipped"),
    ):
        for host, count in (stats.get(key) or {}).items():
            setattr(hosts.setdefault(host, HostResult()), attribute, count)
    tail = ""
    if runner.rc != 0:
        stdout = Path(runner.config.artifact_dir) / "stdout"
        lines = (
            stdout.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            if stdout.exists()
            else []
        )
        tail = "\n".join(lines[-5:])
    return RunResult(runner.status, runner.rc, hosts, str(Path(runner.config.artifact_dir)), tail)
