#!/usr/bin/python
# Test helper: returns the facts it is given, so a play can pretend a lab node runs another OS.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: override_facts
short_description: Set host facts to given values (tests only)
description: Returns O(facts) as ansible_facts, which Ansible merges into the host's facts.
options:
  facts:
    description: Facts to set.
    type: dict
    required: true
author: npufleet contributors
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={"facts": {"type": "dict", "required": True}}, supports_check_mode=True
    )
    module.exit_json(changed=False, ansible_facts=module.params["facts"])


if __name__ == "__main__":
    main()
