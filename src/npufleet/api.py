"""npufleet's Python API: run a stage (a playbook) on an inventory through ansible-runner and get a
typed result back.

    from npufleet import api

    result = api.run("preflight", "inventories/lab/hosts.yml", timeout=600)  # default: no limit
    for host, counts in result.hosts.items():
        print(host, counts.ok, counts.changed, counts.failed, counts.unreachable)
    facts = result.module_results("npu_smi_info")  # what the project's modules returned
    print(result.status, result.reports, result.artifact_dir)

Each run gets a private data dir (its artifacts kept: events, stdout, the command, whose record
keeps the environment's variable names, not their values), env files are suppressed, a vault
password is answered from memory (never on disk or argv), extra vars whose names look like secrets
are refused, and ``cancel`` (a threading.Event or a callable) and ``timeout`` stop the run.
Callbacks: ``on_event`` for each Ansible event, ``on_status`` for the run's status (starting,
running, successful, failed, canceled, timeout).

Time limits: the API sets none of its own. ``timeout`` (seconds, default None: no limit) stops the
whole ansible-playbook run, and the run then ends with status "timeout". The stages keep their own
limits as role variables with the roles' defaults (train waits up to ``train_timeout``, 86,400 s;
serve, ``serve_start_timeout``; k8s, ``k8s_job_timeout``); a ``timeout`` below those stops the run
first. Importing this module loads neither the lab nor the Docker SDK.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner

from npufleet.collection import project_root

# The stages, each a playbook in playbooks/.
STAGES = {
    "site": "site.yml",
    "preflight": "preflight.yml",
    "node": "node.yml",
    "image": "image.yml",
    "container": "container.yml",
    "train": "train.yml",
    "serve": "serve.yml",
    "bench": "bench.yml",
    "teardown": "teardown.yml",
    "k8s": "k8s.yml",
    "collect": "collect.yml",
}


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
class ModuleResult:
    """What one of the project's modules returned on one host (from its runner_on_ok event)."""

    host: str
    task: str
    module: str
    result: dict


@dataclass
class RunResult:
    status: str  # ansible-runner's: successful, failed, canceled, timeout
    rc: int
    hosts: dict[str, HostResult]
    artifact_dir: str
    output_tail: str = ""
    playbook: str = ""
    results: list[ModuleResult] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)  # report files the project's modules wrote

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    def module_results(self, module: str) -> list[ModuleResult]:
        return [item for item in self.results if item.module == module]

    def first_failure(self) -> str:
        for host, result in sorted(self.hosts.items()):
            if result.failures:
                # The last one stopped the host: an earlier one was rescued (a block's rescue that
                # fails with a clearer message, say).
                failure = result.failures[-1]
                return f"{host}: {failure['task']}: {failure['msg']}"
        detail = f": {self.output_tail.splitlines()[-1]}" if self.output_tail else ""
        if self.status == "canceled":
            return f"{self.playbook or 'the run'} was cancelled; see {self.artifact_dir}"
        if self.status == "timeout":
            return f"{self.playbook or 'the run'} ran out of time and was stopped; see {self.artifact_dir}"
        return f"ansible-playbook ended {self.status} (rc {self.rc}){detail}; see {self.artifact_dir}"


def project_modules() -> frozenset[str]:
    """The names of the project's own modules (plugins/modules/*.py)."""
    return frozenset(path.stem for path in (project_root() / "plugins" / "modules").glob("*.py"))


def _report_files(result: dict) -> list[str]:
    """Paths of the files a module says it wrote (training_report's and llm_benchmark's files)."""
    files = result.get("files")
    if isinstance(files, dict):
        return [os.path.normpath(value) for value in files.values() if isinstance(value, str)]
    return []


