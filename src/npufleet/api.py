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
password is answered from memory (never on disk or argv), extra vars named like secrets or holding
credentials are refused (``refuse_secret_extravars``), an inventory the stages cannot run on is
refused (``InventoryError``, a ValueError: ``npufleet.inventory``), and ``cancel`` (a threading.Event or a
callable) and ``timeout`` stop the run. Callbacks: ``on_event`` for each Ansible event, ``on_status`` for the
run's status (starting, running, successful, failed, canceled, timeout).

Time limits: the API sets none of its own. ``timeout`` (seconds, default None: no limit) stops the
whole ansible-playbook run, and the run then ends with status "timeout". The stages keep their own
limits as role variables with the roles' defaults (train waits up to ``train_timeout``, 86,400 s;
serve, ``serve_start_timeout``; k8s, ``k8s_job_timeout``); a ``timeout`` below those stops the run
first. Importing this module loads neither the lab nor the Docker SDK.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import secrets
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner

from npufleet.collection import importable, project_root
from npufleet.inventory import InventoryError, check_inventory, playbook_runs_on_nodes

# InventoryError is the API's too: what run_playbook raises for an inventory the stages cannot run on.
__all__ = ["STAGES", "HostResult", "InventoryError", "ModuleResult", "RunResult", "StopResult",
           "project_modules", "refuse_secret_extravars", "run", "run_playbook", "secret_name"]  # fmt: skip

# Every process a run starts carries its id under this name (run_processes.RUN_ID_VARIABLE, on the nodes).
RUN_ID_VARIABLE = "NPUFLEET_RUN_ID"

# The validation pass's play (playbooks/validate.yml), site.yml's first: a refusal there changed nothing.
VALIDATION_PLAY = "Check every stage's settings before any change"

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
class StopResult:
    """What was stopped after a run was cancelled or ran out of time."""

    controller: int  # processes of the run left on the controller (ansible-playbook's workers) and killed
    nodes: dict[str, str]  # host -> run_stop's summary line
    status: str  # the stop run's status (successful, failed, timeout, canceled), "" when none ran
    failures: list[str] = field(default_factory=list)  # hosts the stop could not reach or finish on
    artifact_dir: str = ""

    def lines(self) -> list[str]:
        """What was stopped, for people: one line for the controller, one for each node."""
        lines = [f"controller: stopped ansible-playbook and {self.controller} of its processes left behind"]
        lines += [f"{host}: {summary}" for host, summary in sorted(self.nodes.items())]
        lines += self.failures
        if self.status not in ("", "successful"):
            lines.append(
                f"the stop on the nodes ended {self.status}: run again to repair, or "
                f"'npufleet down' to stop what npufleet started; see {self.artifact_dir}"
            )
        return lines


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
    # The run's id, which every process it started carries (NPUFLEET_RUN_ID), and what stopping a
    # cancelled or timed-out run stopped: on the controller, a count; on each node, run_stop's line.
    run_id: str = ""
    stop: StopResult | None = None

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    def module_results(self, module: str) -> list[ModuleResult]:
        return [item for item in self.results if item.module == module]

    def failure_lines(self) -> list[str]:
        """One line per host that failed or could not be reached, in host order: what stopped it."""
        lines = []
        for host, result in sorted(self.hosts.items()):
            if result.failures:
                # The last one stopped the host: an earlier one was rescued (a block's rescue that
                # fails with a clearer message, say).
                failure = result.failures[-1]
                if failure.get("unreachable"):
                    lines.append(f"{host}: unreachable during {failure['task']}: {failure['msg']}")
                else:
                    lines.append(f"{host}: {failure['task']}: {failure['msg']}")
        return lines

    def refused_before_any_change(self) -> bool:
        """Whether the run was stopped by the validation pass (playbooks/validate.yml) on every failing
        node, before any stage ran: there is nothing on the nodes to gather evidence of."""
        failures = [failure for host in self.hosts.values() for failure in host.failures]
        return (
            bool(failures)
            and all(failure.get("play") == VALIDATION_PLAY for failure in failures)
            and all(host.changed == 0 for host in self.hosts.values())
        )

    def first_failure(self) -> str:
        lines = self.failure_lines()
        if lines:
            return lines[0]
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
    stop_timeout: float | None = 60,
    stop_cancel: threading.Event | Callable[[], bool] | None = None,
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
        stop_timeout=stop_timeout,
        stop_cancel=stop_cancel,
    )


