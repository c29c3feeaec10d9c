"""What the preflight role leaves on a lab node: nothing changed, everything it read still there."""

import json


def test_npu_smi_is_where_the_manual_mounts_it(host):
    assert host.file("/usr/local/sbin/npu-smi").exists
    # Only there, as on the manual's servers: a role that looks in bin would fail here too.
    assert not host.file("/usr/local/bin/npu-smi").exists
    assert "Total Count                    : 8" in host.check_output("npu-smi info -l")


def test_every_npu_has_its_device_node(host):
    # testinfra's File has no test for character devices: ask stat for the file type.
    names = [f"/dev/davinci{index}" for index in range(8)] + [
        "/dev/davinci_manager",
        "/dev/devmm_svm",
        "/dev/hisi_hdc",
    ]
    types = host.check_output("stat -c %F " + " ".join(names)).splitlines()
    assert types == ["character special file"] * len(names)


def test_driver_tree_reports_the_pinned_version(host):
    assert host.file("/usr/local/Ascend/driver/version.info").contains("^Version=23.0.6$")
    assert host.file("/etc/ascend_install.info").exists


def test_preflight_started_nothing_and_left_the_npus_idle(host):
    assert host.check_output("docker ps --quiet") == ""
    state = json.loads(host.file("/var/lib/npufleet-lab/state.json").content_string)
    assert all(npu["processes"] == [] and npu["health"] == "OK" for npu in state["npus"])
