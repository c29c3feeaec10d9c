"""The image is in each node's engine and the NPU container runs with the mapped devices."""

import json


def test_image_is_in_the_engine(host):
    images = host.check_output("docker images --format '{{.Repository}}:{{.Tag}}'").splitlines()
    assert any("/npufleet/workload:lab-" in image for image in images)


def test_fanout_left_nothing_behind(host):
    assert not host.file("/var/tmp/npufleet-image-fanout").exists
    units = "'npufleet-image-fanout-*' 'npufleet-image-relay-*'"
    assert host.check_output(f"systemctl list-units --all --no-legend {units}") == ""


def test_container_runs_with_four_npus_and_the_driver(host):
    state = json.loads(host.check_output("docker inspect npufleet-workload"))[0]
    assert state["State"]["Running"]
    devices = sorted(d["PathOnHost"] for d in state["HostConfig"]["Devices"])
    assert devices == ["/dev/davinci0", "/dev/davinci1", "/dev/davinci2", "/dev/davinci3",
                       "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]  # fmt: skip
    assert state["HostConfig"]["ShmSize"] == 2**30


def test_npu_smi_inside_lists_the_mapped_npus(host):
    output = host.check_output("docker exec npufleet-workload npu-smi info -l")
    assert "Total Count                    : 4" in output


def test_work_dir_the_role_made_belongs_to_ma_user(host):
    # The lab's nodes have /home/ma-user but no work dir: the role made it, and only it is ma-user's.
    work_dir = host.file("/home/ma-user/ws")
    assert (work_dir.uid, work_dir.gid) == (1000, 1000)
    assert (host.file("/home/ma-user").uid, host.file("/home/ma-user").gid) == (0, 0)
    assert host.check_output("docker exec npufleet-workload stat -c %U /workspace") == "ma-user"