# The caller's environment variables that hold secrets (NPUFLEET_API_KEY, HF_TOKEN), blanked for a run.
_SECRET_ENV_NAME = re.compile(
    r"password|passwd|secret|api_?key|(?:^|_)token(?:$|_(?!len|count|limit))", re.IGNORECASE
)

# Extra vars reach ansible-playbook's command line (``-e '{...}'``), and so the run's ``command``
# record and any process listing: a secret among them is refused before anything runs. A variable
# is refused by its name (at any depth of a mapping) or by a string value (at any depth).

# A name's word parts: snake_case, kebab-case, camelCase and UPPER_CASE alike (OPENAI_API_KEY,
# apiKey -> api, key).
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A part holding one of these is a secret's: registry_password, dbpasswd, client_secret, credentials.
_SECRET_WITHIN = ("password", "passwd", "passphrase", "passcode", "secret", "credential")
# Parts that are a secret's as a whole word: image_registry_pass, registry_pw, key_pwd, swr_auth_string
# (but author, authority), creds; evidence_redact_values holds the values the evidence role redacts.
_SECRET_PARTS = frozenset(
    {"pass", "pw", "pwd", "pswd", "auth", "oauth", "authn", "authz", "authorization", "authentication",
     "cred", "creds", "cookie", "cookies", "redact"}
)  # fmt: skip
# Keys that are credentials in one word (apikey, privkey); a plain ``key`` is one after these words
# (api_key, access_key, ssh_key, private_key), and alone, but not after others (serve_model_key, the
# model's name in the vLLM table; version_key). ``tokens`` after them is a list of tokens (api_tokens).
_CREDENTIAL_KEYS = frozenset(
    {"apikey", "accesskey", "secretkey", "privatekey", "privkey", "sshkey", "authkey", "signingkey",
     "masterkey", "licensekey", "encryptionkey", "sessionkey", "clientkey", "hmackey", "appkey"}
)  # fmt: skip
_CREDENTIAL_OWNERS = frozenset(
    {"api", "access", "private", "priv", "ssh", "signing", "encryption", "master", "license", "client",
     "session", "shared", "deploy", "hmac", "app", "account", "service", "storage", "subscription",
     "bearer", "refresh", "hf", "huggingface", "github", "gh", "gitlab", "personal", "bot", "registry",
     "swr", "vault", "pypi", "npm", "docker", "slack", "openai"}
)  # fmt: skip
# A ``token`` after these is the model's (max_token, eos_token, serve_mindie_max_input_token_len),
# and ``tokens`` is a count unless a credential's word comes first (max_tokens, bench_input_tokens).
_MODEL_TOKEN = frozenset(
    {"max", "min", "num", "input", "output", "prompt", "completion", "total", "new", "special", "stop",
     "eos", "bos", "pad", "unk", "sep", "cls", "mask", "start", "end", "image", "video", "audio",
     "vision", "first", "last", "per", "each"}
)  # fmt: skip
# A secret's word followed by one of these names where the secret is or what it measures, not the
# secret itself (token_len, max_token_count, stop_token_ids, password_file, ansible_ssh_private_key_file,
# docker_ce_repository_key_url, auth_method, SSH_AUTH_SOCK): the value still goes through the value rules.
_NOT_THE_SECRET = frozenset(
    {"file", "files", "path", "paths", "dir", "url", "uri", "name", "names", "id", "ids", "type",
     "method", "mode", "len", "length", "count", "counts", "limit", "limits", "size", "num", "sock",
     "socket"}
)  # fmt: skip


def secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (a password, token, API or private key,
    credentials), as opposed to one that names where a secret is or counts the model's tokens."""
    parts = [part.lower() for part in _NAME_PARTS.findall(name)]
    for index, part in enumerate(parts):
        before = parts[index - 1] if index else ""
        after = parts[index + 1] if index + 1 < len(parts) else ""
        if after in _NOT_THE_SECRET:
            continue
        if part in _SECRET_PARTS or part in _CREDENTIAL_KEYS or any(word in part for word in _SECRET_WITHIN):
            return True
        if part.endswith("token") and before not in _MODEL_TOKEN:
            return True
        if part in ("key", "keys", "tokens") and before in _CREDENTIAL_OWNERS:
            return True
        if part == "key" and len(parts) == 1:
            return True
    return False


