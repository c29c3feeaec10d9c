# Copyright: npufleet contributors
# Apache License 2.0
"""Who listens on TCP ports on the node, read from procfs: the listen_ports module and node_state's
``ports`` option report it the same way (it only reads, in check mode too)."""

from __future__ import annotations

import glob
import os

from ansible_collections.npufleet.ascend.plugins.module_utils.proc_net import (
    container_id_from_cgroup,
    parse_proc_net_tcp,
)

CMDLINE_LIMIT = 200
# `docker ps` shows ids cut to 12 characters; shorter prefixes would match too much.
SHORT_ID_LENGTH = 12


class ProcUnreadable(Exception):
    """proc_root is not procfs (no net/tcp there)."""


def _read(path: str) -> str | None:
    """The file's text, or None when it is gone or unreadable (processes come and go while scanning)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def bad_ports(ports: list[int]) -> list[int]:
    """The ports that are not TCP ports (1 to 65535)."""
    return [port for port in ports if not 1 <= port <= 65535]


class Listeners:
    """The listeners on ``ports`` under ``proc_root``; ``ignore_containers`` (names or ids) are
    resolved with ``docker`` (a path, or None) through ``run_command`` (AnsibleModule.run_command)."""

    def __init__(self, proc_root: str, run_command, docker: str | None) -> None:
        self.proc = proc_root
        self.run_command = run_command
        self.docker = docker
        # Where the module itself runs in a container (a lab node), that one is the node, not a
        # container on it.
        own_cgroup = _read(os.path.join(self.proc, "self", "cgroup"))
        self.own_container = container_id_from_cgroup(own_cgroup) if own_cgroup else None

    def listening_sockets(self) -> list[dict]:
        sockets = []
        for name in ("tcp", "tcp6"):
            text = _read(os.path.join(self.proc, "net", name))
            # A node without IPv6 has no tcp6; no tcp at all means this is not procfs.
            if text is None and name == "tcp":
                raise ProcUnreadable(f"cannot read {self.proc}/net/tcp: set proc_root to procfs")
            sockets += [sock for sock in parse_proc_net_tcp(text or "") if sock["state"] == "LISTEN"]
        return sockets

    def pids_by_inode(self, inodes: set[int]) -> dict[int, int]:
        """The pid holding each socket inode, from the fd links of every process we may read."""
        wanted = {f"socket:[{inode}]": inode for inode in inodes}
        found = {}
        for link in glob.glob(os.path.join(self.proc, "[0-9]*", "fd", "*")):
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target in wanted:
                found.setdefault(wanted[target], int(link.split(os.sep)[-3]))
        return found

    def process(self, pid: int | None) -> dict:
        if pid is None:
            return {"pid": None, "process": None, "cmdline": None, "container_id": None}
        base = os.path.join(self.proc, str(pid))
        comm = _read(os.path.join(base, "comm"))
        cmdline = _read(os.path.join(base, "cmdline"))
        cgroup = _read(os.path.join(base, "cgroup"))
        return {
            "pid": pid,
            "process": comm.strip() if comm is not None else None,
            "cmdline": cmdline.replace("\0", " ").strip()[:CMDLINE_LIMIT] if cmdline is not None else None,
            "container_id": container_id_from_cgroup(cgroup, self.own_container) if cgroup else None,
        }

    def ignored_ids(self, names: list[str]) -> list[str]:
        """Full ids of the ignored containers; names resolved with docker inspect when it is here."""
        ids = []
        for name in names:
            if self.docker:
                rc, out, _ = self.run_command([self.docker, "inspect", "--format", "{{.Id}}", name])
                if rc == 0 and out.strip():
                    ids.append(out.strip())
                    continue
            # Without docker (or for a stopped-and-removed name) an id still matches by prefix.
            if len(name) >= SHORT_ID_LENGTH and all(char in "0123456789abcdef" for char in name.lower()):
                ids.append(name.lower())
        return ids

    def gather(self, ports: list[int], ignore_containers: list[str]) -> dict:
        """``ports`` (one entry per port asked, in that order), ``taken`` and ``ignored_container_ids``,
        as the listen_ports module returns them."""
        sockets = [sock for sock in self.listening_sockets() if sock["port"] in ports]
        pids = self.pids_by_inode({sock["inode"] for sock in sockets})
        ignored_ids = self.ignored_ids(ignore_containers)
        results = []
        for port in ports:
            listeners, ignored = [], []
            for sock in sockets:
                if sock["port"] != port:
                    continue
                holder = {"address": sock["address"], **self.process(pids.get(sock["inode"]))}
                container = holder["container_id"] or ""
                in_ignored = container and any(container.startswith(known) for known in ignored_ids)
                (ignored if in_ignored else listeners).append(holder)
            results.append({"port": port, "free": not listeners, "listeners": listeners, "ignored": ignored})
        return {
            "ports": results,
            "taken": [entry["port"] for entry in results if not entry["free"]],
            "ignored_container_ids": ignored_ids,
        }
