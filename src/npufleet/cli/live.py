"""The live view of a running play: one row per host, redrawn as ansible-runner's events come."""

from __future__ import annotations

from rich.table import Table

# The key of a task result that reports progress of long work (the train role's, each round it
# waits): a one-line string, shown in place of the host's task.
PROGRESS_KEY = "npufleet_progress"


class LiveView:
    """Per host: the task it is on (or the progress its last result reported) and its
    ok/changed/failed/unreachable counts (on a terminal; elsewhere rich prints nothing until the end)."""

    def __init__(self, playbook: str) -> None:
        self.playbook = playbook
        self.hosts: dict[str, dict] = {}
        self.task = "starting"

    def event(self, event: dict) -> None:
        data = event.get("event_data", {})
        kind = event.get("event", "")
        if kind == "playbook_on_task_start":
            self.task = data.get("task", "")
            return
        host = data.get("host")
        if not host:
            return
        row = self.hosts.setdefault(host, {"task": "", "ok": 0, "changed": 0, "failed": 0, "unreachable": 0})
        res = data.get("res") or {}
        if kind == "runner_on_start":
            row["task"] = data.get("task", "")
        elif kind == "runner_on_ok":
            row["ok"] += 1
            row["changed"] += 1 if res.get("changed") else 0
            progress = res.get(PROGRESS_KEY)
            if isinstance(progress, str) and progress.strip():
                row["task"] = " ".join(progress.split())  # one line, whatever the task sent
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            row["failed"] += 1
        elif kind == "runner_on_unreachable":
            row["unreachable"] += 1

    def __rich__(self) -> Table:
        table = Table(
            "host", "task", "ok", "changed", "failed", "unreachable", title=f"{self.playbook}: {self.task}"
        )
        for host, row in sorted(self.hosts.items()):
            table.add_row(host, row["task"], str(row["ok"]), str(row["changed"]), str(row["failed"]),
                          str(row["unreachable"]))  # fmt: skip
        return table