# Values that are credentials by their shape, wherever they sit in the text.
_CREDENTIAL_SHAPES = (
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE), "a URL with a user:password"),
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}"), "a Hugging Face token"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "an API key (sk-...)"),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"), "a GitHub token"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), "a Google API key"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "a JSON Web Token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    # A Bearer credential has digits (a prompt's "Bearer responsibilities" has none).
    (re.compile(r"\bBearer\s+(?=[A-Za-z._~+/-]*[0-9])[A-Za-z0-9._~+/-]{16,}"), "a Bearer credential"),
)
_BASIC_CREDENTIAL = re.compile(r"\bBasic\s+([A-Za-z0-9+/]{8,}={0,2})")
# Runs of letters and digits: '/', '.', '-', '_' and ':' split paths, model and image names, versions.
_RUN = re.compile(r"[A-Za-z0-9+]{24,}")
_HEX = re.compile(r"[0-9a-fA-F]+")


def _random_looking(run: str) -> bool:
    """A run of 24+ letters and digits that reads as random: not hexadecimal (digests, commit SHAs,
    checksums stay), with capitals, small letters and digits, or (from 32 characters) letters and
    digits, and about as many distinct characters as a random string of its length has. Measured:
    1 in 100 random base-62 strings of 24 characters falls below 3.86 bits a character, of 40, below
    4.47; the longest camel-case names (Idefics3ForConditionalGeneration, 32) have 3.85."""
    if _HEX.fullmatch(run):
        return False
    classes = sum(any(test(char) for char in run) for test in (str.islower, str.isupper, str.isdigit))
    letters_and_digits = any(char.isalpha() for char in run) and any(char.isdigit() for char in run)
    if not (classes == 3 or (len(run) >= 32 and letters_and_digits)):
        return False
    counts = [run.count(char) for char in set(run)]
    entropy = -sum(count / len(run) * math.log2(count / len(run)) for count in counts)
    return entropy >= min(math.log2(len(run)) - 0.9, 4.2)


def _credential_in(text: str) -> str | None:
    """What in ``text`` looks like a credential (never the text itself), or None."""
    for pattern, what in _CREDENTIAL_SHAPES:
        if pattern.search(text):
            return what
    for encoded in _BASIC_CREDENTIAL.findall(text):
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if ":" in decoded:
            return "a Basic credential (user:password)"
    if any(_random_looking(run) for run in _RUN.findall(text)):
        return "a long random string (a token or key)"
    return None


def _secrets_in(value: object, where: str) -> list[tuple[str, str | None]]:
    """(where, what its value looks like) for each secret in an extra var's value: strings by their
    shape, and mapping keys by name (what: None)."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            place = f"{where}.{key}"
            if isinstance(key, str) and secret_name(key):
                found.append((place, None))
            else:
                found.extend(_secrets_in(item, place))
        return found
    if isinstance(value, list | tuple):
        return [found for index, item in enumerate(value) for found in _secrets_in(item, f"{where}[{index}]")]
    if isinstance(value, str) and (what := _credential_in(value)):
        return [(where, what)]
    return []


def refuse_secret_extravars(extravars: dict | None, inventory: str | Path | None = None) -> None:
    """Raise ValueError naming every extra var that holds or is named like a secret (its value is
    never shown), and saying how to give it through the inventory's Ansible Vault instead."""
    found = []
    for key, value in (extravars or {}).items():
        if secret_name(str(key)):
            found.append((str(key), None))
        else:
            found.extend(_secrets_in(value, str(key)))
    if not found:
        return
    names = ", ".join(dict.fromkeys(where for where, _ in found))
    shapes = "; ".join(f"{where}'s value looks like {what}" for where, what in found if what)
    if inventory is None:
        vault_file = "<inventory dir>/group_vars/all/vault.yml"
    else:
        inventory = Path(inventory)
        vault_file = str((inventory if inventory.is_dir() else inventory.parent) / "group_vars/all/vault.yml")
    first = found[0][0]
    top, leaf = re.split(r"[.\[]", first, maxsplit=1)[0], first.rsplit(".", 1)[-1]
    example = f"ansible-vault encrypt_string --name {top} >> {vault_file}"
    if leaf != top and "[" not in leaf:
        example = f"ansible-vault encrypt_string --name {leaf}, pasted under {top} in {vault_file}"
    raise ValueError(
        f"{names} look like secrets: keep them in an Ansible Vault-encrypted vars file in the inventory"
        " (group_vars), not in extra vars, which land on ansible-playbook's command line and in the"
        f" run's records{f' ({shapes})' if shapes else ''}. For example: {example}, then run npufleet with"
        " --ask-vault-pass or --vault-password-file FILE (the Vault password reaches Ansible in memory)."
    )


