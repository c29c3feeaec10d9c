# Copyright: npufleet contributors
# Apache License 2.0
"""Find and stop the processes that one npufleet run started, on a node or on the controller.

Every process a run starts carries the run's id in its environment (``NPUFLEET_RUN_ID``): the
controller's ansible-playbook and its workers (set by the Python API), the modules on the nodes (the
plays' ``environment``), their children, and the ranks and servers llm_launch starts in a container
(it passes the id on). Environments are inherited and cannot be changed from outside, so reading
``/proc/PID/environ`` finds them all, even after their parents died, and nothing of another run.
Python 3.8 and the standard library only: this runs on the nodes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time

RUN_ID_VARIABLE = "NPUFLEET_RUN_ID"
_RUN_ID = re.compile(r"^[0-9a-z][0-9a-z-]{7,63}$")
CMDLINE_LIMIT = 160


def run_id_problem(run_id: str) -> str | None:
    """Why ``run_id`` cannot name a run (None when it can): a short or odd id could match others'."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        return f"run id {run_id!r} must be 8 to 64 lower-case letters, digits and dashes"
    return None


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _lineage(pid: int, proc_root: str) -> set:
    """``pid`` and its ancestors: the reader never stops itself or what runs it."""
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        status = _read_bytes(os.path.join(proc_root, str(pid), "status")) or b""
        match = re.search(rb"^PPid:\s*(\d+)", status, re.MULTILINE)
        if not match:
            break
        pid = int(match.group(1))
    return found


def _pid_namespace(pid: str, proc_root: str) -> str | None:
    try:
        return os.readlink(os.path.join(proc_root, pid, "ns", "pid"))
    except OSError:
        return None


def processes_of_run(run_id: str, proc_root: str = "/proc", own_namespace_only: bool = False) -> list:
    """Pids of the live processes whose environment holds ``NPUFLEET_RUN_ID=<run_id>``, in pid order.

    ``own_namespace_only``: only those in this process's PID namespace, not those in containers
    (on the controller: a lab's nodes are containers of the same machine, and stop.yml stops their
    processes as a real node's). Processes this one may not read (another user's, without root) are
    not seen."""
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    own = _lineage(os.getpid(), proc_root)
    namespace = _pid_namespace("self", proc_root) if own_namespace_only else None
    pids = []
    for entry in os.listdir(proc_root):
        if not entry.isdigit() or int(entry) in own:
            continue
        if namespace and _pid_namespace(entry, proc_root) != namespace:
            continue
        environ = _read_bytes(os.path.join(proc_root, entry, "environ"))
        if environ and marker in environ.split(b"\0") and _alive(int(entry), proc_root):
            pids.append(int(entry))
    return sorted(pids)


def _alive(pid: int, proc_root: str) -> bool:
    """Whether the process still runs: a zombie (exited, not yet reaped by its parent) does not."""
    stat = _read_bytes(os.path.join(proc_root, str(pid), "stat"))
    if stat is None:
        return False
    # The state follows the command's name, which is in parentheses and may hold anything.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def cgroup_of(pid: int | str, proc_root: str = "/proc") -> str:
    """The text of /proc/PID/cgroup (``pid`` may be "self"); empty when it is gone."""
    return (_read_bytes(os.path.join(proc_root, str(pid), "cgroup")) or b"").decode("utf-8", "replace")


def describe(pid: int, proc_root: str = "/proc") -> dict:
    """What a process is, for the report: its name, command line (cut short) and cgroup text."""
    base = os.path.join(proc_root, str(pid))
    comm = (_read_bytes(os.path.join(base, "comm")) or b"").decode("utf-8", "replace").strip()
    cmdline = (_read_bytes(os.path.join(base, "cmdline")) or b"").decode("utf-8", "replace")
    return {
        "pid": pid,
        "process": comm,
        "cmdline": cmdline.replace("\0", " ").strip()[:CMDLINE_LIMIT],
        "cgroup": cgroup_of(pid, proc_root),
    }


def _signal(pids: list, number: int) -> None:
    for pid in pids:
        # Gone already; or not ours to signal, which the caller finds still alive.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, number)


def stop_processes(pids: list, grace: float, proc_root: str = "/proc") -> list:
    """SIGTERM every pid, SIGKILL those still alive after ``grace`` seconds; the pids left alive."""
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = [pid for pid in pids if _alive(pid, proc_root)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _alive(pid, proc_root)]
    if alive:
        _signal(alive, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in alive if _alive(pid, proc_root)]
    return alive
