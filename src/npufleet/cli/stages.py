"""The commands that run a stage's playbook through the API: up, check, train, serve, down (and
bench without --url): the options they share, the live view while it runs, the summary after."""

from __future__ import annotations

import argparse
import getpass
import json
import math
import re
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from npufleet.api import refuse_secret_extravars, run_playbook
from npufleet.cli.live import LiveView
from npufleet.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TIMEOUT, console, print_json
from npufleet.collection import default_inventory

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def extra_vars(items: list[str] | None) -> dict:
    """``-e`` as ansible-playbook reads it, later ones over earlier ones: ``@FILE`` is a YAML or JSON
    file of variables; in ``KEY=VALUE`` a VALUE that starts with ``[`` or ``{`` is a list or a mapping
    (JSON, or YAML's flow style), one that is a JSON number or true/false is that, any other a string."""
    extravars = {}
    for item in items or []:
        if item.startswith("@"):
            extravars |= _vars_file(Path(item[1:]).expanduser())
            continue
        key, sep, value = item.partition("=")
        # The text given is not echoed unless it is a plain name: it may be a mistyped secret.
        if not sep:
            shown = repr(item) if _NAME.fullmatch(item) else "(its text is not shown)"
            raise ValueError(f"--extra-var {shown} is not KEY=VALUE or @FILE")
        if not _NAME.fullmatch(key):
            raise ValueError(
                "--extra-var has no variable name before '=' (its text is not shown): write KEY=VALUE"
            )
        if value[:1] in ("[", "{"):
            try:
                # JSON first: YAML 1.1 would read [yes, no] as booleans and [010] as octal.
                value = json.loads(value)
            except ValueError:
                value = _flow_value(key, value)
        else:
            value = _scalar(value)
        extravars[key] = value
    return extravars


def _scalar(value: str) -> object:
    """A number or true/false as its type, as the roles' defaults have them (serve_port: 8000,
    train_force: false; ansible-core 2.19 fails a condition on the string "false"); any other text,
    a string. A number is taken only when it reads back the same (1.10 stays a version string, not
    1.1), or is written with an exponent (1e-5)."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        number = json.loads(value)
    except ValueError:
        return value
    if isinstance(number, int) and not isinstance(number, bool) and str(number) == value:
        return number
    exact = repr(number) == value or "e" in value.lower()
    if isinstance(number, float) and math.isfinite(number) and exact:
        return number
    return value


def _vars_file(path: Path) -> dict:
    """The variables of ``-e @FILE``: a YAML (or JSON) mapping. A Vault-encrypted file is refused: its
    place is the inventory, where Ansible decrypts it with the password npufleet hands over."""
    if not path.is_file():
        raise ValueError(f"--extra-var @{path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if "$ANSIBLE_VAULT" in text or "!vault" in text:
        raise ValueError(
            f"--extra-var @{path} is encrypted with Ansible Vault, which npufleet does not read for extra"
            " vars: put it in the inventory's group_vars (group_vars/all/vault.yml beside the inventory)"
            " and run with --ask-vault-pass or --vault-password-file FILE"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"--extra-var @{path} is not valid YAML or JSON{where}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--extra-var @{path} is not a mapping of variable names to values")
    for key in data:
        if not (isinstance(key, str) and _NAME.fullmatch(key)):
            raise ValueError(f"--extra-var @{path} has a key that is not a variable name (it is not shown)")
    return data


def _flow_value(key: str, value: str) -> object:
    """A list or mapping in YAML's flow style (``[a, b]``, ``{name: 1}``), as ansible-playbook reads it."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at character {mark.index + 1}" if mark else ""
        raise ValueError(
            f"--extra-var {key}: its value is not a valid list or mapping{where}"
            f" (write it as JSON, e.g. {key}='[0, 1]' or {key}='{{\"name\": 1}}')"
        ) from None


