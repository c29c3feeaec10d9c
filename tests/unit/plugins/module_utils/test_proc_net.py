"""proc_net's parsers on text recorded from this project's build machine (/proc/net/tcp, tcp6 and a
/proc/self/cgroup) and on Docker's cgroup line forms typed from the kernel's and Docker's docs."""

from __future__ import annotations

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.proc_net import (
    container_id_from_cgroup,
    parse_proc_net_tcp,
)

from tests.fixtures import FIXTURE_ROOT

PROC_NET = FIXTURE_ROOT / "proc_net"
CONTAINER_ID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"


def recorded(name: str) -> str:
    return (PROC_NET / name).read_text(encoding="utf-8")


def listening(sockets: list[dict]) -> list[tuple[str, int]]:
    return sorted((sock["address"], sock["port"]) for sock in sockets if sock["state"] == "LISTEN")


def test_tcp_listeners_and_connections():
    sockets = parse_proc_net_tcp(recorded("tcp.txt"))
    assert len(sockets) == 7  # the header and the '#' notes are no sockets
    assert listening(sockets) == [("0.0.0.0", 2024), ("0.0.0.0", 8080), ("127.0.0.1", 29500)]
    assert sockets[2] == {"address": "127.0.0.1", "port": 29500, "state": "LISTEN", "inode": 8810}
    # A connection accepted on 29500, and the client end of the one to the dual-stack [::]:1025.
    assert {"address": "127.0.0.1", "port": 29500, "state": "ESTABLISHED", "inode": 8815} in sockets
    assert {"address": "127.0.0.1", "port": 38470, "state": "ESTABLISHED", "inode": 8818} in sockets
    # TIME_WAIT lines are shorter and belong to no process.
    time_wait = [sock for sock in sockets if sock["state"] == "TIME_WAIT"]
    assert time_wait == [{"address": "127.0.0.1", "port": 44668, "state": "TIME_WAIT", "inode": 0}]


def test_tcp6_addresses_are_ipv6_text():
    sockets = parse_proc_net_tcp(recorded("tcp6.txt"))
    assert listening(sockets) == [("::", 1025), ("::1", 60000)]
    mapped = [sock for sock in sockets if sock["inode"] == 8819]
    assert mapped == [{"address": "::ffff:127.0.0.1", "port": 1025, "state": "ESTABLISHED", "inode": 8819}]
    assert {sock["state"] for sock in sockets} == {"LISTEN", "ESTABLISHED", "TIME_WAIT"}


def test_empty_and_header_only_text():
    assert parse_proc_net_tcp("") == []
    header = recorded("tcp.txt").splitlines()[6]
    assert header.split()[:2] == ["sl", "local_address"]
    assert parse_proc_net_tcp(header) == []


def test_the_build_machines_own_cgroup_has_no_container():
    text = recorded("self_cgroup_vm.txt")
    assert "4:memory:/process_api/" in text
    assert container_id_from_cgroup(text) is None


def docker_forms() -> list[tuple[str, str | None, str]]:
    """(form, expected id, cgroup text) per '### form: id' section of the typed fixture."""
    forms, lines = [], recorded("docker_cgroup_forms.txt").splitlines()
    for line in lines:
        if line.startswith("### "):
            form, _, expected = line[4:].rpartition(": ")
            forms.append((form, None if expected == "none" else expected, ""))
        elif forms and not line.startswith("#"):
            form, expected, text = forms[-1]
            forms[-1] = (form, expected, text + line + "\n")
    return forms


DOCKER_FORMS = docker_forms()


def test_the_typed_fixture_has_every_form():
    assert [form for form, _, _ in DOCKER_FORMS] == [
        "cgroup v1, cgroupfs driver", "cgroup v1, systemd driver", "cgroup v2, systemd driver",
        "cgroup v2, cgroupfs driver", "cgroup v2, a host login session",
        "cgroup v2, inside the container's own cgroup namespace",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("form", "expected", "text"), DOCKER_FORMS, ids=[form for form, _, _ in DOCKER_FORMS]
)
def test_container_id_from_docker_cgroup_forms(form, expected, text):
    assert container_id_from_cgroup(text) == expected
    if expected:
        assert expected == CONTAINER_ID


def test_a_short_or_foreign_id_is_no_docker_container():
    assert container_id_from_cgroup("0::/docker/abc123\n") is None
    assert container_id_from_cgroup(f"0::/kubepods.slice/cri-containerd-{CONTAINER_ID}.scope\n") is None


def lab_node_sections() -> dict[str, str]:
    """'### what: id' section title -> cgroup text, from the recorded lab node."""
    sections, title = {}, None
    for line in recorded("lab_node_cgroups.txt").splitlines():
        if line.startswith("### "):
            title = line[4:]
            sections[title] = ""
        elif title and not line.startswith("#"):
            sections[title] += line + "\n"
    return sections


def test_on_a_node_that_is_a_container_only_the_nodes_own_containers_count():
    sections = lab_node_sections()
    (own_title,) = [title for title in sections if title.startswith("the reader itself")]
    node_id = own_title.rpartition(": ")[2]
    assert container_id_from_cgroup(sections[own_title]) == node_id
    for title, text in sections.items():
        expected = title.rpartition(": ")[2]
        found = container_id_from_cgroup(text, outer=node_id)
        assert found == (None if expected in ("none", node_id) else expected), title
    # Without knowing it runs in one, every process of the node looks like it is in a container.
    (init_title,) = [title for title in sections if title.startswith("the node's own pid 1")]
    assert container_id_from_cgroup(sections[init_title]) == node_id


def test_the_innermost_of_nested_docker_cgroups_is_the_container():
    outer, inner = "a" * 64, "b" * 64
    assert container_id_from_cgroup(f"0::/docker/{outer}/docker/{inner}\n", outer=outer) == inner
    assert container_id_from_cgroup(f"0::/docker/{outer}/system.slice/docker-{inner}.scope\n") == inner
    assert container_id_from_cgroup(f"0::/docker/{outer}/init.scope\n", outer=outer) is None
