"""The Ascend version files and compatibility rules against every recorded file in
tests/data/ascend_versions, with the values read off the files by hand."""

from __future__ import annotations

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.ascend_versions import (
    cann_family,
    host_facts,
    host_problems,
    image_problems,
    in_range,
    parse_image_report,
    parse_key_values,
    parse_ranges,
    version_key,
)

from tests.fixtures import FIXTURE_ROOT

VERSIONS = FIXTURE_ROOT / "ascend_versions"

# The manual's pins (shared/seed/tables/versions.yaml, lines 15 and 25): driver 23.0.6 with cann_8.0.rc3.
MANUAL_DRIVERS = ["23.0.6"]
MANUAL_CANN = ["cann_8.0.rc3"]


def content(name: str) -> str:
    """A fixture without its ``#`` header (file path, source, notes)."""
    lines = (VERSIONS / name).read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines) + "\n"


DRIVER = content("driver_version_info.txt")
FIRMWARE = content("firmware_version_info.txt")
TOOLKIT = content("toolkit_install_info.txt")


def fixture_facts() -> dict:
    return host_facts(DRIVER, FIRMWARE, TOOLKIT)


def test_driver_version_info():
    assert parse_key_values(DRIVER) == {
        "Version": "23.0.7",
        "ascendhal_version": "7.35.19",
        "Innerversion": "V100R001C15SPC012B220",
        "compatible_version": "[V100R001C29],[V100R001C30],[V100R001C13],[V100R001C15]",
        "compatible_version_fw": "[7.0.0,7.1.99]",
        "package_version": "23.0.7",
    }


def test_firmware_version_info():
    assert parse_key_values(FIRMWARE) == {
        "Version": "7.1.0.11.220",
        "firmware_version": "1.0",
        "package_version": "23.0.7",
        "compatible_version_drv": "[23.0.rc3,23.0.rc3.],[23.0.0,23.0.0.]",
    }


def test_toolkit_install_info():
    assert parse_key_values(TOOLKIT) == {
        "package_name": "Ascend-cann-toolkit",
        "version": "7.0.T10",
        "innerversion": "V100R001C13B222",
        "compatible_version": "[V100R001C29],[V100R001C30],[V100R001C13],[V100R003C10],[V100R003C11]",
        "arch": "aarch64",
        "os": "linux",
        "path": "/usr/local/Ascend/ascend-toolkit/7.0.T10/aarch64-linux",
    }


def test_ascend_install_info():
    assert parse_key_values(content("ascend_install_info.txt")) == {
        "UserName": "HwHiAiUser",
        "UserGroup": "HwHiAiUser",
        "Firmware_Install_Type": "full",
        "Firmware_Install_Path_Param": "/usr/local/Ascend",
        "Driver_Install_Type": "full",
        "Driver_Install_Path_Param": "/usr/local/Ascend",
        "Driver_Install_For_All": "yes",
    }


def test_headers_blank_lines_and_lines_without_equals():
    text = (VERSIONS / "driver_version_info.txt").read_text(encoding="utf-8") + "\nnot a pair\n  \nx = a=b\n"
    values = parse_key_values(text)
    assert values["Version"] == "23.0.7"
    assert values["_unparsed"] == ["not a pair"]
    assert values["x"] == "a=b"
    assert "_unparsed" not in parse_key_values(DRIVER)


def test_parse_ranges():
    assert parse_ranges("[7.0.0,7.1.99]") == [("7.0.0", "7.1.99")]
    assert parse_ranges("[23.0.rc3,23.0.rc3.],[23.0.0,23.0.0.]") == [
        ("23.0.rc3", "23.0.rc3."),
        ("23.0.0", "23.0.0."),
    ]
    assert parse_ranges("[V100R001C29],[V100R001C30]") == [
        ("V100R001C29", "V100R001C29"),
        ("V100R001C30",) * 2,
    ]
    assert parse_ranges("") == [] and parse_ranges(None) == [] and parse_ranges("[]") == []
    with pytest.raises(ValueError, match=r"\[1,2,3\] is not a range"):
        parse_ranges("[1,2,3]")


def test_host_facts_of_the_fixture_node():
    assert fixture_facts() == {
        "driver": {
            "version": "23.0.7",
            "innerversion": "V100R001C15SPC012B220",
            "compatible_fw": [["7.0.0", "7.1.99"]],
            "compatible": ["V100R001C29", "V100R001C30", "V100R001C13", "V100R001C15"],
        },
        "firmware": {
            "version": "7.1.0.11.220",
            "compatible_drv": [["23.0.rc3", "23.0.rc3."], ["23.0.0", "23.0.0."]],
        },
        "toolkit": {"version": "7.0.T10", "innerversion": "V100R001C13B222", "family": "V100R001C13"},
    }
    assert host_facts(None, None, None) == {"driver": None, "firmware": None, "toolkit": None}


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("23.0.rc3", "23.0.0"),  # rc before any number
        ("23.0.0", "23.0.7"),
        ("23.0.rc2", "23.0.rc3"),
        ("23.0.rc3", "23.0.rc3.1"),
        ("7.0.T10", "7.0.rc1"),  # a test build before rc
        ("7.0.T9", "7.0.T10"),  # numbers, not text
        ("7.0.T10", "7.0.0"),
        ("7.1.9", "7.1.10"),
        ("7.1.0.11.220", "7.1.99"),
        ("24.1.rc2", "24.1.rc2.1"),
    ],
)
def test_version_order(lower, higher):
    assert version_key(lower) < version_key(higher)