def vault_password(args: argparse.Namespace) -> str | None:
    """From --vault-password-file (read here, passed in memory) or a prompt (--ask-vault-pass)."""
    if getattr(args, "vault_password_file", None):
        path = Path(args.vault_password_file)
        if not path.is_file():
            raise ValueError(f"--vault-password-file {path} does not exist")
        return path.read_text(encoding="utf-8").strip()
    if getattr(args, "ask_vault_pass", False):
        return getpass.getpass("Vault password: ")
    return None


# The stages whose failure is followed by every node's evidence and a diagnosis (collect.yml).
EVIDENCE_STAGES = {"site.yml": "site", "train.yml": "train", "serve.yml": "serve", "bench.yml": "bench"}


def collect_evidence(
    stage: str, inventory: Path, extravars: dict, *, limit: str | None, password: str | None, since: float
) -> dict | None:
    """Run collect.yml after a failed stage (with the stage's extra vars: its paths and names): the
    evidence folder and the diagnosis's summary, or None when it could not run."""
    console.print(f"npufleet: {stage} failed: collecting every node's evidence", highlight=False)
    try:
        result = run_playbook(
            "collect.yml",
            inventory,
            # Only this run's logs: written since it started, read on each node's own clock. The clock's
            # correction counts the task's travel as skew, which moves the start later; 5 s takes that
            # back. Erring late is safe: a stage launches its processes well after it starts, while
            # erring early takes the logs of a stage that failed just before this one.
            extravars=extravars | {"evidence_stage": stage, "evidence_since": since - 5},
            limit=limit,
            vault_password=password,
        )
    # Any error here is told in one line: the stage's own failure is still to be told after it.
    except Exception as error:
        console.print(f"npufleet: the evidence could not be collected: {escape(str(error))}", highlight=False)
        return None
    for item in result.module_results("fault_diagnosis"):
        files = item.result.get("files") or {}
        folder = str(Path(files["markdown"]).parent) if "markdown" in files else None
        return {"summary": item.result.get("summary", ""), "first": item.result.get("first"),
                "evidence_dir": folder, "files": files}  # fmt: skip
    return None


