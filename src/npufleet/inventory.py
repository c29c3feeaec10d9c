"""The inventory a stage runs on, read the way ansible-playbook reads it (Ansible's InventoryManager,
DataLoader and VariableManager: YAML, INI, folders with group_vars and host_vars, Vault), and refused
before anything runs when the stages cannot run on it as the user meant:

- the file does not exist, or Ansible cannot parse it (ansible-playbook only warns, then runs on no
  host and reports success);
- a playbook that runs on ``npu_nodes`` and no host in that group (a misspelt group name);
- two hosts of ``npu_nodes`` with the same address (``ansible_host``, or the host's name where it is
  unset, and the same port) or the same ``npufleet_node_address``: two inventory hosts would then be
  one machine, whose containers, ranks and ports each would take over from the other. The whole group
  is checked, whatever ``--limit`` picks.

Ansible is imported when an inventory is checked, not with this module.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from npufleet.collection import project_root

NODE_GROUP = "npu_nodes"


class InventoryError(ValueError):
    """An inventory the stages cannot run on; the message names the file, the problem and the fix."""


class InventoryNotFoundError(InventoryError, FileNotFoundError):
    """The inventory file does not exist (a FileNotFoundError too, as run_playbook raised before)."""


@dataclass
class Inventory:
    """What the check read: the ``npu_nodes`` hosts (in inventory order) and every group's hosts."""

    path: Path
    nodes: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)


def _ansible():
    """Ansible's inventory classes, imported with the project's ansible.cfg (as ansible-runner runs
    ansible-playbook with it), and without the import's Python warnings on the command line."""
    previous = os.environ.get("ANSIBLE_CONFIG")
    configured = "ansible.constants" in sys.modules
    if not configured:
        os.environ["ANSIBLE_CONFIG"] = str(project_root() / "ansible.cfg")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from ansible._internal._display_utils import DeferredWarningContext  # noqa: PLC0415
            from ansible.errors import AnsibleError  # noqa: PLC0415
            from ansible.inventory.manager import InventoryManager  # noqa: PLC0415
            from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415
            from ansible.parsing.vault import VaultSecret  # noqa: PLC0415
            from ansible.vars.manager import VariableManager  # noqa: PLC0415
    finally:
        if not configured:
            if previous is None:
                os.environ.pop("ANSIBLE_CONFIG", None)
            else:
                os.environ["ANSIBLE_CONFIG"] = previous
    return DeferredWarningContext, AnsibleError, InventoryManager, DataLoader, VaultSecret, VariableManager


def playbook_runs_on_nodes(playbook: Path) -> bool:
    """Whether a play of ``playbook`` (or of a playbook it imports) targets the ``npu_nodes`` group.
    k8s.yml runs on localhost, and so may a playbook of the caller's: those need no node."""
    return _runs_on_nodes(playbook, set())


class _AnyTagLoader(yaml.SafeLoader):
    """Reads a playbook's structure whatever tags its values carry (!vault, !unsafe)."""


_AnyTagLoader.add_multi_constructor("!", lambda *_: None)


def _runs_on_nodes(playbook: Path, seen: set[Path]) -> bool:
    if playbook in seen:
        return False
    seen.add(playbook)
    try:
        plays = yaml.load(playbook.read_text(encoding="utf-8"), Loader=_AnyTagLoader)
    except (OSError, yaml.YAMLError):
        return False  # ansible-playbook says what is wrong with it
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if isinstance(imported, str) and "{" not in imported:
            if _runs_on_nodes((playbook.parent / imported).resolve(), seen):
                return True
            continue
        hosts = play.get("hosts")
        patterns = hosts if isinstance(hosts, list) else [hosts]
        if any(isinstance(item, str) and re.search(rf"\b{NODE_GROUP}\b", item) for item in patterns):
            return True
    return False


