"""The lab's torch_npu stand-in (files/npufleet_lab_npu.py), run as torch runs it in the lab's training
image: in a fresh Python whose loader path is set at start. Its failures are the real loader's and
HCCL's lines, and the fault catalogue and the diagnosis read them as they read a server's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.plugin_utils import diagnosis

FILES = Path(__file__).resolve().parents[4] / "src/npufleet/lab/files"


def load_npu_sim():
    spec = importlib.util.spec_from_file_location("npu_sim", FILES / "npu_sim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def autoload(
    tmp_path: Path, device: bool, library_dir: Path | None, **env: str
) -> subprocess.CompletedProcess:
    """autoload() in a new Python (the loader reads LD_LIBRARY_PATH when a process starts)."""
    manager = tmp_path / "davinci_manager"
    if device:
        manager.touch()
    code = f"import npufleet_lab_npu as npu\nnpu.NPU_MANAGER_DEVICE = {str(manager)!r}\nnpu.autoload()\n"
    environment = {
        key: value for key, value in os.environ.items() if key not in ("LD_LIBRARY_PATH", "RANK_TABLE_FILE")
    }
    environment |= {"PYTHONPATH": str(FILES), "HOME": str(tmp_path / "home"), **env}
    if library_dir is not None:
        environment["LD_LIBRARY_PATH"] = str(library_dir)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=False
    )


@pytest.fixture
def driver(tmp_path):
    """A driver lib64/driver folder as the lab's nodes have it (npu_sim's sync makes the library)."""
    folder = tmp_path / "driver" / "lib64" / "driver"
    load_npu_sim()._driver_library(folder / "libascend_hal.so")
    assert (folder / "libascend_hal.so").is_file()
    return folder


def test_a_container_without_npus_is_left_alone(tmp_path):
    done = autoload(tmp_path, device=False, library_dir=None, RANK_TABLE_FILE="/nowhere.json")
    assert (done.returncode, done.stderr) == (0, "")


def test_without_the_driver_mount_the_loader_says_so_as_on_a_server(tmp_path):
    done = autoload(tmp_path, device=True, library_dir=tmp_path / "empty")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == "ImportError: libascend_hal.so: cannot open shared object file: No such file or directory"
    (match,) = diagnosis.scan_text(done.stderr, "rank1.log")
    assert match["id"] == "driver_not_mounted"


def test_with_the_driver_and_no_rank_table_it_starts(tmp_path, driver):
    assert autoload(tmp_path, device=True, library_dir=driver).returncode == 0


@pytest.mark.parametrize(
    ("content", "signature"),
    [(None, "hccl_rank_table_missing"), ("{not json", "hccl_rank_table_invalid")],
)
def test_a_rank_table_hccl_cannot_read_is_written_to_the_plog_in_canns_format(
    tmp_path, driver, content, signature
):
    table = tmp_path / "hccl.json"
    if content is not None:
        table.write_text(content)
    done = autoload(tmp_path, device=True, library_dir=driver, RANK_TABLE_FILE=str(table))
    assert done.returncode == 1
    assert "the plog has HCCL's line" in done.stderr
    assert "[ERROR] HCCL" not in done.stdout  # only with ASCEND_SLOG_PRINT_TO_STDOUT=1
    (plog,) = (tmp_path / "home/ascend/log/debug/plog").glob("plog-*.log")
    found = diagnosis.diagnose([plog])
    assert found["first"]["id"] == signature
    assert str(table) in found["first"]["line"]
    assert found["first"]["time"] is not None


def test_hccls_line_goes_to_stdout_too_when_asked_and_to_the_process_log_path(tmp_path, driver):
    logs = tmp_path / "process-logs"
    done = autoload(
        tmp_path, device=True, library_dir=driver, RANK_TABLE_FILE=str(tmp_path / "missing.json"),
        ASCEND_SLOG_PRINT_TO_STDOUT="1", ASCEND_PROCESS_LOG_PATH=str(logs),
    )  # fmt: skip
    assert done.returncode == 1
    assert "[HcomLoadRanktableFile]get file[" in done.stdout
    assert list((logs / "debug/plog").glob("plog-*.log"))
    assert not (tmp_path / "home/ascend").exists()