def test_versions_compare_case_insensitively():
    assert version_key("8.0.RC3") == version_key("8.0.rc3")
    assert version_key("7.0.t10") == version_key("7.0.T10")
    assert sorted(["23.0.7", "23.0.0", "23.0.RC3", "22.0.0"], key=version_key) == [
        "22.0.0",
        "23.0.RC3",
        "23.0.0",
        "23.0.7",
    ]


def test_in_range():
    # Bounds compare on as many components as they have.
    assert in_range("7.1.0.11.220", "7.0.0", "7.1.99")
    assert in_range("7.0.0.5", "7.0.0", "7.1.99")
    assert not in_range("6.4.0", "7.0.0", "7.1.99")
    assert not in_range("7.2.0", "7.0.0", "7.1.99")
    # A high ending in "." is open above within its release line.
    assert in_range("23.0.7", "23.0.0", "23.0.0.")
    assert in_range("23.0.0.1", "23.0.0", "23.0.0.")
    assert in_range("23.0.rc3.2", "23.0.rc3", "23.0.rc3.")
    assert not in_range("23.0.rc2", "23.0.rc3", "23.0.rc3.")
    assert not in_range("24.1.0", "23.0.0", "23.0.0.")
    assert not in_range("22.0.0", "23.0.0", "23.0.0.")
    # Singletons.
    assert in_range("8.0.RC3", "8.0.rc3", "8.0.rc3")


def test_cann_family():
    assert cann_family("V100R001C13B222") == "V100R001C13"
    assert cann_family("v100r001c19spc001b128") == "V100R001C19"
    assert cann_family("7.0.T10") is None and cann_family(None) is None


def test_the_fixture_node_is_consistent_without_pins():
    # Firmware 7.1.0.11.220 in [7.0.0,7.1.99]; driver 23.0.7 in [23.0.0,23.0.0.]; V100R001C13 listed.
    assert host_problems(fixture_facts()) == []
    assert host_problems(fixture_facts(), [], []) == []


def test_the_manuals_pins_flag_the_fixture_driver_and_cann():
    problems = host_problems(fixture_facts(), MANUAL_DRIVERS, MANUAL_CANN)
    assert [(p["component"], p["found"], p["expected"]) for p in problems] == [
        ("driver", "23.0.7", "one of 23.0.6"),
        ("cann", "7.0.T10", "one of 8.0.rc3"),
    ]
    assert "23.0.7" in problems[0]["message"] and "23.0.6" in problems[0]["message"]
    assert "7.0.T10" in problems[1]["message"] and "8.0.rc3" in problems[1]["message"]


def test_pins_match_as_versions():
    facts = host_facts(DRIVER, FIRMWARE, TOOLKIT.replace("7.0.T10", "8.0.RC3"))
    assert host_problems(facts, ["23.0.7"], ["cann_8.0.rc3"]) == []
    assert host_problems(facts, ["23.0.6", "23.0.7"], ["8.0.RC3"]) == []


def test_a_firmware_outside_the_drivers_range():
    facts = host_facts(DRIVER, FIRMWARE.replace("Version=7.1.0.11.220", "Version=6.4.0"), TOOLKIT)
    assert host_problems(facts) == [
        {
            "component": "firmware",
            "found": "6.4.0",
            "expected": "a firmware in [7.0.0,7.1.99] (driver 23.0.7's compatible_version_fw)",
            "message": "Firmware 6.4.0 does not fit driver 23.0.7, which takes a firmware in [7.0.0,7.1.99]: "
            "install the firmware from the driver's own package, or a driver whose compatible_version_fw "
            "holds 6.4.0.",
        }
    ]


def test_a_driver_outside_the_firmwares_ranges():
    facts = host_facts(DRIVER.replace("Version=23.0.7", "Version=22.0.0"), FIRMWARE, TOOLKIT)
    (problem,) = host_problems(facts)
    assert problem["component"] == "driver" and problem["found"] == "22.0.0"
    assert problem["expected"] == (
        "a driver in [23.0.rc3,23.0.rc3.] or [23.0.0,23.0.0.] "
        "(firmware 7.1.0.11.220's compatible_version_drv)"
    )
    assert "Driver 22.0.0 does not fit firmware 7.1.0.11.220" in problem["message"]


