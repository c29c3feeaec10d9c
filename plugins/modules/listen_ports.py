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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.listeners import (
    Listeners,
    ProcUnreadable,
    bad_ports,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "ports": {"type": "list", "elements": "int", "required": True},
            "ignore_containers": {"type": "list", "elements": "str", "default": []},
            "proc_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    params = module.params
    bad = bad_ports(params["ports"])
    if bad:
        module.fail_json(
            msg=f"ports must be 1..65535, got {', '.join(map(str, bad))}: fix the ports option", bad_ports=bad
        )
    listeners = Listeners(params["proc_root"], module.run_command, module.get_bin_path("docker"))
    try:
        found = listeners.gather(params["ports"], params["ignore_containers"])
    except ProcUnreadable as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, **found)


if __name__ == "__main__":
    main()
