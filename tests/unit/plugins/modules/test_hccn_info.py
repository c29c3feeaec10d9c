"""hccn_info run in-process against a stand-in hccn_tool that prints the recorded outputs of
tests/data/hccn_tool: every reading of two NPUs, a missing tool, a failing command, a ping that
hangs, and hccn.conf."""

from __future__ import annotations

import json
import time

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import hccn_info

from tests.fixtures import FIXTURE_ROOT

HCCN_TOOL = FIXTURE_ROOT / "hccn_tool"

# Arguments are ``-i N -READING -g [address A]``, as the module passes them. NPU 1 has its link down,
# no address and TLS on; NPU 7's speed query fails; 10.9.9.9 never answers.
STAND_IN = """#!/bin/sh
echo "$* LC_ALL=$LC_ALL" >> {calls}
out() {{ grep -v '^#' {data}/"$1" || true; }}
npu=$2
case "$npu $3 $6" in
  "1 -link "*) out link_g_down.txt ;;
  *" -link "*) out link_g_up.txt ;;
  *" -net_health "*) out net_health_g_success.txt ;;
  "1 -ip "*) out ip_g_unset.txt ;;
  *" -ip "*) out ip_g_configured.txt ;;
  *" -tls "*) out tls_g_mixed.txt | grep "^dev_id:$npu," ;;
  *" -lldp "*) out lldp_g_ifname.txt ;;
  *" -netdetect "*) out netdetect_g.txt ;;
  *" -gateway "*) out gateway_g.txt ;;
  "7 -speed "*) echo "Command execution failed, device 7 not ready"; echo "more detail"; exit 1 ;;
  *" -speed "*) out speed_g.txt ;;
  *" -ping 10.9.9.9") sleep 30 ;;
  *" -ping 192.168.100.103") echo "3 packets transmitted, 0 received, 100.00% packet loss" ;;
  *" -ping "*) out ping_g_semantics.txt ;;
  *) echo "unknown arguments: $*"; exit 2 ;;
esac
"""


@pytest.fixture
def hccn_tool(stand_in, tmp_path):
    calls = tmp_path / "calls.txt"
    bin_dir = stand_in("hccn_tool", STAND_IN.format(calls=calls, data=HCCN_TOOL))
    return bin_dir / "hccn_tool"


def run_module(capsys, **args) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        hccn_info.main()
    return json.loads(capsys.readouterr().out)


def calls(tmp_path) -> list[str]:
    return sorted((tmp_path / "calls.txt").read_text(encoding="utf-8").splitlines())


def test_all_readings_of_two_npus(hccn_tool, tmp_path, capsys):
    result = run_module(capsys, executable=str(hccn_tool), npus=[1, 0], conf_path=str(tmp_path / "none"))
    assert result["changed"] is False and "failed" not in result
    assert (result["executable"], result["tool_found"]) == (str(hccn_tool), True)
    assert (result["conf_path"], result["conf_present"]) == (str(tmp_path / "none"), False)
    assert result["pings"] == []
    down, up = result["npus"]
    assert {key: value for key, value in up.items() if key != "raw"} == {
        "id": 0,
        "link": "UP",
        "net_health": "Success",
        "ipaddr": "10.10.0.10",
        "netmask": "255.255.255.0",
        "tls_switch": 0,
        "tls_preconfigured": 1,
        "lldp_port": "400GE1/1/20:2",
        "netdetect": "11.12.165.1",
        "gateway": "11.12.165.1",
        "speed_mbps": 100000,
        "conf": None,
        "errors": [],
        "unparsed": {},
    }
    assert sorted(up["raw"]) == sorted(hccn_info.READINGS)
    assert up["raw"]["link"] == "link status: UP\n"
    assert (down["id"], down["link"], down["ipaddr"], down["netmask"]) == (1, "DOWN", None, None)
    assert (down["tls_switch"], down["errors"], down["raw"]["ip"]) == (1, [], "")
    # Every command as ``-i N -READING -g`` with LC_ALL=C, each reading of each NPU once.
    assert calls(tmp_path) == sorted(
        f"-i {npu} {' '.join(args)} LC_ALL=C" for npu in (0, 1) for args, _ in hccn_info.READINGS.values()
    )
    checked = run_module(
        capsys,
        executable=str(hccn_tool),
        npus=[1, 0],
        conf_path=str(tmp_path / "none"),
        _ansible_check_mode=True,
    )
    assert checked["npus"] == result["npus"]


def test_readings_not_asked_for_are_none(hccn_tool, tmp_path, capsys):
    result = run_module(capsys, executable=str(hccn_tool), npus=[0], readings=["link"], parallel=1)
    (npu,) = result["npus"]
    assert npu["link"] == "UP"
    assert npu["ipaddr"] is None and npu["speed_mbps"] is None and npu["tls_switch"] is None
    assert list(npu["raw"]) == ["link"]
    assert calls(tmp_path) == ["-i 0 -link -g LC_ALL=C"]


