"""listen_ports run in-process: against this machine's real /proc with a socket this test holds open,
and against a procfs laid out in a folder (the recorded /proc/net/tcp, one process in a Docker
container) for ignore_containers, with a stand-in docker that resolves names."""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.module_utils.listeners import CMDLINE_LIMIT
from ansible_collections.npufleet.ascend.plugins.modules import listen_ports

from tests.fixtures import FIXTURE_ROOT

PROC_NET = FIXTURE_ROOT / "proc_net"
CONTAINER_ID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        listen_ports.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the kernel's choice of a free port
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def unused_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound but never listening, and now closed: nothing listens there
    return port


def test_a_port_this_test_listens_on_is_taken_by_this_process(listener, capsys):
    free = unused_port()
    result = run_module(capsys, ports=[listener, free])
    assert result["changed"] is False
    assert result["taken"] == [listener]
    taken, untouched = result["ports"]
    assert (taken["port"], taken["free"], untouched) == (
        listener, False, {"port": free, "free": True, "listeners": [], "ignored": []}
    )  # fmt: skip
    (holder,) = taken["listeners"]
    assert holder["address"] == "127.0.0.1" and holder["pid"] == os.getpid()
    with open(f"/proc/{os.getpid()}/comm", encoding="utf-8") as comm:
        assert holder["process"] == comm.read().strip()
    assert "pytest" in holder["cmdline"] and len(holder["cmdline"]) <= CMDLINE_LIMIT
    # The same answer in check mode.
    checked = run_module(capsys, ports=[listener, free], _ansible_check_mode=True)
    assert checked["ports"] == result["ports"]


def test_a_bad_port_is_named(capsys):
    result = run_module(capsys, ports=[8000, 70000])
    assert result["failed"] is True
    assert result["msg"] == "ports must be 1..65535, got 70000: fix the ports option"


@pytest.fixture
def fake_proc(tmp_path):
    """A procfs with the recorded tables and pid 4242, in a container, holding 0.0.0.0:8080 (inode 8811)."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    shutil.copy(PROC_NET / "tcp.txt", proc / "net" / "tcp")
    shutil.copy(PROC_NET / "tcp6.txt", proc / "net" / "tcp6")
    process = proc / "4242"
    (process / "fd").mkdir(parents=True)
    (process / "fd" / "0").symlink_to("/dev/null")
    (process / "fd" / "7").symlink_to("socket:[8811]")
    (process / "comm").write_text("mindieservice_d\n")
    (process / "cmdline").write_text(
        "/usr/local/Ascend/mindie/bin/mindieservice_daemon\0--port\0" + "x" * 300
    )
    (process / "cgroup").write_text(f"0::/system.slice/docker-{CONTAINER_ID}.scope\n")
    return proc


def test_a_listener_in_an_ignored_container_leaves_its_port_free(fake_proc, stand_in, capsys):
    stand_in(
        "docker",
        f'#!/bin/sh\n[ "$4" = llm-serve ] && echo {CONTAINER_ID} && exit 0\n'
        'echo "Error: No such object: $4" >&2; exit 1\n',
    )
    counted = run_module(capsys, ports=[8080, 1025, 29500, 2024], proc_root=str(fake_proc))
    assert counted["taken"] == [8080, 1025, 29500, 2024]
    (holder,) = counted["ports"][0]["listeners"]
    assert holder["pid"] == 4242 and holder["process"] == "mindieservice_d"
    assert holder["cmdline"].startswith("/usr/local/Ascend/mindie/bin/mindieservice_daemon --port xxx")
    assert len(holder["cmdline"]) == CMDLINE_LIMIT and holder["container_id"] == CONTAINER_ID
    # Listeners of processes this scan cannot see are still listed, with no holder.
    assert counted["ports"][1]["listeners"] == [
        {"address": "::", "pid": None, "process": None, "cmdline": None, "container_id": None}
    ]
    ignored = run_module(
        capsys, ports=[8080, 29500], ignore_containers=["llm-serve", "gone"], proc_root=str(fake_proc)
    )
    assert ignored["ignored_container_ids"] == [CONTAINER_ID]
    assert ignored["taken"] == [29500]
    assert ignored["ports"][0] == {"port": 8080, "free": True, "listeners": [], "ignored": [holder]}
    # An id prefix (as `docker ps` shows it) matches where docker cannot resolve it.
    by_id = run_module(capsys, ports=[8080], ignore_containers=[CONTAINER_ID[:12]], proc_root=str(fake_proc))
    assert by_id["taken"] == []


def test_a_root_without_procfs_fails(tmp_path, capsys):
    result = run_module(capsys, ports=[80], proc_root=str(tmp_path))
    assert result["failed"] is True and "set proc_root to procfs" in result["msg"]