def test_a_toolkit_family_the_driver_does_not_list():
    facts = host_facts(DRIVER, FIRMWARE, TOOLKIT.replace("V100R001C13B222", "V100R003C10B001"))
    (problem,) = host_problems(facts)
    assert problem["component"] == "cann" and problem["found"] == "7.0.T10"
    assert "V100R003C10" in problem["message"] and "23.0.7" in problem["message"]


def test_missing_files():
    problems = host_problems(host_facts(None, None, None), MANUAL_DRIVERS, MANUAL_CANN)
    assert [(p["component"], p["found"]) for p in problems] == [
        ("driver", "missing"),
        ("firmware", "missing"),
    ]
    # No toolkit is no problem: a node may leave CANN to its images.
    assert host_problems(host_facts(DRIVER, FIRMWARE, None)) == []
    (problem,) = host_problems(host_facts(DRIVER, None, TOOLKIT))
    assert problem["component"] == "firmware" and problem["found"] == "missing"


def image(torch="2.1.0", torch_npu="2.1.0.post8", cann=None) -> dict:
    facts = {"python": "3.9.21", "torch": torch, "torch_npu": torch_npu, "cann": None}
    if cann:
        facts["cann"] = {
            "version": cann,
            "innerversion": "V100R001C13B100",
            "family": "V100R001C13",
            "file": None,
        }
    return facts


def test_torch_and_torch_npu_that_fit():
    assert image_problems(image(), fixture_facts()) == []
    assert image_problems(image("2.1.0+cpu"), {}, torch_versions=["2.1.0", "2.3.1"]) == []
    assert image_problems(image("2.3.1", "2.3.1"), {}) == []


def test_torch_npu_built_for_another_torch():
    (problem,) = image_problems(image("2.3.1", "2.1.0.post8"), fixture_facts())
    assert problem["component"] == "torch_npu" and problem["found"] == "2.1.0.post8"
    assert problem["expected"] == "a torch_npu 2.3.1.* (built for torch 2.3.1)"
    assert "torch_npu 2.1.0.post8" in problem["message"] and "torch 2.3.1" in problem["message"]


def test_no_torch_npu_is_a_problem_only_when_required():
    (problem,) = image_problems(image(torch_npu=None), {})
    assert problem["component"] == "torch_npu" and problem["found"] == "missing"
    assert "torch 2.1.0" in problem["message"]
    assert image_problems(image(torch_npu=None), {}, require_torch_npu=False) == []
    assert image_problems(image(torch=None, torch_npu=None), {}, require_torch_npu=False) == []


def test_torch_pins():
    (problem,) = image_problems(image("2.2.0", "2.2.0"), {}, torch_versions=["2.1.0", "2.3.1"])
    assert problem["component"] == "torch" and problem["expected"] == "one of 2.1.0, 2.3.1"
    (problem,) = image_problems(image(None, None), {}, torch_versions=["2.1.0"], require_torch_npu=False)
    assert problem["component"] == "torch" and problem["found"] == "missing"


def test_image_cann_against_the_node_toolkit_and_pins():
    host = host_facts(DRIVER, FIRMWARE, TOOLKIT.replace("7.0.T10", "8.0.RC2"))
    (problem,) = image_problems(image(cann="8.0.RC3"), host)
    assert problem["component"] == "cann" and problem["found"] == "8.0.RC3"
    assert problem["expected"] == "CANN 8.0.RC2 (the node's toolkit)"
    assert "8.0.RC3" in problem["message"] and "8.0.RC2" in problem["message"]
    assert image_problems(image(cann="8.0.rc2"), host, cann_versions=["cann_8.0.rc2"]) == []
    (pinned,) = image_problems(
        image(cann="8.0.RC3"), host_facts(DRIVER, FIRMWARE, None), cann_versions=["8.0.rc2"]
    )
    assert pinned["component"] == "cann" and pinned["expected"] == "one of 8.0.rc2"


def test_image_cann_family_against_the_driver():
    facts = image(cann="8.0.RC3")
    facts["cann"]["family"] = "V100R001C19"
    (problem,) = image_problems(facts, host_facts(DRIVER, FIRMWARE, None))
    assert problem["component"] == "cann" and "V100R001C19" in problem["message"]
    assert "23.0.7" in problem["message"]


def test_parse_image_report():
    report = """python=3.9.21
torch=2.1.0
torch_npu=2.1.0.post8
cann_file=/usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info
cann.package_name=Ascend-cann-toolkit
cann.version=8.0.RC3
cann.innerversion=V100R001C19SPC001B128
cann.arch=aarch64
"""
    assert parse_image_report(report) == {
        "python": "3.9.21",
        "torch": "2.1.0",
        "torch_npu": "2.1.0.post8",
        "cann": {
            "version": "8.0.RC3",
            "innerversion": "V100R001C19SPC001B128",
            "family": "V100R001C19",
            "file": "/usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info",
        },
    }
    assert parse_image_report("python=\ntorch=\ntorch_npu=\n") == {
        "python": None,
        "torch": None,
        "torch_npu": None,
        "cann": None,
    }
