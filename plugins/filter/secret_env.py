# Copyright: npufleet contributors
# Apache License 2.0
"""Filters that split a container environment in two: what may go on ``docker exec -e`` and in launch
records, and the secrets, which llm_launch hands over through a 0600 env file (its ``secret_env``).

A variable is secret when its name matches one of the patterns (shell globs, any case), or when its
value came from Ansible Vault (an inline ``!vault`` string, or any value of a vault-encrypted vars file):
Ansible keeps that through templating, combine and set_fact, so a user who vaults ``HF_TOKEN`` or a
setting of any name is covered without naming it."""

from __future__ import annotations

from fnmatch import fnmatchcase

from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.plugin_utils.vault_origin import from_vault


def _is_secret(name: str, value, patterns: list[str]) -> bool:
    if from_vault(value):
        return True
    upper = str(name).upper()
    return any(fnmatchcase(upper, str(pattern).upper()) for pattern in patterns)


def _checked(env, patterns) -> tuple[dict, list[str]]:
    if not isinstance(env, dict):
        raise AnsibleFilterError(
            f"an environment must be a mapping of names to values, got {type(env).__name__}"
        )
    if isinstance(patterns, str) or not isinstance(patterns, list):
        raise AnsibleFilterError("the secret name patterns must be a list, such as ['*TOKEN', '*PASSWORD']")
    return env, patterns


def plain_env(env, patterns):
    """The variables of ``env`` that are not secret."""
    env, patterns = _checked(env, patterns)
    return {name: value for name, value in env.items() if not _is_secret(name, value, patterns)}


def secret_env(env, patterns):
    """The variables of ``env`` that are secret: named like one of ``patterns``, or from Vault."""
    env, patterns = _checked(env, patterns)
    return {name: value for name, value in env.items() if _is_secret(name, value, patterns)}


class FilterModule:
    def filters(self):
        return {"plain_env": plain_env, "secret_env": secret_env}