# ansible-core's argument checks name its internal wrapper class where they mean the value given:
# "<class 'ansible.module_utils._internal._datatag._AnsibleTaggedStr'> cannot be converted to a float".
_TAGGED_CLASS = re.compile(r"<class '[\w.]*_AnsibleTagged(\w+)'>")
_TAGGED_WORDS = {"Str": "the text given", "Int": "the number given", "Float": "the number given",
                 "List": "the list given", "Dict": "the mapping given"}  # fmt: skip


def plain_message(text: str) -> str:
    """``text`` without Ansible's internal class names."""
    return _TAGGED_CLASS.sub(lambda match: _TAGGED_WORDS.get(match.group(1), "the value given"), text)


# A connection that broke under a module, as the connection plugins word it. Ansible reports some of
# these as a failed task ("Module result deserialization failed: No start of json char found", when
# `docker exec` finds the node's container stopped), not as unreachable.
_CONNECTION_LOST = re.compile(
    r"is not running|no such container|ssh: connect to host|connection (?:refused|timed out|reset|closed)"
    r"|could not resolve hostname|no route to host|broken pipe|kex_exchange_identification",
    re.IGNORECASE,
)


def _connection_lost(res: dict) -> str:
    """The connection's own reason when a failed task's output shows a lost connection, else ''."""
    if not str(res.get("msg", "")).startswith("Module result deserialization failed"):
        return ""
    for line in f"{res.get('module_stderr', '')}\n{res.get('module_stdout', '')}".splitlines():
        if _CONNECTION_LOST.search(line):
            return line.strip()
    return ""


def _failure(event: dict) -> tuple[str, dict]:
    data = event.get("event_data", {})
    res = data.get("res", {}) or {}
    lost = _connection_lost(res)
    if event.get("event") == "runner_on_unreachable" or lost:
        reason = lost or str(res.get("msg") or "no reason given").strip()
        return data.get("host", "?"), {"task": data.get("task", "?"), "msg": reason, "unreachable": True,
                                       "play": data.get("play", "")}  # fmt: skip
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
    if isinstance(msg, list):
        # A list message reads 'headline:', then one problem per item.
        head, *rest = [str(item) for item in msg] or [""]
        msg = f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join([head, *rest])
    return data.get("host", "?"), {
        "task": data.get("task", "?"),
        "msg": plain_message(str(msg)).strip(),
        "play": data.get("play", ""),
    }


