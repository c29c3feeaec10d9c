# Copyright: npufleet contributors
# Apache License 2.0
"""The action of npufleet.ascend.evidence_collect: before the module runs on the node, every value the
vault gave this host (inline !vault strings, and every value of a vault-encrypted vars file) joins the
values to redact, so no secret from the vault reaches the bundle, whatever the variable is called; and
the controller's clock goes with the task, for the node to read "since" on its own clock."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ansible.parsing.vault import EncryptedString, VaultHelper
from ansible.plugins.action import ActionBase

try:  # ansible-core 2.19 and later: where each value was read from.
    from ansible._internal._datatag._tags import Origin
except ImportError:  # pragma: no cover - older cores: inline vault values only
    Origin = None

# Variables that hold other hosts' or Ansible's own values, not this host's settings.
_NOT_SETTINGS = {"hostvars", "vars", "groups", "group_names", "ansible_facts", "omit", "playbook_dir"}
# A value this short would redact common words in the logs.
_SHORTEST = 4
_VAULT_HEADER = b"$ANSIBLE_VAULT;"


def _is_vault_file(path: str, seen: dict) -> bool:
    if path not in seen:
        try:
            with open(path, "rb") as handle:
                seen[path] = handle.read(len(_VAULT_HEADER)) == _VAULT_HEADER
        except OSError:
            seen[path] = False
    return seen[path]


def vaulted_values(task_vars: Mapping) -> list[str]:
    """Every string among the host's variables that came from the vault, longest first."""
    found, vault_files = set(), {}
    pending = [value for name, value in task_vars.items() if name not in _NOT_SETTINGS]
    # Bounded: a variable that holds itself must not loop.
    for _ in range(100_000):
        if not pending:
            break
        value = pending.pop()
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
        elif isinstance(value, EncryptedString):
            try:
                found.add(str(value))
            except Exception:  # a value this run cannot decrypt holds nothing to hide
                continue
        elif isinstance(value, str):
            origin = Origin.get_tag(value) if Origin else None
            if VaultHelper.get_ciphertext(value, with_tags=False) or (
                origin and origin.path and _is_vault_file(origin.path, vault_files)
            ):
                found.add(str(value))
    return sorted((value for value in found if len(value) >= _SHORTEST), key=len, reverse=True)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        given = args.get("redact_values") or []
        args["redact_values"] = list(given) + [
            value for value in vaulted_values(task_vars or {}) if value not in given
        ]
        # For the node to put "since" (the controller's time) on its own clock.
        args["controller_time"] = time.time()
        result.update(
            self._execute_module(
                module_name="npufleet.ascend.evidence_collect", module_args=args, task_vars=task_vars
            )
        )
        return result