def run(
    stage: str,
    inventory: str | Path,
    *,
    extravars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: str | None = None,
    on_event: Callable[[dict], None] | None = None,
    env: dict[str, str] | None = None,
    vault_password: str | None = None,
    on_status: Callable[[str], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    timeout: float | None = None,
    artifacts: str | Path | None = None,
    mitogen: bool = False,
) -> RunResult:
    """Run a stage (``STAGES``: site, preflight, node, image, container, train, serve, bench,
    teardown, k8s) on ``inventory``. The options are ``run_playbook``'s; ``timeout`` (seconds) stops
    the run, and its default, None, sets no limit (the roles' own limits still apply)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    return run_playbook(
        STAGES[stage],
        inventory,
        extravars=extravars,
        check=check,
        diff=diff,
        limit=limit,
        tags=tags,
        on_event=on_event,
        env=env,
        vault_password=vault_password,
        on_status=on_status,
        cancel=cancel,
        timeout=timeout,
        artifacts=artifacts,
        mitogen=mitogen,
    )


# Names of secrets: passwords, secrets, API keys, and tokens (hf_token, token_file), but not token
# counts and lengths (max_tokens, bench_input_tokens, serve_mindie_max_input_token_len).
_SECRET_KEY = re.compile(
    r"password|passwd|secret|api_?key|(?:^|_)token(?:$|_(?!len|count|limit))", re.IGNORECASE
)


def _failure(event: dict) -> tuple[str, dict]:
    data = event.get("event_data", {})
    res = data.get("res", {}) or {}
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
    if isinstance(msg, list):
        # A list message reads 'headline:', then one problem per item.
        head, *rest = [str(item) for item in msg] or [""]
        msg = f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join([head, *rest])
    return data.get("host", "?"), {"task": data.get("task", "?"), "msg": str(msg).strip()}


def _blanked_secrets() -> dict[str, str]:
    """The caller's environment variables named like secrets (NPUFLEET_API_KEY, HF_TOKEN, ...), blanked.

    Playbooks take secrets from the inventory's vault, so they lose nothing, and a play on the
    controller cannot record them (a localhost play's facts hold its environment, ansible_env).
    Paths to secrets (``..._FILE``) stay.
    """
    named = (name for name in os.environ if _SECRET_KEY.search(name))
    return {name: "" for name in named if not name.upper().endswith("_FILE")}


def _keep_no_environment(command_file: Path) -> None:
    """Rewrite ansible-runner's record of the run's command (artifacts/<ident>/command) with the
    names of the environment's variables only.

    ansible-runner writes the command, its folder and the whole environment there, values and all
    (no option of its own leaves the environment out): a token exported under any name would be kept.
    """
    try:
        record = json.loads(command_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(record, dict) or not isinstance(record.get("env"), dict):
        return
    record["env"] = sorted(record["env"])
    written = command_file.with_name(command_file.name + ".tmp")
    written.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    written.chmod(0o600)
    written.replace(command_file)


def run_playbook(
    playbook: str,
    inventory: str | Path,
    *,
    extravars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    tags: str | None = None,
    on_event: Callable[[dict], None] | None = None,
    env: dict[str, str] | None = None,
    vault_password: str | None = None,
    on_status: Callable[[str], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    timeout: float | None = None,
    artifacts: str | Path | None = None,
    mitogen: bool = False,
) -> RunResult:
    """Run ``playbooks/<playbook>`` (or a playbook at an absolute path) on ``inventory``, and collect
    what each host did and what the project's modules returned.

    ``timeout``: seconds the whole run may take before ansible-runner stops it (status "timeout");
    default None, no limit, so a stage runs as long as its roles allow (``train_timeout`` defaults
    to 86,400 s). ``cancel``: a threading.Event or a callable, checked while the run goes; set or
    true, the run stops (status "canceled"). ``artifacts``: the folder for this run's private data
    dir (default: a new temporary folder); it is kept. ``mitogen``: run with the strategy
    mitogen_linear (Mitogen for Ansible), which keeps one interpreter per node for the whole run."""
    inventory = Path(inventory)
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
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be above 0 seconds, got {timeout}")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix="npufleet-run-", dir=artifacts))
    else:
        private = Path(tempfile.mkdtemp(prefix="npufleet-run-"))
    hosts: dict[str, HostResult] = {}
    ours = project_modules()
    results: list[ModuleResult] = []

    def handle(event: dict) -> bool:
        data = event.get("event_data", {})
        res = data.get("res") or {}
        if event.get("event") == "runner_on_ok" and res.get("changed"):
            hosts.setdefault(data.get("host", "?"), HostResult()).changed_tasks.append(data.get("task", "?"))
        module = str(data.get("resolved_action") or data.get("task_action") or "").rsplit(".", 1)[-1]
        # A no_log task's result is censored by Ansible: nothing of it is kept.
        if event.get("event") == "runner_on_ok" and module in ours and "censored" not in res:
            results.append(ModuleResult(data.get("host", "?"), data.get("task", "?"), module, res))
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
    passwords = {}
    if vault_password:
        # Answered at ansible-playbook's prompt from memory: never in a file, argv or the env.
        cmdline.append("--ask-vault-pass")
        passwords[r"^Vault password:\s*?$"] = vault_password
    cancel_callback = cancel.is_set if isinstance(cancel, threading.Event) else cancel or (lambda: False)

    def status(data: dict, runner_config=None, **_) -> None:
        # "running" comes just after ansible-runner wrote the command's record, before Ansible starts.
        if data.get("status") == "running" and runner_config is not None:
            _keep_no_environment(Path(runner_config.artifact_dir) / "command")
        if on_status:
            on_status(data.get("status", ""))

    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(root),
            playbook=str(playbook_path),
            inventory=str(inventory.resolve()),
            extravars=extravars or {},
            limit=limit,
            tags=tags,
            cmdline=" ".join(cmdline) or None,
            envvars=_blanked_secrets()
            | {
                "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1",
                # ansible-playbook lives beside this interpreter (the project's virtualenv).
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            }
            | ({"ANSIBLE_STRATEGY": "mitogen_linear"} if mitogen else {})
            | (env or {}),
            event_handler=handle,
            status_handler=status,
            cancel_callback=cancel_callback,
            passwords=passwords or None,
            quiet=True,
            # No env/ files (envvars, extravars, passwords, ssh key) in the private data dir.
            suppress_env_files=True,
            # None: no limit of the runner's own (suppress_env_files: no env/settings file sets one).
            timeout=math.ceil(timeout) if timeout is not None else None,
        )
    finally:
        # Again at the end, whatever happened: a run that failed to start wrote no "running".
        for command_file in (private / "artifacts").glob("*/command"):
            _keep_no_environment(command_file)
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
    reports = sorted({path for item in results for path in _report_files(item.result)})
    return RunResult(
        runner.status,
        runner.rc,
        hosts,
        str(Path(runner.config.artifact_dir)),
        tail,
        playbook=playbook_path.name,
        results=results,
        reports=reports,
    )
