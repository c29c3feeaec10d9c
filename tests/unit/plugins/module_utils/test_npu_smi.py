"""The npu-smi parsers against every recorded output in tests/data/npu-smi.

One test per fixture file, each with the values read off the capture by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.npu_smi import (
    NpuSmiError,
    check_error,
    health_rank,
    parse_board,
    parse_common,
    parse_flat,
    parse_info,
    parse_list,
    parse_mapping,
    parse_usages,
)

from tests.fixtures import NPU_SMI, load, strip_annotations


def one(name: str) -> str:
    examples = load(name)
    assert len(examples) == 1, f"{name} holds {len(examples)} examples"
    return examples[0]


def chip(info: dict, npu_id: int, chip_id: int = 0) -> dict:
    npu = next(n for n in info["npus"] if n["id"] == npu_id)
    return next(c for c in npu["chips"] if c["chip_id"] == chip_id)


def test_every_fixture_has_a_test():
    source = Path(__file__).read_text(encoding="utf-8")
    untested = [path.name for path in NPU_SMI.glob("*.txt") if f'"{path.name}"' not in source]
    assert untested == []


# ---- npu-smi info: tables -------------------------------------------------------------------


def test_310b1_orangepi_aipro_1chip():
    info = parse_info(one("310b1_orangepi_aipro_1chip_23.0.rc3.txt"))
    assert info["tool_version"] == info["driver_version"] == "23.0.rc3"
    assert info["count"] == 1
    assert chip(info, 0) | {} == {
        "chip_id": 0,
        "phy_id": 0,
        "bus_id": None,
        "health": "OK",
        "power_w": 8.9,
        "temp_c": 54,
        "hugepages_used": 15,
        "hugepages_total": 15,
        "aicore_pct": 0,
        "memory_used_mb": 4974,
        "memory_total_mb": 11577,
        "hbm_used_mb": None,
        "hbm_total_mb": None,
    }


def test_310p3_1card_vm_hami():
    info = parse_info(one("310p3_1card_vm_22.0.4_hami_doc.txt"))
    assert info["driver_version"] == "22.0.4"
    assert [n["id"] for n in info["npus"]] == [7]
    assert info["npus"][0]["power_w"] is None  # printed NA on 310P
    assert chip(info, 7)["bus_id"] == "0000:00:07.0"
    assert (chip(info, 7)["memory_used_mb"], chip(info, 7)["memory_total_mb"]) == (1805, 21527)


def test_310p3_2card_no_header_no_procsection():
    info = parse_info(one("310p3_2card_no_header_no_procsection_doc.txt"))
    assert info["tool_version"] is None
    assert [n["name"] for n in info["npus"]] == ["310P3", "310P3"]
    assert chip(info, 1)["phy_id"] == 1
    assert chip(info, 1)["power_w"] == 15.4
    assert info["processes"] == [] and info["idle_npus"] == []


def test_310p3_duo_1card_2chip_device_table_only():
    info = parse_info(one("310p3_duo_1card_2chip_25.2.0_device_table_only.txt"))
    assert info["count"] == 1 and info["chip_count"] == 2
    npu = info["npus"][0]
    assert npu["id"] == 2 and npu["temp_c"] == 45
    assert [c["memory_total_mb"] for c in npu["chips"]] == [44280, 43693]
    assert {c["bus_id"] for c in npu["chips"]} == {"0000:01:00.0"}


def test_310p_and_a3_info_l_ascend_deployer():
    first, second = load("310p_and_a3_info_l_ascend_deployer_docstring.txt")
    assert parse_list(first) == {
        "total_count": 1,
        "npus": [
            {"npu_id": 8, "product_name": "IT21PDDA01", "serial_number": "033VNY10MB000071", "chip_count": 1}
        ],
    }
    assert parse_list(second) == {"total_count": 8, "npus": [{"npu_id": 0, "chip_count": 2}]}


def test_910_process_table_tab_in_header_fragment():
    info = parse_info(one("910_process_table_TAB_in_header_FRAGMENT.txt"))
    assert info["npus"] == []
    assert len(info["processes"]) == 8
    assert {p["npu_id"] for p in info["processes"]} == {0}
    assert sorted(p["memory_mb"] for p in info["processes"])[-1] == 4184
    assert info["processes"][6] == {
        "npu_id": 0,
        "chip_id": 0,
        "pid": 47881,
        "name": "python",
        "memory_mb": 4184,
    }


def test_910a_2chip_narrow_layout_paddle_docker():
    info = parse_info(one("910a_2chip_narrow_layout_21.0.4_paddle_docker.txt"))
    assert info["count"] == 2
    assert chip(info, 0)["hugepages_used"] == 15
    assert (chip(info, 1)["memory_used_mb"], chip(info, 1)["memory_total_mb"]) == (1274, 15171)
    assert (chip(info, 1)["hbm_used_mb"], chip(info, 1)["hbm_total_mb"]) == (1, 32768)


def test_910a_4chip_health_warning():
    info = parse_info(one("910a_4chip_health_WARNING_23.0.rc1.b070.txt"))
    assert [n["health"] for n in info["npus"]] == ["Warning"] * 4
    assert chip(info, 2)["hbm_used_mb"] == 30750  # 5-digit value glued to the slash: '30750/ 32768'
    assert info["idle_npus"] == [0]


def test_910a_8chip_oldest_layout():
    info = parse_info(one("910a_8chip_oldest_layout_npu-smi_1.8.21_v20.2.2.txt"))
    assert (info["tool_version"], info["driver_version"]) == ("1.8.21", "20.2.2.spc001")
    assert info["count"] == 8
    assert chip(info, 3)["hugepages_used"] is None  # no Hugepages column in this layout
    assert (chip(info, 3)["memory_used_mb"], chip(info, 3)["hbm_total_mb"]) == (3168, 32768)
    assert [n["temp_c"] for n in info["npus"]] == [36, 31, 31, 37, 35, 29, 29, 36]


def test_910a_and_310p_info_t_usages_gpustack():
    first, second = (parse_usages(text) for text in load("910a_and_310p_info_t_usages_gpustack_examples.txt"))
    assert (first["npu_id"], first["chip_count"]) == (0, 1)
    assert first["chips"][0]["hbm_capacity_mb"] == 32768
    assert first["chips"][0]["ctrlcpu_usage_rate_pct"] == 9
    assert first["chips"][0]["chip_id"] == 0
    assert "hbm_capacity_mb" not in second["chips"][0]
    assert second["chips"][0]["dvpp_vdec_usage_rate_pct"] == 0
    assert second["chips"][0]["ddr_bandwidth_usage_rate_pct"] == 51


def test_910a_info_t_board_i_doc():
    board = parse_board(one("910a_info_t_board_i_doc_23.0.5.txt"))
    assert board["software_version"] == "23.0.5"
    assert board["firmware_version"] == "7.1.0.7.220"
    assert board["pci_vendor_id"] == "0x19e5"
    assert board["class_id"] is None
    assert board["chip_count"] == 1


def test_910a_mindcluster_faultdiag_health_ecc_board_common():
    chip_health, npu_health, ecc, chip_board, usages, common = load(
        "910a_mindcluster_faultdiag_doc_t_health_ecc_board_common.txt"
    )
    assert parse_flat(chip_health) == {"health_status": "OK", "error_code": None, "error_information": None}
    assert parse_flat(npu_health)["health"] == "OK"
    ecc_data = parse_usages(ecc)
    assert ecc_data["chips"][0]["hbm_double_bit_error_count"] == 0
    assert len(ecc_data["chips"][0]) == 13  # 12 counters and the chip id
    assert parse_board(chip_board)["vdie_id"] == "42C711D4 20B03704 4A10C8D4 14CC040A D2102003"
    assert parse_usages(usages)["chips"][0]["ddr_capacity_mb"] == 13553
    common_data = parse_common(common)
    assert common_data["chips"] == [
        {
            "chip_id": 0,
            "memory_usage_rate_pct": 6,
            "hbm_usage_rate_pct": 0,
            "aicore_usage_rate_pct": 0,
            "aicore_freq_mhz": 900,
            "aicore_curfreq_mhz": 900,
            "aicore_count": 30,
            "temperature_c": 41,
            "npu_real_time_power_w": "71.7",
        }
    ]


def test_910b1_8chip_busy_no_proc_section():
    info = parse_info(one("910b1_8chip_busy_no_proc_section_23.0.rc2.2.txt"))
    assert info["count"] == 8 and info["processes"] == []
    assert chip(info, 0)["aicore_pct"] == 55
    assert chip(info, 0)["hbm_used_mb"] == 65099
    assert {n["name"] for n in info["npus"]} == {"910B1"}


def test_910b1_8chip_one_proc_emptyname():
    info = parse_info(one("910b1_8chip_one_proc_emptyname_rest_noproc_24.1.0.txt"))
    assert info["processes"] == [{"npu_id": 0, "chip_id": 0, "pid": 641248, "name": "", "memory_mb": 113}]
    assert info["idle_npus"] == [1, 2, 3, 4, 5, 6, 7]
    assert chip(info, 0)["hbm_used_mb"] == 3437


def test_910b2c_16chip_x86_ray_procs():
    info = parse_info(one("910b2c_16chip_x86_ray_procs_24.1.rc1.txt"))
    assert info["count"] == 16
    assert [n["id"] for n in info["npus"]] == list(range(16))  # two-digit ids shift the name column
    assert info["npus"][10]["name"] == "910B2C"
    assert len(info["processes"]) == 16
    assert info["processes"][0]["name"] == "vllm"
    assert info["processes"][-1] == {
        "npu_id": 15,
        "chip_id": 0,
        "pid": 418714,
        "name": "rayNPURayWork",
        "memory_mb": 56063,
    }


def test_910b3_1chip_no_procs():
    info = parse_info(one("910b3_1chip_no_procs_23.0.1.txt"))
    assert [n["id"] for n in info["npus"]] == [4]
    assert info["idle_npus"] == [4]
    assert (chip(info, 4)["power_w"], chip(info, 4)["hbm_used_mb"]) == (93.6, 3161)


def test_910b3_8chip_procs_python():
    info = parse_info(one("910b3_8chip_procs_python_24.1.rc2.1.txt"))
    assert info["driver_version"] == "24.1.rc2.1"
    assert info["count"] == info["chip_count"] == 8
    assert chip(info, 0) == {
        "chip_id": 0,
        "phy_id": None,
        "bus_id": "0000:C1:00.0",
        "health": "OK",
        "power_w": 121.6,
        "temp_c": 40,
        "hugepages_used": 0,
        "hugepages_total": 0,
        "aicore_pct": 10,
        "memory_used_mb": 0,
        "memory_total_mb": 0,
        "hbm_used_mb": 57895,
        "hbm_total_mb": 65536,
    }
    assert [p["pid"] for p in info["processes"]] == [13128, 13604, 13606, 13608, 13610, 13612, 13614, 13616]
    assert info["processes"][4]["memory_mb"] == 54819


def test_910b3_info_m_tab_prefix():
    mapping = parse_mapping(one("910b3_info_m_tab_prefix.txt"))
    assert mapping == [
        {"npu_id": 0, "chip_id": 0, "chip_logic_id": 0, "chip_name": "Ascend 910B3"},
        {"npu_id": 0, "chip_id": 1, "chip_logic_id": None, "chip_name": "Mcu"},
        {"npu_id": 1, "chip_id": 0, "chip_logic_id": 1, "chip_name": "Ascend 910B3"},
        {"npu_id": 1, "chip_id": 1, "chip_logic_id": None, "chip_name": "Mcu"},
    ]


def test_910b4_8card_info_m_mapping():
    mapping = parse_mapping(one("910b4_8card_info_m_mapping.txt"))
    assert len(mapping) == 16
    npus = [row for row in mapping if row["chip_name"] != "Mcu"]
    assert [row["chip_logic_id"] for row in npus] == list(range(8))
    assert {row["chip_name"] for row in npus} == {"Ascend 910B4"}


def test_910b_8card_info_l_telegraf():
    listing = parse_list(one("910b_8card_info_l_telegraf.txt"))
    assert listing["total_count"] == 8
    assert listing["npus"] == [{"npu_id": n, "chip_count": 1} for n in range(8)]


def test_910b_info_t_board_i0_it21hmdc():
    board = parse_board(one("910b_info_t_board_i0_IT21HMDC_Bin5_25.5.1.txt"))
    assert board["product_name"] == "IT21HMDC_Bin5"
    assert board["model"] is None
    assert board["software_version"] == "25.5.1"
    assert board["pcie_bus_info"] == "0000:C1:00.0"
    assert board["pci_device_id"] == "0xD802"
    assert len(board) == 19


def test_910b_info_t_common_gpustack():
    first, second = (parse_common(text) for text in load("910b_info_t_common_gpustack_examples.txt"))
    assert first["chips"][0]["aicore_count"] == 32
    assert first["chips"][0]["npu_real_time_power_w"] == "69.0"
    assert [c.get("chip_id", c.get("chip_name")) for c in second["chips"]] == [0, "mcu"]
    assert second["chips"][1]["npu_real_time_power_w"] == "13.4"


def test_910b_info_t_power_i0():
    power = parse_usages(one("910b_info_t_power_i0_25.5.1.txt"))
    assert power["chips"] == [{"npu_real_time_power_w": "103.5", "chip_id": 0}]


def test_910b_info_t_temp_i0():
    temp = parse_usages(one("910b_info_t_temp_i0_25.5.1.txt"))
    assert temp["chips"] == [
        {"npu_temperature_c": 39, "chip_id": 0},
        {"lm75a_te_c": 36, "lm75b_te_c": 36, "chip_name": "MCU"},
    ]


def test_910c_a3_26_0_rc2_wide_layout_fragments():
    devices, tail = load("910c_a3_26.0.rc2_wide_layout_FRAGMENTS.txt")
    info = parse_info(devices)
    assert info["driver_version"] == "26.0.rc2"
    assert info["count"] == 1 and info["chip_count"] == 2
    assert info["npus"][0]["power_w"] == 162.6
    assert chip(info, 0, 1)["power_w"] is None  # '-' on the second die
    assert chip(info, 0, 1)["hbm_used_mb"] == 2874
    rest = parse_info(tail)
    assert chip(rest, 7, 1)["phy_id"] == 15
    assert rest["processes"] == [
        {
            "npu_id": 0,
            "chip_id": 0,
            "pid": 632268,
            "name": "python3.1",
            "memory_mb": 197,
            "container_pid": None,
        }
    ]
    assert rest["idle_npus"] == [1]


def test_910c_a3_ascend910_16die_procs_emptyname():
    info = parse_info(one("910c_a3_ascend910_16die_procs_emptyname_25.2.0.txt"))
    assert info["count"] == 8 and info["chip_count"] == 16
    assert [c["phy_id"] for n in info["npus"] for c in n["chips"]] == list(range(16))
    assert {p["name"] for p in info["processes"]} == {""}
    assert len(info["processes"]) == 23
    assert info["processes"][-1] == {"npu_id": 7, "chip_id": 1, "pid": 944268, "name": "", "memory_mb": 58782}


def test_910premiuma_8chip_procs_hugepages():
    info = parse_info(one("910premiuma_8chip_procs_hugepages_23.0.rc2.txt"))
    assert info["npus"][0]["name"] == "910PremiumA"
    assert (chip(info, 0)["hugepages_used"], chip(info, 0)["memory_used_mb"]) == (34, 1413)
    assert len(info["processes"]) == 8
    assert info["processes"][0] == {
        "npu_id": 0,
        "chip_id": 0,
        "pid": 5139,
        "name": "python",
        "memory_mb": 31913,
    }


def test_950_doc_example_info_m_slot_id():
    assert parse_mapping(one("950_doc_example_info_m_slot_id.txt")) == [
        {"npu_id": 0, "slot_id": 0, "chip_id": 0, "chip_phy_id": 0, "chip_name": "xxx"}
    ]


def test_950_doc_example_info_with_proc_header():
    info = parse_info(one("950_doc_example_info_with_proc_header.txt"))
    assert info["npus"][0]["name"] == "xxx"
    assert (chip(info, 0)["hbm_used_mb"], chip(info, 0)["hbm_total_mb"]) == (4439, 86016)
    assert info["idle_npus"] == [0] and info["processes"] == []


def test_950pr_1chip_new_layout_excerpt():
    info = parse_info(one("950pr_1chip_new_layout_25.7.rc1.6_excerpt.txt"))
    assert info["driver_version"] == "25.7.rc1.6"
    assert info["npus"][0]["name"] == "Ascend950PR"
    assert chip(info, 0)["bus_id"] == "0000:61:00.0"
    assert chip(info, 0)["hbm_total_mb"] == 131072


def test_950pr_2card_health_alarm_with_proc():
    info = parse_info(one("950pr_2card_health_ALARM_with_proc_PARTLY_EDITED.txt"))
    assert [(n["id"], n["health"]) for n in info["npus"]] == [(0, "Alarm"), (3, "OK")]
    assert info["processes"] == [{"npu_id": 0, "chip_id": 0, "pid": 123, "name": "python3", "memory_mb": 100}]
    assert info["idle_npus"] == [3]


def test_950pr_info_l_tab_indent_product_serial():
    assert parse_list(one("950pr_info_l_tab_indent_product_serial.txt")) == {
        "total_count": 2,
        "npus": [
            {"npu_id": 0, "product_name": "A310-50-C00MM304A1", "serial_number": "serial-0"},
            {"npu_id": 3, "product_name": "A310-50-C00MM304A1", "serial_number": "serial-3"},
        ],
    }


def test_950pr_info_t_board_i0_annotated():
    board = parse_board(strip_annotations(one("950pr_info_t_board_i0_25.7.rc1.6_annotated.txt")))
    assert board["chip_name"] == "Ascend950PR"
    assert board["main_board_id"] == "0x68(1P)"
    assert board["software_version"] == "25.7.rc1.6"
    assert board["npu_name"] == 9579


def test_a5_pcie_card_info_l():
    assert parse_list(one("a5_pcie_card_info_l_huawei_doc.txt")) == {
        "total_count": 1,
        "npus": [{"npu_id": 0, "product_name": "A5 PCIe Card", "serial_number": "IT23HMDA0502FAA"}],
    }


def test_error_outputs_dcmi_init_failed():
    for text in load("error_outputs_dcmi_init_failed.txt"):
        with pytest.raises(NpuSmiError, match="ret is -8020") as caught:
            parse_info(text)
        assert caught.value.code == "-8020"
        assert "another container" in str(caught.value)


# ---- tolerance and errors beyond the captures -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("dcmi module initialize failed. ret is -8005\n", "-8005"),
        ("npu get board type failed. ret is -9005\n", "-9005"),
        ("There is no NPU card on this server.\n", None),
    ],
)
def test_documented_failure_messages_raise(text, code):
    with pytest.raises(NpuSmiError) as caught:
        check_error(text)
    assert caught.value.code == code


def test_text_without_a_table_is_rejected():
    with pytest.raises(ValueError, match="no npu-smi table"):
        parse_info("bash: npu-smi: command not found\n")


def test_tabs_instead_of_spaces_in_table_and_key_values():
    text = one("910b3_8chip_procs_python_24.1.rc2.1.txt").replace("    ", "\t")
    assert parse_info(text)["processes"][7]["pid"] == 13616
    listing = one("910b_8card_info_l_telegraf.txt").replace("        ", "\t").replace("   ", "\t")
    assert parse_list(listing)["total_count"] == 8


def test_narrower_or_wider_table_gives_the_same_result():
    text = one("910b3_8chip_procs_python_24.1.rc2.1.txt")
    squeezed = "\n".join(" ".join(line.split()) for line in text.splitlines())
    assert parse_info(squeezed) == parse_info(text)


def test_memory_in_bytes_is_converted_to_mb():
    text = (
        "| NPU     Chip         | Process id    | Process name             | Process memory(B)       |\n"
        "| 1       0            | 77            | python                   | 3145728                 |\n"
    )
    assert parse_info(text)["processes"][0]["memory_mb"] == 3.0


def test_health_rank_orders_worst_last():
    assert sorted(["Alarm", "OK", "Bogus", "Warning"], key=health_rank) == ["OK", "Warning", "Alarm", "Bogus"]
