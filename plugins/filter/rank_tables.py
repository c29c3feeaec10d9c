# Copyright: npufleet contributors
# Apache License 2.0
"""Filters for Ascend rank tables (version 1.0): HCCL's RANK_TABLE_FILE for Atlas A2, built from the
network gate's facts, and the checks a rendered table must pass before a job uses it. MindIE's
rank_table_file.json has the same layout, so serving.rank_table renders through the same helper."""

from __future__ import annotations

import ipaddress
from collections import Counter

from ansible.errors import AnsibleFilterError

RANK_TABLE_VERSION = "1.0"
SET_ADDRESS_FIX = "hccn_tool -i {npu} -ip -s address ADDRESS netmask NETMASK"


def render_rank_table(servers: list[dict], filter_name: str) -> dict:
    """The rank table for ``servers`` in rank order (the first is the master): every value a string,
    rank ids running across servers. ``filter_name`` names the caller in errors."""
    if not servers:
        raise AnsibleFilterError(f"{filter_name}: no servers")
    rank = 0
    server_list = []
    for server in servers:
        devices = []
        for device in server.get("devices") or []:
            if "device_id" not in device or "device_ip" not in device:
                raise AnsibleFilterError(
                    f"{filter_name}: every device of {server.get('server_id')} needs device_id and device_ip"
                    " (the NPU's address: hccn_tool -i N -ip -g)"
                )
            devices.append({"device_id": str(device["device_id"]), "device_ip": str(device["device_ip"]),
                            "rank_id": str(rank)})  # fmt: skip
            rank += 1
        if not devices:
            raise AnsibleFilterError(f"{filter_name}: server {server.get('server_id')} has no devices")
        server_list.append({"server_id": str(server["server_id"]),
                            "container_ip": str(server.get("container_ip") or server["server_id"]),
                            "device": devices})  # fmt: skip
    return {"version": RANK_TABLE_VERSION, "server_count": str(len(server_list)), "server_list": server_list,
            "status": "completed"}  # fmt: skip


def hccl_rank_table(servers: list[dict]) -> dict:
    """HCCL's RANK_TABLE_FILE (Atlas A2, version 1.0) for ``servers``: each ``{"server_id": address,
    "container_ip": optional, "devices": [{"device_id", "device_ip"}]}``, in rank order."""
    return render_rank_table(servers, "hccl_rank_table")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _rank_problems(ranks: list[tuple[str, str, object]]) -> list[str]:
    """Rank ids must be the integers 0..N-1, each once; ``ranks`` holds (server, device, rank_id)."""
    problems = []
    numbers = []
    for server_id, device_id, rank_id in ranks:
        try:
            numbers.append(int(str(rank_id)))
        except ValueError:
            problems.append(
                f"server {server_id} device {device_id}: rank_id {rank_id!r} is not a number; re-render the"
                " table with hccl_rank_table (ranks 0..N-1 in server order)"
            )
    counts = Counter(numbers)
    for number in sorted(number for number, count in counts.items() if count > 1):
        holders = ", ".join(f"server {s} device {d}" for s, d, r in ranks if str(r) == str(number))
        problems.append(
            f"rank_id {number} is used more than once ({holders}); re-render the table with hccl_rank_table"
            " so that each device has its own rank"
        )
    missing = sorted(set(range(len(ranks))) - set(numbers))
    if missing:
        problems.append(
            f"rank_id is not contiguous 0..{len(ranks) - 1}: missing {', '.join(map(str, missing))};"
            " re-render the table with hccl_rank_table, which numbers ranks across servers in order"
        )
    return problems


