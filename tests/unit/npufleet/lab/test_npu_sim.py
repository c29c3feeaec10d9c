"""The lab's npu-smi emulator: its output must read like the real tool's, through our own parsers."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.npu_smi import (
    NpuSmiError,
    parse_board,
    parse_info,
    parse_list,
    parse_mapping,
    parse_usages,
)

from npufleet.lab import npu_state
from tests.fixtures import load

EMULATOR = Path(__file__).resolve().parents[4] / "src/npufleet/lab/files/npu_sim.py"


@pytest.fixture
def emulate(tmp_path):
    def run(state: dict, *args: str) -> subprocess.CompletedProcess:
        state_file = tmp_path / "state.json"
        state_file.write_text(json.dumps(state))
        env = os.environ | {"NPU_SIM_STATE": str(state_file)}
        return subprocess.run(
            [sys.executable, str(EMULATOR), *args], env=env, capture_output=True, text=True, check=False
        )

    return run


def test_info_is_parsed_back_to_the_state(emulate):
    state = npu_state.with_process(npu_state.with_health(npu_state.initial_state("910B3", 8), 3, "Alarm"), 1)
    info = parse_info(emulate(state, "info").stdout)
    assert info["driver_version"] == info["tool_version"] == "23.0.6"
    assert info["count"] == 8
    assert [npu["health"] for npu in info["npus"]] == ["OK", "OK", "OK", "Alarm", "OK", "OK", "OK", "OK"]
    assert info["processes"] == [
        {"npu_id": 1, "chip_id": 0, "pid": 43210, "name": "python", "memory_mb": 20480}
    ]
    assert info["idle_npus"] == [0, 2, 3, 4, 5, 6, 7]
    assert info["npus"][1]["chips"][0]["hbm_used_mb"] == 3400 + 20480


def test_table_has_the_shape_of_a_real_910b3_capture(emulate):
    real = load("910b3_8chip_procs_python_24.1.rc2.1.txt")[0].splitlines()
    ours = emulate(npu_state.initial_state("910B3", 8), "info").stdout.splitlines()
    assert {len(line) for line in ours} == {len(line) for line in real} == {98}
    # Headers, column joints and borders are the same characters in the same places.
    assert ours[2:6] == real[2:6]
    # The data rows put their column bars where the real tool does.
    bars = [[i for i, ch in enumerate(line) if ch == "|"] for line in (ours[6], ours[7], real[6], real[7])]
    assert bars[0] == bars[1] == bars[2] == bars[3]


def test_listing_board_usages_and_mapping(emulate):
    state = npu_state.initial_state("910B4", 4, driver="24.1.0")
    assert parse_list(emulate(state, "info", "-l").stdout)["total_count"] == 4
    board = parse_board(emulate(state, "info", "-t", "board", "-i", "2").stdout)
    assert (board["npu_id"], board["software_version"], board["pcie_bus_info"]) == (
        2,
        "24.1.0",
        "0000:81:00.0",
    )
    usages = parse_usages(emulate(state, "info", "-t", "usages", "-i", "0").stdout)
    assert usages["chips"][0]["hbm_capacity_mb"] == 32768
    mapping = parse_mapping(emulate(state, "info", "-m").stdout)
    assert [row["chip_name"] for row in mapping[:2]] == ["Ascend 910B4", "Mcu"]


def test_fewer_npus_and_driver_error(emulate):
    state = npu_state.with_npu_count(npu_state.initial_state(), 6)
    assert parse_info(emulate(state, "info").stdout)["count"] == 6
    failing = emulate(npu_state.with_error(state, "dcmi module initialize failed. ret is -8005"), "info")
    assert failing.returncode != 0
    with pytest.raises(NpuSmiError, match="-8005"):
        parse_info(failing.stdout)


def test_unknown_npu_and_bad_usage(emulate):
    state = npu_state.initial_state("910B3", 2)
    assert emulate(state, "info", "-t", "board", "-i", "9").returncode == 1
    assert emulate(state, "status").returncode == 2


def test_sync_makes_device_nodes_and_driver_tree(emulate, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    dev, root = tmp_path / "dev", tmp_path / "root"
    dev.mkdir()
    (dev / "davinci7").write_text("stale")
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(npu_state.initial_state("910B3", 2)))
    env = os.environ | {"NPU_SIM_STATE": str(state_file), "NPU_SIM_DEV": str(dev), "NPU_SIM_ROOT": str(root)}
    subprocess.run([sys.executable, str(EMULATOR), "--sync"], env=env, check=True)
    assert sorted(p.name for p in dev.iterdir()) == [
        "davinci0",
        "davinci1",
        "davinci_manager",
        "devmm_svm",
        "hisi_hdc",
    ]
    assert (root / "usr/local/Ascend/driver/version.info").read_text().startswith("Version=23.0.6\n")
    # The driver's library is a real shared object: the loader opens it by name from its folder.
    library = root / "usr/local/Ascend/driver/lib64/driver/libascend_hal.so"
    assert library.read_bytes()[:4] == b"\x7fELF"
    ctypes.CDLL(str(library))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: npu_state.initial_state("H100"), "unknown chip"),
        (lambda: npu_state.initial_state("910B3", 0), "between 1 and 16"),
        (
            lambda: npu_state.with_health(npu_state.initial_state("910B3", 2), 5, "Alarm"),
            "NPU 5 does not exist",
        ),
        (lambda: npu_state.with_npu_count(npu_state.initial_state("910B3", 2), 3), "between 0 and 2"),
    ],
)
def test_bad_lab_input_is_refused_with_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_container_sees_only_its_mapped_npus(tmp_path):
    """In a container that maps /dev/davinci2 and /dev/davinci5, npu-smi lists NPUs 2 and 5 (host ids)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("davinci_manager", "davinci2", "davinci5"):
        (dev / name).touch()
    root = tmp_path / "root"
    state_copy = root / "usr/local/Ascend/driver/npufleet-lab-state.json"
    state_copy.parent.mkdir(parents=True)
    state_copy.write_text(json.dumps(npu_state.initial_state("910B3", 8)))
    env = os.environ | {
        "NPU_SIM_STATE": str(tmp_path / "absent.json"),
        "NPU_SIM_DEV": str(dev),
        "NPU_SIM_ROOT": str(root),
    }
    out = subprocess.run(
        [sys.executable, str(EMULATOR), "info"], env=env, capture_output=True, text=True, check=True
    ).stdout
    info = parse_info(out)
    assert [npu["id"] for npu in info["npus"]] == [2, 5]
