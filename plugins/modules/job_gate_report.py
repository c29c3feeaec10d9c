#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: job_gate_report
short_description: Judge a job from every node's gate readings and refuse it on a problem
description:
  - Reads, from every node of the job, what the gate's earlier tasks registered (the results of
    M(npufleet.ascend.hccn_info), its pings, M(npufleet.ascend.listen_ports) and
    M(npufleet.ascend.ascend_version_info)) and judges the job as a whole.
  - "Per NPU: link UP, net health Success (Init warns or fails, by O(net_health_init)), an address that
    matches C(/etc/hccn.conf). Across the job: one TLS switch on every NPU, same-index NPUs on one subnet,
    and every NPU answering the same-index NPU of every other node. Per node: the job's ports free and
    the driver, firmware and CANN versions fitting together and the pins."
  - Returns a table per node (NPU by check) and fails with one line per problem, each naming the node,
    the NPU and the command that fixes it. A node with no readings (unreachable, or failed before) is a
    problem too.
  - Runs on the controller, through the collection's action plugin of the same name; call it once
    (C(run_once)).
version_added: "0.2.0"
author:
  - npufleet contributors
options:
  hosts:
    description: The job's nodes in rank order (inventory names).
    type: list
    elements: str
    required: true
  npus:
    description: The NPU ids the job uses on every node.
    type: list
    elements: int
    required: true
  ports:
    description: The job's ports, each a dict with C(port) and C(what) (the setting it comes from).
    type: list
    elements: dict
    default: []
  net_health_init:
    description: What net health Init (the detect address never probed) does.
    type: str
    choices: [warn, fail]
    default: warn
  network:
    description: Judge the NPU network (false when only one node runs the job).
    type: bool
    default: true
  left_out:
    description: Nodes of the play that are not judged (they failed an earlier task); named in a warning.
    type: list
    elements: str
    default: []
  readings:
    description:
      - The host variables the gate registered its readings in, by kind (C(hccn), C(pings), C(ports),
        C(versions)).
    type: dict
    default:
      hccn: job_gate_hccn
      pings: job_gate_pings
      ports: job_gate_listeners
      versions: job_gate_version_facts
attributes:
  check_mode:
    support: full
    description: It only judges readings; it runs the same way in check mode.
  diff_mode:
    support: none
    description: It changes nothing.
"""

EXAMPLES = r"""
- name: Judge the job from every node's readings
  npufleet.ascend.job_gate_report:
    hosts: "{{ ansible_play_hosts_all }}"
    npus: [0, 1, 2, 3, 4, 5, 6, 7]
    ports:
      - {port: 29500, what: train_master_port}
  run_once: true
  register: gate
"""

RETURN = r"""
table:
  description:
    - One block of lines per node, NPU by check (link, health, address, hccn.conf, tls, subnet,
      reach), then its ports and versions.
  returned: always
  type: list
  elements: str
problems:
  description: One line per problem, naming the node, the NPU and the fix.
  returned: always
  type: list
  elements: str
warnings_found:
  description: Findings that do not stop the job (net health Init with net_health_init warn).
  returned: always
  type: list
  elements: str
reachability:
  description:
    - Each NPU address that was pinged, and whether every ping to it was answered (what the rank
      table checks use).
  returned: always
  type: dict
servers:
  description: Every node's address and NPUs as read, in rank order (the input of the rank-table filters).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

SPEC = dict(
    argument_spec={
        "hosts": {"type": "list", "elements": "str", "required": True},
        "npus": {"type": "list", "elements": "int", "required": True},
        "ports": {"type": "list", "elements": "dict", "default": []},
        "net_health_init": {"type": "str", "choices": ["warn", "fail"], "default": "warn"},
        "network": {"type": "bool", "default": True},
        "left_out": {"type": "list", "elements": "str", "default": []},
        "readings": {
            "type": "dict",
            "default": {
                "hccn": "job_gate_hccn",
                "pings": "job_gate_pings",
                "ports": "job_gate_listeners",
                "versions": "job_gate_version_facts",
            },
        },
    },
    supports_check_mode=True,
)


def main() -> None:
    # Ansible runs the action plugin of this name instead; this only answers a direct call.
    module = AnsibleModule(**SPEC)
    module.fail_json(
        msg="job_gate_report runs on the controller through the npufleet.ascend collection's action plugin:"
        " call it as npufleet.ascend.job_gate_report from a play"
    )


if __name__ == "__main__":
    main()
