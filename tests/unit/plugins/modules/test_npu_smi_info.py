"""npu_smi_info run in-process against a stand-in npu-smi that prints recorded outputs: the same data
in check mode, no change ever, and argv lists with LC_ALL=C."""

from __future__ import annotations

import json
import sys

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import npu_smi_info

from tests.fixtures import NPU_SMI

INFO = NPU_SMI / "910b3_8chip_procs_python_24.1.rc2.1.txt"
LISTING = NPU_SMI / "910b_8card_info_l_telegraf.txt"


@pytest.fixture
def npu_smi(tmp_path):
    script = tmp_path / "npu-smi"
    script.write_text(
        f"""#!{sys.executable}
import json, os, sys
with open({str(tmp_path / "calls.jsonl")!r}, "a") as log:
    log.write(json.dumps([sys.argv[1:], os.environ.get("LC_ALL")]) + "\\n")
path = {str(LISTING)!r} if sys.argv[1:] == ["info", "-l"] else {str(INFO)!r}
sys.stdout.write(open(path, encoding="utf-8").read())
""",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        npu_smi_info.main()
    return json.loads(capsys.readouterr().out)


def test_reads_npus_and_reports_no_change_in_check_mode_too(npu_smi, tmp_path, capsys):
    result = run_module(capsys, executable=str(npu_smi))
    assert result["changed"] is False
    assert result["executable"] == str(npu_smi)
    assert result["count"] == 8
    assert len(result["npus"]) == 8 and result["unhealthy"] == []
    checked = run_module(capsys, executable=str(npu_smi), _ansible_check_mode=True)
    assert {key: value for key, value in checked.items() if key != "invocation"} == {
        key: value for key, value in result.items() if key != "invocation"
    }
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls[:2] == [[["info"], "C"], [["info", "-l"], "C"]]


def test_a_missing_executable_is_named(tmp_path, capsys):
    result = run_module(capsys, executable=str(tmp_path / "nowhere" / "npu-smi"))
    assert result["failed"] is True
    assert "is missing or not executable: fix the executable option" in result["msg"]