def rank_table_problems(table: dict, reachability: dict | None = None) -> list[str]:
    """What is wrong with a rendered rank table (HCCL's or MindIE's, version 1.0), each naming the
    server, the device and the fix; empty when it is fine. ``reachability`` (``{device_ip: bool}``,
    the network gate's ping matrix) also asks every device_ip to be reachable."""
    problems = []
    if not table.get("version"):
        problems.append(f'the table has no version: set "version": "{RANK_TABLE_VERSION}"')
    if table.get("status") != "completed":
        problems.append(
            f"status is {table.get('status')!r}, not 'completed': HCCL waits on an incomplete table; set"
            ' "status": "completed" once every server is listed'
        )
    server_list = table.get("server_list") or []
    if not server_list:
        problems.append("server_list is empty: render the table from at least one server")
    if str(table.get("server_count")) != str(len(server_list)):
        problems.append(
            f"server_count is {table.get('server_count')!r} but server_list has {len(server_list)} servers:"
            f' set server_count to "{len(server_list)}"'
        )
    server_ids = Counter(str(server.get("server_id")) for server in server_list)
    for server_id in sorted(name for name, count in server_ids.items() if count > 1):
        problems.append(
            f"server_id {server_id} is listed {server_ids[server_id]} times: list each node once, with all"
            " its devices"
        )
    ip_holders: dict[str, list[str]] = {}
    ranks = []
    for server in server_list:
        server_id = server.get("server_id")
        devices = server.get("device") or []
        if not devices:
            problems.append(f"server {server_id} has no devices: give it the NPUs the job uses")
        device_ids = Counter(str(device.get("device_id")) for device in devices)
        for device_id in sorted(name for name, count in device_ids.items() if count > 1):
            problems.append(
                f"server {server_id}: device_id {device_id} is listed {device_ids[device_id]} times;"
                " list each NPU of a server once"
            )
        for device in devices:
            device_id, device_ip = device.get("device_id"), str(device.get("device_ip"))
            ranks.append((server_id, device_id, device.get("rank_id")))
            ip_holders.setdefault(device_ip, []).append(f"server {server_id} device {device_id}")
            if not _is_ipv4(device_ip):
                problems.append(
                    f"server {server_id} device {device_id}: device_ip {device_ip!r} is not an IPv4 address;"
                    f" read the NPU's address with hccn_tool -i {device_id} -ip -g and set it"
                )
            elif reachability is not None and not reachability.get(device_ip):
                state = "was not in the ping matrix" if device_ip not in reachability else "did not answer"
                problems.append(
                    f"server {server_id} device {device_id}: device_ip {device_ip} {state}; check the NPU's"
                    f" link and address (hccn_tool -i {device_id} -link -g, -ip -g) and the peers' routes"
                )
    for device_ip, holders in ip_holders.items():
        if len(holders) > 1 and _is_ipv4(device_ip):
            problems.append(
                f"device_ip {device_ip} is shared by {' and '.join(holders)}: every NPU needs its own"
                " address; fix /etc/hccn.conf or the override and set it with hccn_tool -i N -ip -s"
            )
    return problems + _rank_problems(ranks)


def rank_servers_from_facts(hosts_facts: list[dict], npus: list, overrides: dict | None = None) -> list[dict]:
    """The ``servers`` input of hccl_rank_table from the network gate's facts: ``hosts_facts`` in rank
    order, each ``{"server_id": address, "npus": hccn_info's npus ([{"id", "ipaddr", ...}])}``;
    ``npus`` the NPU ids the job uses; ``overrides`` (``{server_id: [{"device_id", "device_ip"}]}``,
    typed by hand) wins for its server."""
    overrides = overrides or {}
    servers = []
    for host in hosts_facts:
        server_id = str(host["server_id"])
        server = {"server_id": server_id}
        if host.get("container_ip"):
            server["container_ip"] = str(host["container_ip"])
        if server_id in overrides:
            server["devices"] = [
                {"device_id": device["device_id"], "device_ip": device["device_ip"]}
                for device in overrides[server_id]
            ]
            servers.append(server)
            continue
        by_id = {int(npu["id"]): npu for npu in host.get("npus") or []}
        devices = []
        for npu_id in (int(npu) for npu in npus):
            address = (by_id.get(npu_id) or {}).get("ipaddr")
            if not address:
                known = "has no ipaddr" if npu_id in by_id else "is not in its hccn facts"
                raise AnsibleFilterError(
                    f"rank_servers_from_facts: server {server_id} NPU {npu_id} {known}: give the NPU an"
                    f" address on the node ({SET_ADDRESS_FIX.format(npu=npu_id)}, as in /etc/hccn.conf), or"
                    f" set the override for {server_id} (device_id {npu_id} and its device_ip)"
                )
            devices.append({"device_id": npu_id, "device_ip": str(address)})
        server["devices"] = devices
        servers.append(server)
    return servers


class FilterModule:
    def filters(self):
        return {
            "hccl_rank_table": hccl_rank_table,
            "rank_table_problems": rank_table_problems,
            "rank_servers_from_facts": rank_servers_from_facts,
        }