def check_inventory(
    path: str | Path, *, vault_password: str | None = None, needs_nodes: bool = True
) -> Inventory:
    """Read ``path`` as ansible-playbook would and raise InventoryError (a ValueError) when it does not
    exist, does not parse, has no ``npu_nodes`` host (with ``needs_nodes``), or gives two of them the
    same address or node address. ``vault_password`` opens its Vault-encrypted files."""
    path = Path(path)
    if not path.exists():
        raise InventoryNotFoundError(
            f"inventory {path} does not exist: run 'npufleet lab up' or pass --inventory"
        )
    warning_context, ansible_error, manager_class, loader_class, vault_secret, variables_class = _ansible()

    class RecordingLoader(loader_class):
        """A DataLoader that remembers the file it read last: Ansible's errors on a vars file (a
        vaulted group_vars file without the password) do not name it."""

        last_file: str | None = None

        def load_from_file(self, file_name, *args, **kwargs):
            self.last_file = file_name
            return super().load_from_file(file_name, *args, **kwargs)

    loader = RecordingLoader()
    if vault_password:
        loader.set_vault_secrets([("default", vault_secret(vault_password.encode()))])
    # Ansible's warnings are kept here, not printed: an unparsed source is one of them.
    with warning_context(variables={}) as context:
        try:
            manager = manager_class(loader=loader, sources=[str(path)])
        except ansible_error as error:
            source = loader.last_file or str(path)
            raise InventoryError(_unparsed(path, source, _chain(error), vault_password)) from None
        failed = _unparsed_sources(context.get_warnings())
        if failed:
            source, reasons = failed[0]
            raise InventoryError(_unparsed(path, source, reasons, vault_password))
        group = manager.groups.get(NODE_GROUP)
        nodes = group.get_hosts() if group else []
        groups = {name: [host.name for host in each.get_hosts()] for name, each in manager.groups.items()}
        if not nodes:
            if needs_nodes:
                raise InventoryError(_no_nodes(path, groups, context.get_warnings()))
            return Inventory(path, [], groups)
        variables = variables_class(loader=loader, inventory=manager)
        found = {}
        for host in nodes:
            try:
                found[host.name] = variables.get_vars(host=host, include_hostvars=False)
            except ansible_error as error:
                source = loader.last_file or str(path)
                raise InventoryError(_unparsed(path, source, _chain(error), vault_password)) from None
    _refuse_shared_addresses(path, found)
    return Inventory(path, [host.name for host in nodes], groups)


# "Origin: /path/hosts.yml:7:10" in the source context Ansible gives a parse error.
_ORIGIN = re.compile(r"Origin: (?P<file>.+?):(?P<line>\d+):(?P<column>\d+)")
_UNPARSED = re.compile(r"Unable to parse (?P<source>.+) as an inventory source")
_PLUGIN_FAILED = re.compile(r"Failed to parse inventory with '(?P<plugin>[^']+)' plugin")
# The plugin whose reason a file of each kind gets (each plugin tries every file: ini's reason for a
# broken YAML file is noise).
_PLUGINS_BY_SUFFIX = {".yml": ("yaml", "auto"), ".yaml": ("yaml", "auto"), ".json": ("yaml", "auto"),
                      ".toml": ("toml",)}  # fmt: skip


def _chain(error) -> list[tuple[str, str | None]]:
    """(message, location) of an exception and its causes; Ansible's own errors are AnsibleErrors."""
    found = []
    while error is not None and len(found) < 4:
        location = None
        obj = getattr(error, "obj", None)
        origin = getattr(obj, "path", None) or getattr(getattr(obj, "_origin", None), "path", None)
        line = getattr(obj, "line_num", None)
        if origin and line:
            location = f"{origin}:{line}:{getattr(obj, 'col_num', None) or 1}"
        found.append((str(getattr(error, "message", None) or error), location))
        error = error.__cause__ or error.__context__
    return found


def _event_chain(event) -> list[tuple[str, str | None]]:
    """(message, location) of a warning's event and its causes."""
    found = []
    while event is not None:
        origin = _ORIGIN.search(event.formatted_source_context or "")
        location = f"{origin['file']}:{origin['line']}:{origin['column']}" if origin else None
        found.append((event.msg, location))
        event = event.chain.event if event.chain else None
    return found


def _unparsed_sources(warnings_seen) -> list[tuple[str, list]]:
    """Each source Ansible could not parse, with the reasons its plugins gave (the plugin that reads
    a file of its kind first: yaml for .yml, ini for the others)."""
    failed, pending = [], []
    for warning in warnings_seen:
        message = warning.event.msg or ""
        plugin = _PLUGIN_FAILED.match(message)
        if plugin:
            cause = warning.event.chain.event if warning.event.chain else None
            pending.append((plugin["plugin"], _event_chain(cause)))
            continue
        unparsed = _UNPARSED.match(message)
        if unparsed:
            source = unparsed["source"]
            preferred = _PLUGINS_BY_SUFFIX.get(Path(source).suffix.lower(), ("ini",))
            pending.sort(key=lambda item: preferred.index(item[0]) if item[0] in preferred else 9)
            failed.append((source, pending[0][1] if pending else []))
            pending = []
    return failed