def run_stage(
    playbook: str, args: argparse.Namespace, extravars: dict | None = None, print_reports: bool = False
) -> int:
    """Run ``playbook`` with the CLI's options; ``print_reports`` prints the Markdown reports it wrote."""
    inventory = Path(args.inventory) if args.inventory else default_inventory()
    extravars = extra_vars(args.extra_vars) | (extravars or {})
    # Refused before the Vault prompt and the live view: a secret among them would sit in argv.
    refuse_secret_extravars(extravars, inventory)
    password = vault_password(args)  # prompted for before the live view takes the terminal
    view = LiveView(playbook)
    started = time.time()
    # Ctrl-C cancels the run through ansible-runner (which stops ansible-playbook), then the API stops
    # what the run started on the nodes, then exits 130. A second Ctrl-C cuts that stop short.
    cancelled, stop_cancelled = threading.Event(), threading.Event()

    def interrupt(*_) -> None:
        (stop_cancelled if cancelled.is_set() else cancelled).set()

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        with Live(view, console=console, refresh_per_second=4, transient=True, redirect_stdout=False) as live:

            def show(event: dict) -> None:
                view.event(event)
                if not args.json:
                    live.refresh()

            result = run_playbook(
                playbook,
                inventory,
                extravars=extravars,
                check=args.check,
                diff=args.diff,
                limit=args.limit,
                tags=args.tags,
                on_event=show,
                vault_password=password,
                timeout=args.timeout,
                cancel=cancelled,
                mitogen=args.mitogen,
                stop_cancel=stop_cancelled,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    diagnosis = None
    # A refusal by the validation pass changed nothing and ran no stage: no evidence to gather.
    gone_wrong = (
        not result.succeeded
        and result.status != "canceled"
        and not args.check
        and not result.refused_before_any_change()
    )
    if gone_wrong and playbook in EVIDENCE_STAGES:
        stage = EVIDENCE_STAGES[playbook]
        diagnosis = collect_evidence(
            stage, inventory, extravars, limit=args.limit, password=password, since=started
        )
    if args.json:
        print_json(
            {
                "playbook": playbook,
                "status": result.status,
                "rc": result.rc,
                "hosts": result.hosts,
                "artifact_dir": result.artifact_dir,
                "reports": result.reports,
                "results": result.results,
                "diagnosis": diagnosis,
                "run_id": result.run_id,
                "stop": result.stop,
            }
        )
    else:
        table = Table("host", "ok", "changed", "failed", "unreachable", "skipped")
        for host, res in sorted(result.hosts.items()):
            table.add_row(
                host, str(res.ok), str(res.changed), str(res.failed), str(res.unreachable), str(res.skipped)
            )
        Console().print(table)
        if args.check:
            for host, res in sorted(result.hosts.items()):
                for task in res.changed_tasks:
                    console.print(f"would change on {host}: {task}", highlight=False)
        # The gate before a job: what it read on every node, NPU by check (a refusal prints it too).
        for gate in result.module_results("job_gate_report"):
            print(gate.result.get("msg", ""), flush=True)
        # A check run's benchmark sends nothing: it says what it would send.
        if args.check:
            for plan in result.module_results("llm_benchmark"):
                print(plan.result.get("msg", ""), flush=True)
        if print_reports:
            for path in result.reports:
                if path.endswith(".md") and Path(path).is_file():
                    print(Path(path).read_text(encoding="utf-8").rstrip("\n"), flush=True)
        for path in result.reports:
            console.print(f"report: {path}", highlight=False)
    if not result.succeeded:
        # Escaped: a log line in the message ("[/__w/pytorch/...]") is not rich markup.
        for line in result.failure_lines() or [result.first_failure()]:
            console.print(f"[red]npufleet: {escape(line)}[/red]", highlight=False)
        if diagnosis:
            console.print(f"[red]npufleet: diagnosis: {escape(diagnosis['summary'])}[/red]", highlight=False)
            console.print(f"evidence and diagnosis: {diagnosis['evidence_dir']}", highlight=False)
        if result.stop:
            for line in result.stop.lines():
                console.print(f"npufleet: stopped what the run started: {escape(line)}", highlight=False)
        if result.status == "canceled":
            return EXIT_INTERRUPTED
        return EXIT_TIMEOUT if result.status == "timeout" else EXIT_FAILED
    console.print(f"npufleet: {playbook} succeeded on {len(result.hosts)} host(s)")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """up, check, train, serve: the stage's playbook, as it is."""
    return run_stage(args.playbook, args)


_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_epoch(text: str, now: float) -> float:
    """``--since``: a span back from now (``90s``, ``30m``, ``2h``, ``1d``) or a time
    (``2026-12-03T05:30:00Z``; without a zone it is UTC), as seconds since the epoch."""
    span = _SPAN.fullmatch(text.strip())
    if span:
        return now - float(span.group(1)) * _SPAN_SECONDS[span.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a span nor a time: write 30m, 2h, 1d or 2026-12-03T05:30:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when.timestamp() > now:
        raise ValueError(
            f"--since {text!r} is in the future: nothing would be collected; give a time before now"
        )
    return when.timestamp()


def cmd_collect(args: argparse.Namespace) -> int:
    """Every node's evidence now, and the diagnosis of it (printed)."""
    extravars = {"evidence_stage": args.stage}
    if args.since is not None:
        extravars["evidence_since"] = since_epoch(args.since, time.time())
    return run_stage(args.playbook, args, extravars, print_reports=True)


def cmd_down(args: argparse.Namespace) -> int:
    flags = {"teardown_images": args.images, "teardown_work_dir": args.work_dir,
             "teardown_system_settings": args.system_settings}  # fmt: skip
    return run_stage(args.playbook, args, {key: True for key, value in flags.items() if value})
