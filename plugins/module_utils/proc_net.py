# Copyright: npufleet contributors
# Apache License 2.0
"""Parsers for the kernel's /proc/net/tcp, /proc/net/tcp6 and /proc/PID/cgroup.

Pure functions: text in, plain data out, so the unit tests feed recorded files straight in. Runs on
the nodes: Python 3.8 and the standard library only.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["TCP_STATES", "container_id_from_cgroup", "parse_proc_net_tcp"]

# The kernel's TCP states (include/net/tcp_states.h), as /proc/net/tcp prints them in hex.
TCP_STATES = {
    0x01: "ESTABLISHED",
    0x02: "SYN_SENT",
    0x03: "SYN_RECV",
    0x04: "FIN_WAIT1",
    0x05: "FIN_WAIT2",
    0x06: "TIME_WAIT",
    0x07: "CLOSE",
    0x08: "CLOSE_WAIT",
    0x09: "LAST_ACK",
    0x0A: "LISTEN",
    0x0B: "CLOSING",
    0x0C: "NEW_SYN_RECV",
}

# Docker's container cgroup: <parent>/<id> (cgroupfs driver; the parent is /docker unless the container
# was given one, as npufleet's are) or docker-<id>.scope (systemd driver).
_DOCKER_CGROUP = re.compile(r"/(?:docker-)?([0-9a-f]{64})(?:\.scope)?(?=/|$)")


def _address(hex_address: str) -> str:
    """The kernel prints the address as 32-bit words in host order (little-endian on x86 and arm64):
    '0100007F' is 127.0.0.1, and tcp6's four words each need their bytes reversed."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[index : index + 4][::-1] for index in range(0, len(raw), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words))
    address = ipaddress.IPv6Address(words)
    # Spelled the same on every Python (3.13 changed how str() writes IPv4-mapped addresses).
    if address.ipv4_mapped:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def parse_proc_net_tcp(text: str) -> list[dict]:
    """Sockets of /proc/net/tcp or /proc/net/tcp6: ``{"address", "port", "state", "inode"}`` each.

    The header line and anything that is not a socket line (for example a fixture's ``#`` notes)
    are skipped; TIME_WAIT lines carry fewer columns and inode 0."""
    sockets = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":") or not fields[0][:-1].isdigit():
            continue
        local, state, inode = fields[1], fields[3], fields[9]
        hex_address, _, hex_port = local.partition(":")
        number = int(state, 16)
        sockets.append(
            {
                "address": _address(hex_address),
                "port": int(hex_port, 16),
                "state": TCP_STATES.get(number, f"UNKNOWN_{number:02X}"),
                "inode": int(inode),
            }
        )
    return sockets


def container_id_from_cgroup(text: str, outer: str | None = None) -> str | None:
    """The Docker container id in a /proc/PID/cgroup (cgroup v1 or v2, either cgroup driver); None
    for a process outside a container, or one read from inside its own cgroup namespace.

    A node that is itself a container (the lab's, or Docker in Docker) nests its containers' cgroups
    under its own: the innermost id is the process's container. ``outer``, the id of the container the
    reader runs in, is not a container of this node: a process in only that one is in none."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        found = [match.group(1) for match in _DOCKER_CGROUP.finditer(path)]
        found = [container for container in found if container != outer]
        if found:
            return found[-1]
    return None
