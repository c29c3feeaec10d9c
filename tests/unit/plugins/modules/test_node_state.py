"""node_state run in-process: real paths and device files made in a folder, and a stand-in docker on PATH
that answers with the recorded `docker inspect` of a lab node."""

from __future__ import annotations

import json
import os
import socket

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import node_state

from tests.fixtures import FIXTURE_ROOT

INSPECT = FIXTURE_ROOT / "docker_inspect" / "lab-node-two-containers.json"


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        node_state.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def dev_root(tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("davinci0", "davinci1", "davinci10", "davinci_manager", "devmm_svm"):
        (dev / name).touch()
    return dev


@pytest.fixture
def docker(stand_in):
    ids = " ".join(item["Id"] for item in json.loads(INSPECT.read_text()))
    return stand_in(
        "docker",
        f"""#!/bin/sh
case "$1" in
  ps) for id in {ids}; do echo "$id"; done ;;
  inspect) cat {INSPECT} ;;
  info) echo '{{"DockerRootDir": "{INSPECT.parent}"}}' ;;
  image) [ "$5" = present:1 ] || {{ echo "Error: No such image: $5" >&2; exit 1; }}
         echo sha256:0115dcf06e76 ;;
esac
""",
    )


def test_devices_paths_and_free_space(capsys, dev_root, tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    result = run_module(
        capsys,
        dev_root=str(dev_root),
        paths=[
            str(dev_root / "davinci_manager"),
            str(tmp_path),
            str(tmp_path / "missing"),
            str(tmp_path / "dangling"),
        ],
        free_space=[str(tmp_path / "not" / "made" / "yet")],
    )
    assert result["changed"] is False
    assert result["npu_devices"] == [0, 1, 10]
    manager, folder, missing, dangling = result["paths"]
    assert (manager["exists"], manager["type"], manager["uid"]) == (True, "file", os.getuid())
    assert (folder["exists"], folder["type"]) == (True, "directory")
    assert (missing["exists"], missing["type"], missing["uid"]) == (False, None, None)
    assert (dangling["exists"], dangling["type"], dangling["realpath"]) == (
        False,
        "link",
        str(tmp_path / "nowhere"),
    )
    (space,) = result["free_space"]
    assert space["measured_at"] == str(tmp_path)
    statvfs = os.statvfs(tmp_path)
    assert space["free_gib"] == pytest.approx(statvfs.f_bavail * statvfs.f_frsize / 1024**3, abs=0.2)
    assert "containers" not in result and "docker_error" not in result


def test_containers_images_and_docker_root(capsys, dev_root, docker):
    result = run_module(
        capsys, dev_root=str(dev_root), containers=True, docker_root=True, images=["present:1", "absent:2"]
    )
    assert result["docker_error"] is None
    assert [item["name"] for item in result["containers"]] == ["npufleet-workload", "npufleet-inference"]
    assert result["images"] == {"present:1": "sha256:0115dcf06e76", "absent:2": None}
    assert result["docker_root"] == str(INSPECT.parent)
    assert result["docker_root_free"]["measured_at"] == str(INSPECT.parent)


def test_no_docker_is_reported_not_raised(capsys, dev_root, stand_in, monkeypatch):
    monkeypatch.setenv("PATH", str(stand_in("true", "#!/bin/sh\n")))
    result = run_module(capsys, dev_root=str(dev_root), containers=True, docker_root=True, images=["x:1"])
    assert result["docker_error"] == "docker is not installed (no docker on PATH)"
    assert result["images"] == {"x:1": None}
    assert result["docker_root"] is None
    assert result["docker_root_free"]["path"] == "/var/lib/docker"


def test_ports_and_addresses(capsys, dev_root):
    """A port this test listens on is taken by this process; loopback binds, a documentation address
    (RFC 5737) that no interface has does not (nothing is sent to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_module(
            capsys,
            dev_root=str(dev_root),
            devices=False,
            ports=[port],
            addresses=["127.0.0.1", "198.51.100.7"],
        )
        checked = run_module(
            capsys, dev_root=str(dev_root), devices=False, ports=[port], _ansible_check_mode=True
        )
    assert result["changed"] is False and "npu_devices" not in result
    ((taken,),) = [[entry for entry in result["ports"] if entry["port"] == port]]
    assert taken["free"] is False and taken["listeners"][0]["pid"] == os.getpid()
    assert checked["ports"] == result["ports"]
    loopback, documentation = result["addresses"]
    assert loopback == {"address": "127.0.0.1", "bindable": True, "error": None}
    assert documentation["address"] == "198.51.100.7" and documentation["bindable"] is False
    assert "assign requested address" in documentation["error"]


def test_a_bad_port_is_named(capsys):
    result = run_module(capsys, ports=[8000, 0])
    assert result["failed"] is True
    assert result["msg"] == "ports must be 1..65535, got 0: fix the ports option"
