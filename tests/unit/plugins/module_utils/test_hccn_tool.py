"""The hccn_tool and hccn.conf parsers against every recorded output in tests/data/hccn_tool.

One test per fixture file, each with the values read off the capture by hand, then odd input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils import hccn_tool
from ansible_collections.npufleet.ascend.plugins.module_utils.hccn_tool import (
    READINGS,
    parse_gateway,
    parse_hccn_conf,
    parse_ip,
    parse_link,
    parse_link_stat,
    parse_lldp,
    parse_net_health,
    parse_netdetect,
    parse_ping,
    parse_speed,
    parse_stat,
    parse_tls,
)

from tests.fixtures import FIXTURE_ROOT

HCCN_TOOL = FIXTURE_ROOT / "hccn_tool"

# Every parser of the module, so that a new one is run against odd input too.
PARSERS = [getattr(hccn_tool, name) for name in sorted(dir(hccn_tool)) if name.startswith("parse_")]


def output(name: str) -> str:
    """The fixture's text without its leading ``#`` header (command, source, notes)."""
    lines = (HCCN_TOOL / name).read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines) + "\n" if lines else ""


def test_every_fixture_has_a_test():
    source = Path(__file__).read_text(encoding="utf-8")
    untested = [path.name for path in HCCN_TOOL.glob("*.txt") if f'"{path.name}"' not in source]
    assert untested == []


def test_readings_name_their_command_and_parser():
    assert list(READINGS) == ["link", "net_health", "ip", "tls", "lldp", "netdetect", "gateway", "speed"]
    assert READINGS["link"] == (["-link", "-g"], parse_link)
    assert READINGS["speed"] == (["-speed", "-g"], parse_speed)
    assert all(args[-1] == "-g" and parser in PARSERS for args, parser in READINGS.values())


def test_link_up():
    assert parse_link(output("link_g_up.txt")) == {"link": "UP", "unparsed": []}


def test_link_down():
    assert parse_link(output("link_g_down.txt")) == {"link": "DOWN", "unparsed": []}


def test_net_health_success():
    assert parse_net_health(output("net_health_g_success.txt")) == {"net_health": "Success", "unparsed": []}


def test_net_health_fault():
    assert parse_net_health(output("net_health_g_fault.txt")) == {"net_health": "Fault", "unparsed": []}


def test_net_health_init():
    assert parse_net_health(output("net_health_g_init.txt")) == {"net_health": "Init", "unparsed": []}


def test_ip_configured():
    assert parse_ip(output("ip_g_configured.txt")) == {
        "ipaddr": "10.10.0.10",
        "netmask": "255.255.255.0",
        "unparsed": [],
    }


def test_ip_unset_is_empty_output():
    assert output("ip_g_unset.txt") == ""
    assert parse_ip(output("ip_g_unset.txt")) == {"ipaddr": None, "netmask": None, "unparsed": []}


def test_tls_differs_between_npus():
    assert parse_tls(output("tls_g_mixed.txt")) == {
        "tls": [
            {"dev_id": 0, "switch": 0, "preconfigured": 1, "alarm_days": 60},
            {"dev_id": 1, "switch": 1, "preconfigured": 1, "alarm_days": 60},
        ],
        "unparsed": [],
    }


def test_tls_single_npu_and_a_bare_switch_line():
    one = output("tls_g_mixed.txt").splitlines()[1]
    assert parse_tls(one)["tls"] == [{"dev_id": 1, "switch": 1, "preconfigured": 1, "alarm_days": 60}]
    assert parse_tls("tls switch[1]\n") == {
        "tls": [{"dev_id": None, "switch": 1, "preconfigured": None, "alarm_days": None}],
        "unparsed": [],
    }
    # Flags on their own lines complete the entry before them; other lines stay visible.
    split = parse_tls("dev_id:3, tls switch[0]\ntls preconfigured[0]\ncert expired: no\n")
    assert split["tls"] == [{"dev_id": 3, "switch": 0, "preconfigured": 0, "alarm_days": None}]
    assert split["unparsed"] == ["cert expired: no"]


def test_lldp_with_switch_port():
    assert parse_lldp(output("lldp_g_ifname.txt")) == {
        "chassis_mac": "00:00:00:00:00:00",
        "chassis_id": "00:00:00:00:00:00",
        "port_ifname": "400GE1/1/20:2",
        "port_id": "400GE1/1/20:2",
        "port_description": None,
        "system_name": None,
        "system_description": (
            "Versatile Routing Platform Software\nVRP (R) software, Version 8.211 (DX511 V200R021C10SPC600)"
        ),
        "max_frame_size": 9216,
        "other_tlvs": {},
        "unparsed": [],
    }


def test_lldp_other_tlvs_and_no_answer():
    text = "Chassis ID TLV\n\tMAC: aa:bb\nSystem Name TLV\n\tLEAF-01\nManagement Address TLV\n\t10.0.0.1\n"
    parsed = parse_lldp(text)
    assert parsed["system_name"] == "LEAF-01"
    assert parsed["port_ifname"] is None
    assert parsed["other_tlvs"] == {"Management Address TLV": ["10.0.0.1"]}
    assert parsed["unparsed"] == []
    assert parse_lldp("")["port_ifname"] is None