def test_a_missing_tool_is_reported_per_npu_without_failing(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "hccn_tool"
    result = run_module(
        capsys,
        executable=str(missing),
        npus=[0, 3],
        conf_path=str(tmp_path / "none"),
        ping=[{"npu": 0, "address": "192.168.100.102"}],
    )
    assert "failed" not in result and result["changed"] is False
    assert result["tool_found"] is False
    message = (
        f"hccn_tool not found at {missing} "
        "(it ships with the Ascend driver: install the driver, or set executable)"
    )
    assert [npu["id"] for npu in result["npus"]] == [0, 3]
    assert all(npu["errors"] == [message] and npu["link"] is None for npu in result["npus"])
    assert result["pings"][0]["reachable"] is False and result["pings"][0]["error"] == message


def test_a_failing_command_is_an_error_of_that_npu_only(hccn_tool, tmp_path, capsys):
    result = run_module(capsys, executable=str(hccn_tool), npus=[0, 7], readings=["link", "speed"])
    ok, failing = result["npus"]
    assert (ok["errors"], ok["speed_mbps"]) == ([], 100000)
    assert failing["errors"] == ["speed: exit 1: Command execution failed, device 7 not ready"]
    assert (failing["link"], failing["speed_mbps"]) == ("UP", None)
    assert failing["raw"]["speed"].startswith("Command execution failed")
    assert failing["unparsed"] == {}


def test_unrecognised_lines_are_returned_by_reading(stand_in, capsys):
    bin_dir = stand_in("hccn_tool", '#!/bin/sh\necho "link status: UP"\necho "extra: 1"\n')
    result = run_module(capsys, executable=str(bin_dir / "hccn_tool"), npus=[0], readings=["link", "ip"])
    (npu,) = result["npus"]
    assert npu["link"] == "UP"
    assert npu["unparsed"] == {"link": ["extra: 1"], "ip": ["link status: UP", "extra: 1"]}


def test_pings_run_together_and_a_hung_one_times_out(hccn_tool, capsys):
    started = time.monotonic()
    result = run_module(
        capsys,
        executable=str(hccn_tool),
        npus=[0],
        readings=["link"],
        ping=[
            {"npu": 0, "address": "10.9.9.9"},
            {"npu": 0, "address": "192.168.100.102"},
            {"npu": 1, "address": "192.168.100.103"},
        ],
        ping_timeout=2,
    )
    assert time.monotonic() - started < 6
    hung, reachable, lost = result["pings"]
    assert hung == {
        "npu": 0,
        "address": "10.9.9.9",
        "reachable": False,
        "loss_pct": None,
        "error": "timed out after 2 s",
        "output": "",
    }
    assert reachable == {
        "npu": 0,
        "address": "192.168.100.102",
        "reachable": True,
        "loss_pct": 0.0,
        "error": None,
        "output": "4 packets transmitted, 4 received, 0.00% packet loss\n",
    }
    assert (lost["npu"], lost["reachable"], lost["loss_pct"], lost["error"]) == (1, False, 100.0, None)


def test_hccn_conf_is_read_per_npu(hccn_tool, tmp_path, capsys):
    conf = tmp_path / "hccn.conf"
    conf.write_text((HCCN_TOOL / "hccn_conf.txt").read_text(encoding="utf-8"), encoding="utf-8")
    result = run_module(
        capsys, executable=str(hccn_tool), npus=[0, 3, 5], readings=["ip"], conf_path=str(conf)
    )
    assert result["conf_present"] is True
    first, fourth, absent = result["npus"]
    assert first["conf"] == {
        "address": "192.168.100.101",
        "netmask": "255.255.255.0",
        "netdetect": "192.168.100.1",
        "gateway": None,
    }
    assert fourth["conf"]["address"] == "192.168.103.101"
    assert absent["conf"] is None
    # The stand-in reports 10.10.0.10: the playbook can see the mismatch with hccn.conf.
    assert first["ipaddr"] != first["conf"]["address"]


def test_readings_choices_match_the_parsers():
    spec_readings = ["link", "net_health", "ip", "tls", "lldp", "netdetect", "gateway", "speed"]
    assert list(hccn_info.READINGS) == spec_readings
    assert list(hccn_info.FIELDS) == spec_readings


def test_a_bad_parallel_fails(hccn_tool, capsys):
    result = run_module(capsys, executable=str(hccn_tool), npus=[0], parallel=0)
    assert result["failed"] is True and "parallel must be at least 1" in result["msg"]
