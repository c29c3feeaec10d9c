#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: run_stop
short_description: Stop every process that one npufleet run started on the node
description:
  - After a run was interrupted (Ctrl-C) or ran out of time, stops what it had started on the node,
    that is the Ansible modules still running there (an image pull, a wait), their children, and the
    training ranks and servers that llm_launch started in a container during that run.
  - Each of those processes carries the run's id in its environment, E(NPUFLEET_RUN_ID), set by
    the stage playbooks and passed on by llm_launch. The module reads C(/proc/PID/environ) of every
    process, so it finds them even where their parent is gone, and nothing of another run.
  - Sends SIGTERM, then SIGKILL to any still alive after O(grace) seconds.
  - Run it as root (C(become)), since the ranks run as the container's user.
version_added: "0.3.0"
author:
  - npufleet contributors
options:
  run_id:
    description:
      - The id of the run to stop, 8 to 64 lower-case letters, digits and dashes (the Python API
        gives each run one, in the extra var C(npufleet_run_id)).
    type: str
    required: true
  grace:
    description:
      - Seconds between SIGTERM and SIGKILL, above 0.
    type: float
    default: 10
  proc_root:
    description:
      - Where procfs is mounted; for tests.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: In check mode it lists what it would stop, and stops nothing.
  diff_mode:
    support: none
    description: There is no file to compare.
notes:
  - Processes that dropped the variable from their environment (a program that runs its children
    with an empty environment) are not found. Containers started with C(docker run) during the run
    are not processes of the run; teardown removes them.
"""

EXAMPLES = r"""
- name: Stop what the interrupted run started
  npufleet.ascend.run_stop:
    run_id: "{{ npufleet_stop_run_id }}"
  become: true
"""

RETURN = r"""
stopped:
  description: The processes of the run that were stopped (in check mode, that would be).
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Its pid in the node's process namespace.
      type: int
    process:
      description: Its name (C(/proc/PID/comm)).
      type: str
    cmdline:
      description: Its command line, cut to 160 characters.
      type: str
    container:
      description: The name of the Docker container it runs in; empty on the node itself.
      type: str
left:
  description: Pids still alive after SIGKILL (another user's process, or an uninterruptible one).
  returned: always
  type: list
  elements: int
summary:
  description:
    - "One line for people, such as C(stopped 3 processes: python3, sleep; in npufleet-workload: bash)."
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.proc_net import container_id_from_cgroup
from ansible_collections.npufleet.ascend.plugins.module_utils.run_processes import (
    cgroup_of,
    describe,
    processes_of_run,
    run_id_problem,
    stop_processes,
)


def container_names(module: AnsibleModule, ids: set) -> dict:
    """Names of the containers with these ids; an id docker does not know keeps its short form."""
    names = {container: container[:12] for container in ids}
    docker = module.get_bin_path("docker")
    if ids and docker:
        rc, out, _ = module.run_command([docker, "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"])
        for line in out.splitlines() if rc == 0 else []:
            container, _, name = line.partition(" ")
            if container in names:
                names[container] = name
    return names


def summary(stopped: list, left: list, check_mode: bool) -> str:
    if not stopped:
        return "nothing of the run was running"
    places: dict = {}
    for item in stopped:
        names = places.setdefault(item["container"], [])
        if item["process"] not in names:
            names.append(item["process"])
    parts = [
        f"in {where}: {', '.join(names)}" if where else ", ".join(names) for where, names in places.items()
    ]
    verb = "would stop" if check_mode else "stopped"
    line = f"{verb} {len(stopped)} process{'es' if len(stopped) != 1 else ''}: {'; '.join(parts)}"
    if left:
        line += f"; still alive: pids {', '.join(map(str, left))}"
    return line


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "run_id": {"type": "str", "required": True},
            "grace": {"type": "float", "default": 10},
            "proc_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    run_id, grace, proc_root = (module.params[key] for key in ("run_id", "grace", "proc_root"))
    problem = run_id_problem(run_id)
    if problem:
        module.fail_json(msg=f"{problem}: give the id of the run to stop (npufleet_run_id)")
    if grace <= 0:
        module.fail_json(msg=f"grace must be a number of seconds above 0, got {grace}")
    pids = processes_of_run(run_id, proc_root)
    found = [describe(pid, proc_root) for pid in pids]
    # Where the module runs in a container itself (a lab node), that one is the node.
    own = container_id_from_cgroup(cgroup_of("self", proc_root))
    ids = {item["pid"]: container_id_from_cgroup(item.pop("cgroup"), own) for item in found}
    names = container_names(module, {container for container in ids.values() if container})
    for item in found:
        container = ids[item["pid"]]
        item["container"] = names[container] if container else ""
    left = [] if module.check_mode or not pids else stop_processes(pids, grace, proc_root)
    module.exit_json(
        changed=bool(pids),
        stopped=found,
        left=left,
        summary=summary(found, left, module.check_mode),
    )


if __name__ == "__main__":
    main()
