# Copyright: npufleet contributors
# Apache License 2.0
"""The action of npufleet.ascend.evidence_collect: before the module runs on the node, every value the
vault gave this host (inline !vault strings, and every value of a vault-encrypted vars file) joins the
values to redact, so no secret from the vault reaches the bundle, whatever the variable is called; and
the controller's clock goes with the task, for the node to read "since" on its own clock."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ansible.plugins.action import ActionBase
from ansible_collections.npufleet.ascend.plugins.plugin_utils.vault_origin import EncryptedString, from_vault

# Variables that hold other hosts' or Ansible's own values, not this host's settings.
_NOT_SETTINGS = {"hostvars", "vars", "groups", "group_names", "ansible_facts", "omit", "playbook_dir"}
# How Ansible reaches the host, often kept in a vault file beside the secrets: "root" or a host name
# redacted everywhere would spoil the evidence (and Ansible's own masking of the module's result). The
# connection's passwords are secrets, and are kept.
_CONNECTION_PREFIX = "ansible_"
_CONNECTION_SECRETS = {
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_become_password",
    "ansible_become_pass",
}
# A value this short would redact common words in the logs.
_SHORTEST = 4


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def vaulted_values(task_vars: Mapping) -> list[str]:
    """Every string or number among the host's variables that came from the vault, longest first."""
    found, vault_files, visited = set(), {}, set()
    pending = [
        value
        for name, value in task_vars.items()
        if name not in _NOT_SETTINGS
        and (not name.startswith(_CONNECTION_PREFIX) or name in _CONNECTION_SECRETS)
    ]
    while pending:
        value = pending.pop()
        if isinstance(value, (Mapping, list, tuple)):
            # A mapping or list met again (shared, or holding itself) is not read twice.
            if id(value) in visited:
                continue
            visited.add(id(value))
            pending.extend(value.values() if isinstance(value, Mapping) else value)
        elif isinstance(value, EncryptedString):
            try:
                found.add(str(value))
            except Exception:  # a value this run cannot decrypt holds nothing to hide
                continue
        elif _is_scalar(value) and from_vault(value, vault_files):
            found.add(str(value))
    return sorted((value for value in found if len(value) >= _SHORTEST), key=len, reverse=True)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = False
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        given = args.get("redact_values") or []
        # One value given as a string is one value, not its letters.
        given = [given] if isinstance(given, str) else list(given)
        vaulted = vaulted_values(task_vars or {})
        args["redact_values"] = given + [value for value in vaulted if value not in given]
        # For the node to put "since" (the controller's time) on its own clock.
        args["controller_time"] = time.time()
        result.update(
            self._execute_module(
                module_name="npufleet.ascend.evidence_collect", module_args=args, task_vars=task_vars
            )
        )
        return result
