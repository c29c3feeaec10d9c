# Copyright: npufleet contributors
# Apache License 2.0
"""Whether a value came from Ansible Vault (controller side): an inline ``!vault`` string keeps Vault's
tag through templating, and every value read from a vault-encrypted vars file keeps the file's path in
its origin (ansible-core 2.19 and later), whatever its name."""

from __future__ import annotations

try:  # ansible-core 2.19 and later
    from ansible.parsing.vault import EncryptedString, VaultHelper
except ImportError:  # pragma: no cover - older cores: their inline vault type below
    EncryptedString = VaultHelper = None
try:  # where each value was read from (2.19 and later): the values of a vault-encrypted file
    from ansible._internal._datatag._tags import Origin
except ImportError:  # pragma: no cover
    Origin = None
if EncryptedString is None:  # pragma: no cover - ansible-core 2.17 and 2.18
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode as EncryptedString

__all__ = ["EncryptedString", "from_vault"]

_VAULT_HEADER = b"$ANSIBLE_VAULT;"


def _is_vault_file(path: str, seen: dict) -> bool:
    if path not in seen:
        try:
            with open(path, "rb") as handle:
                seen[path] = handle.read(len(_VAULT_HEADER)) == _VAULT_HEADER
        except OSError:
            seen[path] = False
    return seen[path]


def from_vault(value: object, seen: dict | None = None) -> bool:
    """True for an inline vault string (encrypted or decrypted) and for a value of a vault-encrypted
    file. ``seen`` caches which files are vaults across calls."""
    if isinstance(value, EncryptedString):
        return True
    inline = VaultHelper is not None and isinstance(value, str)
    if inline and VaultHelper.get_ciphertext(value, with_tags=False):
        return True
    origin = Origin.get_tag(value) if Origin else None
    return bool(origin and origin.path and _is_vault_file(origin.path, {} if seen is None else seen))