def _blanked_secrets() -> dict[str, str]:
    """The caller's environment variables named like secrets (NPUFLEET_API_KEY, HF_TOKEN, ...), blanked.

    Playbooks take secrets from the inventory's vault, so they lose nothing, and a play on the
    controller cannot record them (a localhost play's facts hold its environment, ansible_env).
    Paths to secrets (``..._FILE``) stay.
    """
    named = (name for name in os.environ if _SECRET_ENV_NAME.search(name))
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
    stop_timeout: float | None = 60,
    stop_cancel: threading.Event | Callable[[], bool] | None = None,
) -> RunResult:
    """Run ``playbooks/<playbook>`` (or a playbook at an absolute path) on ``inventory``, and collect
    what each host did and what the project's modules returned.

    ``timeout``: seconds the whole run may take before ansible-runner stops it (status "timeout");
    default None, no limit, so a stage runs as long as its roles allow (``train_timeout`` defaults
    to 86,400 s). ``cancel``: a threading.Event or a callable, checked while the run goes; set or
    true, the run stops (status "canceled"). ``artifacts``: the folder for this run's private data
    dir (default: a new temporary folder); it is kept. ``mitogen``: run with the strategy
    mitogen_linear (Mitogen for Ansible), which keeps one interpreter per node for the whole run.

    A run that is cancelled or runs out of time is stopped, not only on the controller: every
    process it started carries its id (``RunResult.run_id``) in the environment, and the processes
    left behind on the controller (ansible-playbook's workers) are killed, then ``playbooks/stop.yml``
    stops those on the nodes (modules still running, such as a pull, and the ranks and servers it
    launched), within ``stop_timeout`` seconds (None: stop nothing on the nodes) or until
    ``stop_cancel``. What was stopped is in ``RunResult.stop``.

    Before anything runs, ``inventory`` is read as ansible-playbook reads it (``vault_password``
    opens its Vault files), and an InventoryError (a ValueError) names the file, the problem and the
    fix when it does not exist or parse, when a playbook on ``npu_nodes`` finds no host there, or when
    two ``npu_nodes`` hosts share an address or ``npufleet_node_address`` (``npufleet.inventory``)."""
    inventory = Path(inventory)
    # Before anything runs: extra vars land on ansible-playbook's command line and in its record.
    refuse_secret_extravars(extravars, inventory)
    root = project_root()
    playbook_path = Path(playbook) if Path(playbook).is_absolute() else root / "playbooks" / playbook
    if not playbook_path.is_file():
        raise FileNotFoundError(f"no playbook {playbook_path}: run npufleet from the project checkout")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be above 0 seconds, got {timeout}")
    if stop_timeout is not None and stop_timeout <= 0:
        raise ValueError(f"stop_timeout must be above 0 seconds, got {stop_timeout}")
    # Before anything runs: an inventory Ansible cannot parse, or with no npu_nodes host, would run the
    # play on no host and "succeed"; two hosts at one address would be one machine (InventoryError).
    needs_nodes = playbook_runs_on_nodes(playbook_path)
    check_inventory(inventory, vault_password=vault_password, needs_nodes=needs_nodes)
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
    run_id = secrets.token_hex(8)

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
            # The plays pass it to every module on the nodes (their ``environment``), so run_stop finds them.
            extravars=(extravars or {}) | {"npufleet_run_id": run_id},
            limit=limit,
            tags=tags,
            cmdline=" ".join(cmdline) or None,
            envvars=_blanked_secrets()
            | {
                "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1",
                # ansible-playbook lives beside this interpreter (the project's virtualenv).
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                # Inherited by ansible-playbook's workers, which leave its process group (setsid).
                RUN_ID_VARIABLE: run_id,
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
    stop = None
    if runner.status in ("canceled", "timeout"):
        stop = _stop_run(
            run_id,
            inventory,
            on_nodes=needs_nodes and stop_timeout is not None,
            limit=limit,
            env=env,
            vault_password=vault_password,
            timeout=stop_timeout,
            cancel=stop_cancel,
            artifacts=artifacts,
        )
    return RunResult(
        runner.status,
        runner.rc,
        hosts,
        str(Path(runner.config.artifact_dir)),
        tail,
        playbook=playbook_path.name,
        results=results,
        reports=reports,
        run_id=run_id,
        stop=stop,
    )


def _stop_run(
    run_id: str,
    inventory: Path,
    *,
    on_nodes: bool,
    limit: str | None,
    env: dict[str, str] | None,
    vault_password: str | None,
    timeout: float | None,
    cancel: threading.Event | Callable[[], bool] | None,
    artifacts: str | Path | None,
) -> StopResult:
    """Stop what a cancelled or timed-out run left running: on the controller, then on its nodes."""
    importable()
    from ansible_collections.npufleet.ascend.plugins.module_utils import run_processes  # noqa: PLC0415

    # ansible-runner killed ansible-playbook's process group; its workers had left it, and each may
    # still hold a connection that runs a module on a node. Only where /proc exists (Linux).
    # Only the controller's own: a lab's nodes are containers here, and stop.yml stops theirs as on a
    # real node, saying what it stopped.
    on_linux = Path("/proc/self/environ").exists()
    left = run_processes.processes_of_run(run_id, own_namespace_only=True) if on_linux else []
    run_processes.stop_processes(left, grace=3)
    if not on_nodes:
        return StopResult(controller=len(left), nodes={}, status="")
    stopped = run_playbook(
        "stop.yml",
        inventory,
        extravars={"npufleet_stop_run_id": run_id},
        limit=limit,
        env=env,
        vault_password=vault_password,
        timeout=timeout,
        cancel=cancel,
        artifacts=artifacts,
        stop_timeout=None,
    )
    nodes = {item.host: str(item.result.get("summary", "")) for item in stopped.module_results("run_stop")}
    return StopResult(
        controller=len(left),
        nodes=nodes,
        status=stopped.status,
        failures=stopped.failure_lines(),
        artifact_dir=stopped.artifact_dir,
    )
