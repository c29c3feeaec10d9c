"""What a stage could change on a lab node, read without changing it: the bad-input suite reads it before
and after each stage's cases (and, in the playbook, after each case) and requires it to be the same.

The state is the output of one shell script (STATE_SCRIPT), in sections headed ``== name``. The script is
also handed to the playbooks as an extra var, so it holds no ``{{`` or ``{%`` (Ansible would template
them): Docker's fields are read from ``docker inspect``'s JSON by the node's Python.
"""

from __future__ import annotations

from tests.lab.conftest import node_exec

# Where the stages write: the engine's settings and containers, the firewall and forwarding, the
# system folders a wrong work dir would hand away, npufleet's records, and the work dirs, each file
# with its size, owner, mode and modification time.
STATE_SCRIPT = r"""
export LC_ALL=C
echo "== daemon.json"; sha256sum /etc/docker/daemon.json 2>&1
echo "== containers"
docker ps -aq --no-trunc | xargs -r docker inspect | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    s = c["State"]
    print(c["Name"], c["Id"][:12], s["Status"], s["StartedAt"], c["RestartCount"], c["Config"]["Image"])
' | sort
echo "== images"; docker images -q --no-trunc | sort -u
echo "== filter table"; iptables-save -t filter | sed -E '/^#/d; s/ \[[0-9]+:[0-9]+\]$//'
echo "== ip_forward"; cat /proc/sys/net/ipv4/ip_forward
echo "== listeners"; ss -ltnH | awk '{print $4}' | sort -u
echo "== system folders"
stat -c '%n %u:%g %a' / /usr /usr/local /usr/local/lib /etc /var /var/lib /opt /srv /root /home /data 2>&1
echo "== entries"; find / /usr/local /etc /var/lib /opt /home /root -mindepth 1 -maxdepth 1 2>&1 | sort
echo "== given to the container user"; find /usr /etc /srv -maxdepth 3 -xdev -uid 1000 2>&1 | sort
# Files with their modification time; folders without it (what they hold is listed).
echo "== settings"
find /etc/docker /etc/sysctl.d /etc/systemd/system /usr/local/sbin /srv -xdev \
  \( -type d -printf '%p %y %u:%g %m\n' \) -o -printf '%p %y %u:%g %m %s %T@ %l\n' 2>&1 | sort
echo "== npufleet records"
find /var/lib/npufleet \
  \( -type d -printf '%p %y %u:%g %m\n' \) -o -printf '%p %y %u:%g %m %s %T@\n' 2>&1 | sort
echo "== work dirs"
find /home/ma-user /data /var/tmp -xdev \
  \( -type d -printf '%p %y %u:%g %m\n' \) -o -printf '%p %y %u:%g %m %s %T@ %l\n' 2>&1 | sort
"""


def read(node: str) -> dict[str, list[str]]:
    """The node's state: each section's lines."""
    code, output = node_exec(node, STATE_SCRIPT)
    assert code == 0, f"reading the state of {node} failed: {output[-2000:]}"
    sections: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith("== "):
            lines = sections.setdefault(line[3:], [])
        else:
            lines.append(line)
    return sections


def read_all(nodes: list[str]) -> dict[str, dict[str, list[str]]]:
    return {node: read(node) for node in nodes}


def changes(before: dict[str, dict[str, list[str]]], after: dict[str, dict[str, list[str]]]) -> list[str]:
    """What differs, a line each: node, section, and the line that went (-) or came (+)."""
    found = []
    for node in sorted(before.keys() | after.keys()):
        was, now = before.get(node, {}), after.get(node, {})
        for section in sorted(was.keys() | now.keys()):
            old, new = set(was.get(section, [])), set(now.get(section, []))
            found += [f"{node} {section}: - {line}" for line in sorted(old - new)]
            found += [f"{node} {section}: + {line}" for line in sorted(new - old)]
    return found
