"""ascend_version_info run in-process on copies of the recorded version files, with a stand-in docker
that runs the image probe with this machine's /bin/sh; and the probe itself, run for real."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.module_utils.ascend_versions import (
    IMAGE_PROBE,
    parse_image_report,
)
from ansible_collections.npufleet.ascend.plugins.modules import ascend_version_info

from tests.fixtures import FIXTURE_ROOT

VERSIONS = FIXTURE_ROOT / "ascend_versions"
TOOLKIT_ROOT = "/usr/local/Ascend/ascend-toolkit/latest"


@pytest.fixture
def node(tmp_path) -> dict:
    """The fixture files laid out as on a node (headers kept: the parser skips ``#`` lines)."""
    shutil.copy(VERSIONS / "driver_version_info.txt", tmp_path / "driver.info")
    shutil.copy(VERSIONS / "firmware_version_info.txt", tmp_path / "firmware.info")
    toolkit = tmp_path / "latest" / "aarch64-linux"
    toolkit.mkdir(parents=True)
    shutil.copy(VERSIONS / "toolkit_install_info.txt", toolkit / "ascend_toolkit_install.info")
    return {
        "driver_path": str(tmp_path / "driver.info"),
        "firmware_path": str(tmp_path / "firmware.info"),
        "toolkit_paths": [str(tmp_path / "latest" / "*" / "ascend_toolkit_install.info")],
    }


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        ascend_version_info.main()
    return json.loads(capsys.readouterr().out)


def without_invocation(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "invocation"}


def test_reads_the_node_and_finds_it_consistent_in_check_mode_too(node, capsys):
    result = run_module(capsys, **node)
    assert result["changed"] is False and result["problems"] == []
    assert result["version_files"]["toolkit"].endswith("latest/aarch64-linux/ascend_toolkit_install.info")
    assert result["host"]["driver"]["version"] == "23.0.7"
    assert result["host"]["firmware"]["compatible_drv"] == [["23.0.rc3", "23.0.rc3."], ["23.0.0", "23.0.0."]]
    assert result["host"]["toolkit"]["family"] == "V100R001C13"
    assert result["image"] is None
    checked = run_module(capsys, _ansible_check_mode=True, **node)
    assert without_invocation(checked) == without_invocation(result)


def test_the_manuals_pins_are_problems_not_failures(node, capsys):
    result = run_module(capsys, driver_versions=["23.0.6"], cann_versions=["cann_8.0.rc3"], **node)
    assert "failed" not in result
    assert [(p["component"], p["found"], p["expected"]) for p in result["problems"]] == [
        ("driver", "23.0.7", "one of 23.0.6"),
        ("cann", "7.0.T10", "one of 8.0.rc3"),
    ]


def test_a_missing_firmware_file_is_a_problem(node, tmp_path, capsys):
    node["firmware_path"] = str(tmp_path / "nowhere" / "version.info")
    result = run_module(capsys, **node)
    assert result["host"]["firmware"] is None and result["version_files"]["firmware"] is None
    (problem,) = result["problems"]
    assert problem["component"] == "firmware" and problem["found"] == "missing"


def test_no_toolkit_is_no_problem(node, tmp_path, capsys):
    node["toolkit_paths"] = [str(tmp_path / "none" / "*" / "ascend_toolkit_install.info")]
    result = run_module(capsys, **node)
    assert result["host"]["toolkit"] is None and result["problems"] == []


def test_an_empty_pin_is_bad_input(node, capsys):
    result = run_module(capsys, driver_versions=["23.0.6", " "], **node)
    assert result["failed"] is True
    assert result["msg"] == "driver_versions has an empty entry: remove it, or give a version"


DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_CALLS"
if [ "$1" = image ]; then
  for last; do :; done
  [ "$last" = missing:latest ] && { echo "Error: No such image: $last" >&2; exit 1; }
  echo sha256:0123
  exit 0
fi
for last; do :; done
exec /bin/sh -c "$last"
"""


@pytest.fixture
def docker(stand_in, tmp_path, monkeypatch):
    """A docker that knows every image but ``missing:latest`` and runs the probe on this machine."""
    monkeypatch.setenv("DOCKER_CALLS", str(tmp_path / "docker-calls.txt"))
    stand_in("docker", DOCKER)
    return tmp_path / "docker-calls.txt"


def test_an_image_is_read_with_the_probe(node, docker, capsys):
    result = run_module(capsys, image="pytorch:2.1.0", require_torch_npu=False, **node)
    assert result["image"]["name"] == "pytorch:2.1.0"
    assert set(result["image"]) == {"name", "python", "torch", "torch_npu", "cann"}
    calls = docker.read_text().splitlines()
    assert calls[0] == "image inspect --format {{.Id}} pytorch:2.1.0"
    assert calls[1].startswith("run --rm --network none --entrypoint /bin/sh pytorch:2.1.0 -c ")


def test_a_missing_image_is_named(node, docker, capsys):
    result = run_module(capsys, image="missing:latest", **node)
    assert result["failed"] is True
    assert result["msg"].startswith("image missing:latest is not on this node")


def probe(tmp_path, env=None, root=TOOLKIT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/sh", "-c", IMAGE_PROBE.replace(TOOLKIT_ROOT, root)],
        capture_output=True,
        text=True,
        check=False,
        env=env or {"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )


def test_the_probe_never_fails_here(tmp_path):
    # This machine's python3 may lack torch; whatever is missing reads as empty.
    done = probe(tmp_path)
    assert done.returncode == 0, done.stderr
    report = parse_image_report(done.stdout)
    assert set(report) == {"python", "torch", "torch_npu", "cann"}
    assert report["cann"] is None


def test_the_probe_without_any_python(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = probe(tmp_path, env={"PATH": str(empty)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "python=\ntorch=\ntorch_npu=\n"


def test_the_probe_reads_installed_packages_and_the_toolkit_file(tmp_path):
    site = tmp_path / "site"
    for name, version in (("torch", "2.1.0+cpu"), ("torch_npu", "2.1.0.post8")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    latest = tmp_path / "latest"
    (latest / "aarch64-linux").mkdir(parents=True)
    (latest / "aarch64-linux" / "ascend_toolkit_install.info").write_text(
        "# header\nversion=8.0.RC3\ninnerversion=V100R001C19SPC001B128\n\narch=aarch64"  # no final newline
    )
    path = str(shutil.which("python3")).rsplit("/", 1)[0]
    done = probe(tmp_path, env={"PATH": f"{path}:/usr/bin:/bin", "PYTHONPATH": str(site)}, root=str(latest))
    assert done.returncode == 0, done.stderr
    report = parse_image_report(done.stdout)
    assert report["torch"] == "2.1.0+cpu" and report["torch_npu"] == "2.1.0.post8"
    assert report["cann"] == {
        "version": "8.0.RC3",
        "innerversion": "V100R001C19SPC001B128",
        "family": "V100R001C19",
        "file": str(latest / "aarch64-linux" / "ascend_toolkit_install.info"),
    }
    assert "cann.arch=aarch64" in done.stdout
