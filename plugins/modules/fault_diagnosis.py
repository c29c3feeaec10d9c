#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: fault_diagnosis
short_description: Name the first failure in an evidence folder, with its cause and fix
description:
  - Applies the collection's fault catalogue (C(plugins/module_utils/fault_signatures.py)) to every
    file under O(evidence_dir) on the controller (C(nodes/<host>/...), as the evidence role fetches
    them), orders the matches by their time stamps, and names the first failing node and rank, the
    earliest cause, not the loudest line. The other nodes' matches are listed as consequences.
  - Writes C(diagnosis.md) and C(diagnosis.json) beside C(nodes/). Never fails on what it finds; a
    missing O(evidence_dir) fails.
  - Runs on the controller, through the collection's action plugin of the same name (C(run_once)).
version_added: "0.2.0"
author:
  - npufleet contributors
options:
  evidence_dir:
    description: The run's evidence folder on the controller (the one holding C(nodes/)).
    type: path
    required: true
  title:
    description: The report's title.
    type: str
    default: Diagnosis
attributes:
  check_mode:
    support: full
    description: In check mode it reads and reports, and writes nothing.
  diff_mode:
    support: none
    description: No diff.
"""

EXAMPLES = r"""
- name: Diagnose the run from every node's evidence
  npufleet.ascend.fault_diagnosis:
    evidence_dir: "{{ playbook_dir }}/../reports/train/sft-1/20261202T101500Z"
  run_once: true
"""

RETURN = r"""
summary:
  description: One line, the first failure's signature, node, rank, time, cause and fix.
  returned: always
  type: str
  sample: "hccl_listen_port_in_use on node1 rank 0 at 2025-07-23T03:47:57: HCCL could not ...; fix: ..."
first:
  description:
    - The first failure, or null when nothing matched.
    - Its keys are id, cause, fix, source, symptom, node, rank, file, line_no, line and time.
  returned: always
  type: dict
matches:
  description: How many catalogue matches were found in all.
  returned: always
  type: int
files:
  description:
    - The reports written, C(markdown) (diagnosis.md) and C(json) (diagnosis.json).
    - Empty in check mode.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

SPEC = dict(
    argument_spec={
        "evidence_dir": {"type": "path", "required": True},
        "title": {"type": "str", "default": "Diagnosis"},
    },
    supports_check_mode=True,
)


def main() -> None:
    module = AnsibleModule(**SPEC)
    module.fail_json(
        msg="fault_diagnosis runs on the controller through the npufleet.ascend collection's action plugin:"
        " call it as npufleet.ascend.fault_diagnosis from a play"
    )


if __name__ == "__main__":
    main()