def _unparsed(path: Path, source: str, reasons: list, vault_password: str | None) -> str:
    """The refusal of an inventory Ansible could not parse: the file, Ansible's reason, the fix."""
    messages, where = [], ""
    for message, location in reasons:
        text = " ".join(str(message).split()).rstrip(".")
        if text and text not in messages:
            messages.append(text)
        if location:
            file, line, column = location.rsplit(":", 2)
            source = file
            where = f" (line {line}, column {column})"
            break
    reason = ": ".join(messages[:2]) or "no inventory plugin could read it"
    shown = source if Path(source) == path else f"{source} (in {path})"
    if "vault" in reason.lower():
        fix = (
            "the Vault password given does not open it: give the one it was encrypted with"
            if vault_password
            else "it is encrypted with Ansible Vault: run with --ask-vault-pass or --vault-password-file FILE"
        )
        return f"inventory {shown} cannot be decrypted: {reason}; {fix}"
    fix = f"correct it ('ansible-inventory -i {path} --graph' shows how Ansible reads it)"
    return f"inventory {shown} does not parse: {reason}{where}; {fix}"


def _no_nodes(path: Path, groups: dict[str, list[str]], warnings_seen) -> str:
    """The refusal of an inventory with no npu_nodes host: where its hosts are instead."""
    every = groups.get("all", [])
    elsewhere = {name: hosts for name, hosts in groups.items() if name not in ("all", "ungrouped") and hosts}
    head = f"inventory {path} has no host in the group {NODE_GROUP}, where the stages run"
    if elsewhere:
        listed = "; ".join(f"{name} ({', '.join(hosts)})" for name, hosts in sorted(elsewhere.items()))
        noun = "group" if len(elsewhere) == 1 else "groups"
        text = f"{head}: its hosts are in {noun} {listed}; rename the group to {NODE_GROUP}"
    elif every:
        text = f"{head}: its hosts ({', '.join(every)}) are in no group; put them under {NODE_GROUP}"
    else:
        text = (
            f"{head}: it has no hosts; list your nodes under all.children.{NODE_GROUP}.hosts"
            " (as inventories/example/hosts.yml does)"
        )
    # Ansible's own word on a misplaced key ("Skipping unexpected key ...") says where the hosts went.
    told = [" ".join(w.event.msg.split()) for w in warnings_seen if "unexpected key" in (w.event.msg or "")]
    return text + (f" (Ansible: {'; '.join(told)})" if told else "")


def _plain(value) -> str | None:
    """A variable's value as text, or None where it is unset, a template (known only when the play
    runs) or an inline Vault value (Ansible decrypts those with its process-wide secrets, which a
    check in a caller's process does not set up)."""
    if value is None:
        return None
    try:
        text = str(value)
    except Exception:  # an encrypted value the password given does not open: nothing to compare
        return None
    return None if "{{" in text or "{%" in text else text


def _refuse_shared_addresses(path: Path, found: dict[str, dict]) -> None:
    """Refuse two npu_nodes hosts at one address (ansible_host, or the name, and port) or with one
    npufleet_node_address."""
    addresses, node_addresses = defaultdict(list), defaultdict(list)
    for host, variables in found.items():
        given = variables.get("ansible_host")
        # Unset, a host is reached at its name; a template or an inline Vault value is not compared.
        address = host if given is None else _plain(given)
        port = _plain(variables.get("ansible_port") or variables.get("ansible_ssh_port"))
        if address is not None:
            addresses[(address, port)].append(host)
        node_address = _plain(variables.get("npufleet_node_address"))
        if node_address:
            node_addresses[node_address].append(host)
    for (address, port), hosts in addresses.items():
        if len(hosts) > 1:
            at = f"{address} port {port}" if port else address
            raise InventoryError(
                f"inventory {path}: hosts {_names(hosts)} of {NODE_GROUP} have the same address {at}"
                " (ansible_host): they would be one machine, each run's containers and ranks taking over"
                " the other's; give each host its own ansible_host, or remove the duplicate host"
            )
    for node_address, hosts in node_addresses.items():
        if len(hosts) > 1:
            raise InventoryError(
                f"inventory {path}: hosts {_names(hosts)} of {NODE_GROUP} have the same npufleet_node_address"
                f" {node_address}: the nodes and the controller would reach one machine for both; give"
                " each host its own node's address"
            )


def _names(hosts: list[str]) -> str:
    return ", ".join(hosts[:-1]) + f" and {hosts[-1]}"
