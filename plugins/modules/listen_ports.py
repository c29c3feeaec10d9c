#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: listen_ports
short_description: Tell whether TCP ports are already taken on the node, and by what
description:
  - Before a job starts, tells whether the ports it needs are free on the node (torch's
    E(MASTER_PORT), HCCL's base port range E(HCCL_IF_BASE_PORT) to E(HCCL_IF_BASE_PORT)+15, the
    serving port).
  - Reads C(/proc/net/tcp) and C(/proc/net/tcp6) for sockets in the LISTEN state on the asked ports,
    finds the process that holds each one by its socket inode (the C(socket:[INODE]) links under
    C(/proc/PID/fd)), and reports its pid, name, command line and Docker container id.
  - Containers here run with host networking, so their listeners show in the host's tables.
  - Read-only. Run it as root (C(become)) to see the processes of other users; without it a listener
    of another user is still reported, with no pid.
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  ports:
    description:
      - TCP ports to check, each 1 to 65535; the result keeps this order.
    type: list
    elements: int
    required: true
  ignore_containers:
    description:
      - Docker container names or ids whose listeners do not count; a port held only by them is
        reported free, its listeners under C(ignored).
      - Names are resolved to ids with C(docker inspect) when docker is on E(PATH); a name that
        matches no container is skipped.
      - An id may be given in full or as a prefix of at least 12 characters (as C(docker ps) shows it).
    type: list
    elements: str
    default: []
  proc_root:
    description:
      - Where procfs is mounted; for tests, or a node's procfs bind-mounted elsewhere.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: It changes nothing.
notes:
  - Only TCP listeners are checked (HCCL, torch's rendezvous and the servers use TCP).
  - A listener on any address (C(0.0.0.0), C(::), or one interface) takes the port.
"""

EXAMPLES = r"""
- name: Check the ports a two-node training job needs
  npufleet.ascend.listen_ports:
    ports: "{{ [29500] + range(60000, 60016) | list }}"
  register: job_ports

- name: Stop before launch when one is taken
  ansible.builtin.assert:
    that: job_ports.taken | length == 0
    fail_msg: "taken: {{ job_ports.ports | selectattr('free', 'false') | list }}"

- name: Check the serving port, not counting the server being replaced
  npufleet.ascend.listen_ports:
    ports: [8000]
    ignore_containers: [llm-serve]
  become: true
"""

RETURN = r"""
ports:
  description: One entry per asked port, in the order asked.
  returned: success
  type: list
  elements: dict
  contains:
    port:
      description: The port.
      type: int
    free:
      description: Whether nothing (apart from ignored containers) listens on it.
      type: bool
    listeners:
      description:
        - The listening sockets that take the port; C(pid), C(process), C(cmdline) and C(container_id)
          are null where the holder could not be found (another user's process without root).
      type: list
      elements: dict
    ignored:
      description: Listeners on the port inside an ignored container, same form as C(listeners).
      type: list
      elements: dict
  sample:
    - port: 29500
      free: false
      listeners:
        - address: 0.0.0.0
          pid: 41230
          process: python3
          cmdline: "python3 -m torch.distributed.run --nnodes 2 train.py"
          container_id: 3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899
      ignored: []
    - port: 60000
      free: true
      listeners: []
      ignored: []
taken:
  description: The asked ports that are not free, in the order asked.
  returned: success
  type: list
  elements: int
  sample: [29500]
ignored_container_ids:
  description: Full ids of the ignored containers that were found.
  returned: success
  type: list
  elements: str
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.proc_net import (
    container_id_from_cgroup,
    parse_proc_net_tcp,
)

CMDLINE_LIMIT = 200
# `docker ps` shows ids cut to 12 characters; shorter prefixes would match too much.
SHORT_ID_LENGTH = 12


def _read(path: str) -> str | None:
    """The file's text, or None when it is gone or unreadable (processes come and go while scanning)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


class ListenPorts:
    """Who listens on the asked ports, read from procfs (it only reads, in check mode too)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.proc = module.params["proc_root"]
        # Where the module itself runs in a container (a lab node), that one is the node, not a
        # container on it.
        own_cgroup = _read(os.path.join(self.proc, "self", "cgroup"))
        self.own_container = container_id_from_cgroup(own_cgroup) if own_cgroup else None
        self.ports = module.params["ports"]
        bad = [port for port in self.ports if not 1 <= port <= 65535]
        if bad:
            module.fail_json(
                msg=f"ports must be 1..65535, got {', '.join(map(str, bad))}: fix the ports option",
                bad_ports=bad,
            )

    def listening_sockets(self) -> list[dict]:
        sockets = []
        for name in ("tcp", "tcp6"):
            text = _read(os.path.join(self.proc, "net", name))
            # A node without IPv6 has no tcp6; no tcp at all means this is not procfs.
            if text is None and name == "tcp":
                self.module.fail_json(msg=f"cannot read {self.proc}/net/tcp: set proc_root to procfs")
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

    def ignored_ids(self) -> list[str]:
        """Full ids of the ignored containers; names resolved with docker inspect when it is here."""
        docker = self.module.get_bin_path("docker")
        ids = []
        for name in self.module.params["ignore_containers"]:
            if docker:
                rc, out, _ = self.module.run_command([docker, "inspect", "--format", "{{.Id}}", name])
                if rc == 0 and out.strip():
                    ids.append(out.strip())
                    continue
            # Without docker (or for a stopped-and-removed name) an id still matches by prefix.
            if len(name) >= SHORT_ID_LENGTH and all(char in "0123456789abcdef" for char in name.lower()):
                ids.append(name.lower())
        return ids

    def gather(self) -> dict:
        sockets = [sock for sock in self.listening_sockets() if sock["port"] in self.ports]
        pids = self.pids_by_inode({sock["inode"] for sock in sockets})
        ignored_ids = self.ignored_ids()
        results = []
        for port in self.ports:
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
            "changed": False,
            "ports": results,
            "taken": [entry["port"] for entry in results if not entry["free"]],
            "ignored_container_ids": ignored_ids,
        }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "ports": {"type": "list", "elements": "int", "required": True},
            "ignore_containers": {"type": "list", "elements": "str", "default": []},
            "proc_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**ListenPorts(module).gather())


if __name__ == "__main__":
    main()