def test_netdetect():
    assert parse_netdetect(output("netdetect_g.txt")) == {"netdetect": "11.12.165.1", "unparsed": []}


def test_gateway():
    assert parse_gateway(output("gateway_g.txt")) == {
        "gateway": "11.12.165.1",
        "netmask": "255.255.255.0",
        "unparsed": [],
    }


def test_speed():
    assert parse_speed(output("speed_g.txt")) == {"speed_mbps": 100000, "unparsed": []}


def test_speed_unknown_reads_as_none():
    assert parse_speed("Speed: Unknown!\n") == {"speed_mbps": None, "unparsed": []}


def test_ping_reachable():
    assert parse_ping(output("ping_g_semantics.txt")) == {
        "transmitted": 4,
        "received": 4,
        "loss_pct": 0.0,
        "reachable": True,
        "unparsed": [],
    }


def test_ping_loss_rules():
    lost = parse_ping(
        "device 0 PING 192.168.100.102\n3 packets transmitted, 0 received, 100.00% packet loss\n"
    )
    assert (lost["loss_pct"], lost["reachable"], lost["unparsed"]) == (100.0, False, [])
    partial = parse_ping("4 packets transmitted, 1 received, 75.00% packet loss\n")
    assert (partial["received"], partial["reachable"]) == (1, True)
    assert parse_ping("")["reachable"] is None
    assert parse_ping("ping failed\n") == {
        "transmitted": None,
        "received": None,
        "loss_pct": None,
        "reachable": None,
        "unparsed": ["ping failed"],
    }


def test_link_stat_flapping():
    assert parse_link_stat(output("link_stat_g.txt")) == {
        "dev_id": 0,
        "current_time": "Wed Aug 2 03:09:26 2022",
        "link_up_count": 2,
        "changes": [
            {"time": "Tue Aug 1 14:43:40 2022", "state": "UP"},
            {"time": "Tue Aug 1 14:43:40 2022", "state": "DOWN"},
            {"time": "Tue Aug 1 14:43:26 2022", "state": "UP"},
        ],
        "unparsed": [],
    }


def test_link_stat_devid_prefix():
    text = output("link_stat_g.txt").replace("[device 0]", "[devid 5]")
    parsed = parse_link_stat(text)
    assert (parsed["dev_id"], parsed["link_up_count"], len(parsed["changes"])) == (5, 2, 3)
    assert parsed["unparsed"] == []


def test_stat_counters():
    parsed = parse_stat(output("stat_g.txt"))
    assert parsed["unparsed"] == []
    assert len(parsed["counters"]) == 15
    assert parsed["counters"]["roce_rx_err_pkt_num"] == 0
    assert parsed["counters"]["nic_tx_all_pkg_num"] == 122404
    assert parsed["counters"]["nic_rx_all_oct_num"] == 482237805


def test_hccn_conf():
    parsed = parse_hccn_conf(output("hccn_conf.txt"))
    assert parsed["unparsed"] == []
    assert sorted(parsed["npus"]) == [0, 1, 2, 3]
    assert parsed["npus"][0] == {
        "address": "192.168.100.101",
        "netmask": "255.255.255.0",
        "netdetect": "192.168.100.1",
        "gateway": None,
        "other": {},
    }
    assert parsed["npus"][3]["address"] == "192.168.103.101"
    assert parsed["npus"][3]["netdetect"] == "192.168.103.1"


def test_hccn_conf_other_keys_comments_and_garbage():
    text = "# written by hand\n\naddress_10 = 10.0.0.10\ngateway_10=10.0.0.1\ntls_10=1\nbond=yes\n"
    parsed = parse_hccn_conf(text)
    assert parsed["npus"] == {
        10: {
            "address": "10.0.0.10",
            "netmask": None,
            "netdetect": None,
            "gateway": "10.0.0.1",
            "other": {"tls": "1"},
        }
    }
    assert parsed["unparsed"] == ["bond=yes"]


GARBAGE = "\x00\x1b[31mweird\nhccn_tool: command not found\n:::\n[device x] ???\n\n  \n"


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
def test_garbage_lands_in_unparsed(parser):
    parsed = parser(GARBAGE)
    assert parsed["unparsed"] == [
        "\x00\x1b[31mweird",
        "hccn_tool: command not found",
        ":::",
        "[device x] ???",
    ]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("text", ["", None, "\n\n", "link status:\nnet health status:\nSpeed: fast\n"])
def test_odd_input_never_raises(parser, text):
    parsed = parser(text)
    assert isinstance(parsed, dict) and isinstance(parsed["unparsed"], list)


def test_empty_values_read_as_none():
    assert parse_link("link status:\n")["link"] is None
    assert parse_net_health("net health status:\n")["net_health"] is None
    assert parse_ip("ipaddr:\nnetmask:\n")["ipaddr"] is None
    assert parse_speed("Speed: fast\n") == {"speed_mbps": None, "unparsed": ["Speed: fast"]}
