# Copyright: npufleet contributors
# Apache License 2.0
"""The rules that judge settings against what a node has, one message per rule that fails, each naming
the variable, its value, what the node allows and the fix. They read npufleet.ascend.node_state's
result (or a container's NPUs), so the validation pass before any change (playbooks/validate.yml) and
each stage's own checks at its start judge with the same code."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.plugin_utils.number_runs import number_runs


def npu_ranges(npus) -> str:
    """``0-3, 6``: the NPU ids sorted, runs of consecutive ones in one item; ``none`` for no NPU."""
    return number_runs(sorted({int(npu) for npu in npus or []})) or "none"


def _ids(value, what: str) -> list[int]:
    try:
        return [int(npu) for npu in value or []]
    except (TypeError, ValueError) as error:
        raise AnsibleFilterError(f"{what} must be a list of NPU ids, got {value!r}") from error


def missing_npu_problems(wanted, present, var: str) -> list[str]:
    """``wanted`` (the NPU ids ``var`` names; empty: every NPU of the node) against ``present``, the
    node's NPUs (node_state's ``npu_devices``, its /dev/davinciN)."""
    wanted_ids, present_ids = _ids(wanted, var), _ids(present, "npu_devices")
    if not present_ids:
        return ["the node has no /dev/davinciN device (is the Ascend driver installed?): install the driver"]
    missing = [npu for npu in wanted_ids if npu not in present_ids]
    if not missing:
        return []
    return [
        f"{var} {wanted_ids} names NPU {npu_ranges(missing)}, which the node does not have (it has NPUs"
        f" {npu_ranges(present_ids)}, /dev/davinciN): list only those in {var}, or leave it empty for every"
        " NPU of the node"
    ]


def npus_per_node_problems(count, npus, var: str, where: str) -> list[str]:
    """``count`` ranks per node (``var``) against ``npus``, the NPU ids they can use ``where`` (the
    ranks' container, or what it will get on the node)."""
    try:
        wanted = int(count)
    except (TypeError, ValueError):
        return []  # the settings' own check names a count that is not a number
    have = _ids(npus, where)
    if wanted <= len(have):
        return []
    return [
        f"{var} {wanted} is more than the {len(have)} NPUs ({npu_ranges(have)}) of {where}: set {var} to"
        f" {len(have)} or less"
    ]


def _holder(listener: dict) -> str:
    if listener.get("pid") is None:
        return f"a process this user cannot see (listening on {listener.get('address')})"
    what = listener.get("cmdline") or listener.get("process") or "?"
    container = listener.get("container_id")
    return f"pid {listener['pid']} ({what}" + (f", container {container[:12]}" if container else "") + ")"


def taken_port_problems(reading, ports: dict) -> list[str]:
    """``ports`` (variable -> port) that something other than npufleet's own containers listens on,
    from node_state's ``ports`` (``reading``); a port the reading does not list is not judged."""
    found = {int(entry["port"]): entry for entry in reading or [] if isinstance(entry, dict)}
    problems = []
    for var, port in ports.items():
        try:
            entry = found.get(int(port))
        except (TypeError, ValueError):
            continue  # the settings' own check names a port that is not a number
        if entry is None or entry.get("free", True):
            continue
        holders = "; ".join(_holder(listener) for listener in entry.get("listeners") or [])
        problems.append(
            f"{var} {port} is already taken on the node by {holders or 'a process'}, which is not"
            f" npufleet's: stop it, or set {var} to a port nothing listens on"
        )
    return problems


def unbound_address_problems(reading, addresses: dict) -> list[str]:
    """``addresses`` (variable -> address) that the node could not bind a socket to, from node_state's
    ``addresses`` (``reading``); an address the reading does not list is not judged."""
    found = {entry.get("address"): entry for entry in reading or [] if isinstance(entry, dict)}
    problems = []
    for var, address in addresses.items():
        entry = found.get(address)
        if entry is None or entry.get("bindable"):
            continue
        problems.append(
            f"{var} {address} is not an address of this node ({entry.get('error')}): set {var} (or"
            " npufleet_node_address) to the node's own address on the serving network ('ip -4 addr'),"
            f" or 0.0.0.0 to listen on every interface (then set serve_api_key)"
        )
    return problems


class FilterModule:
    def filters(self):
        return {
            "missing_npu_problems": missing_npu_problems,
            "npus_per_node_problems": npus_per_node_problems,
            "taken_port_problems": taken_port_problems,
            "unbound_address_problems": unbound_address_problems,
            "npu_ranges": npu_ranges,
        }
