"""The host path rule (filter host_paths) with the list that npufleet.ascend.fleet_defaults ships."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter.host_paths import (
    host_path_problems,
    volume_host_paths,
)

DEFAULTS = Path(__file__).resolve().parents[4] / "roles/fleet_defaults/defaults/main.yml"
REFUSED = yaml.safe_load(DEFAULTS.read_text())["npufleet_refused_host_paths"]
NAME = "npu_container_host_work_dir"
WHY = "(a system folder, or one directly below /, that no container may own or write)"
FIX = "use a folder of its own, such as /home/ma-user/ws or /data/ws"
RELATIVE = (
    "is not an absolute path (Docker would take it for a named volume, not a folder of the node): give the"
    " full path on the node, such as /home/ma-user/ws"
)
NOT_A_PATH = "is not a path: give the full path of a folder on the node, such as /home/ma-user/ws"
DOTDOT = "has a '..' part: write the path without it, so the check sees the folder used"


def problems(path, resolved=None):
    return host_path_problems({NAME: path}, REFUSED, resolved)


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("/", "/"),
        ("//", "/"),
        ("/usr", "/*"),
        ("//usr", "/*"),
        ("/usr/", "/*"),
        ("/usr/local", "/usr/**"),
        ("/usr/local/", "/usr/**"),
        ("/usr//local", "/usr/**"),
        ("/usr/./local", "/usr/**"),
        ("/usr/local/x", "/usr/**"),
        ("/usr/local/Ascend/driver", "/usr/**"),
        ("/etc", "/*"),
        ("/etc/x", "/etc/**"),
        ("/boot/efi", "/boot/**"),
        ("/proc/1", "/proc/**"),
        ("/sys/fs/cgroup", "/sys/**"),
        ("/dev/shm/ws", "/dev/**"),
        ("/bin/x", "/bin/**"),
        ("/sbin/x", "/sbin/**"),
        ("/lib/x", "/lib/**"),
        ("/lib32/x", "/lib32/**"),
        ("/lib64/x", "/lib64/**"),
        ("/libx32/x", "/libx32/**"),
        ("/root/ws", "/root/**"),
        ("/run/docker", "/run/**"),
        ("/var/run/docker", "/var/run/**"),
        ("/tmp/ws", "/tmp/**"),
        ("/var/tmp/ws", "/var/tmp/**"),
        ("/var", "/*"),
        ("/var/lib", "/var/*"),
        ("/var/log", "/var/*"),
        ("/var/lib/docker/volumes/x", "/var/lib/docker/**"),
        ("/var/lib/containerd/x", "/var/lib/containerd/**"),
        ("/var/log/npu/ws", "/var/log/**"),
        ("/var/spool/cron/crontabs", "/var/spool/**"),
        ("/opt", "/*"),
        ("/opt/cni/bin", "/opt/cni/**"),
        ("/srv", "/*"),
        ("/home", "/*"),
        ("/home/", "/*"),
        ("/data", "/*"),
        ("/mnt", "/*"),
    ],
)
def test_system_folders_are_refused_naming_the_pattern(path, pattern):
    assert problems(path) == [f"{NAME} {path} matches {pattern} in npufleet_refused_host_paths {WHY}: {FIX}"]


@pytest.mark.parametrize(
    "path",
    [
        "/home/ma-user/ws",
        "/home/ma-user/ws/",
        "/home/ma-user",
        "/home/ma-user//ws",
        "/data/ws",
        "/data/model/DeepSeek-V3-w8a8",
        "/data/nfs/benchmark",
        "/mnt/sfs_turbo",
        "/mnt/sfs_turbo/ws",
        "/cache/ws",
        "/opt/llm/ws",
        "/srv/npufleet/ws",
        "/var/lib/npufleet/ws",
        "/var/cache/npufleet",
        "/usrdata/ws",
        "/etcetera/ws",
    ],
)
def test_folders_of_their_own_are_allowed(path):
    assert problems(path) == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("ws", f"{NAME} ws {RELATIVE}"),
        ("home/ma-user/ws", f"{NAME} home/ma-user/ws {RELATIVE}"),
        ("~/ws", f"{NAME} ~/ws {RELATIVE}"),
        ("/data/../usr", f"{NAME} /data/../usr {DOTDOT}"),
        ("/home/ma-user/ws/..", f"{NAME} /home/ma-user/ws/.. {DOTDOT}"),
        (
            "/data/ws:/etc",
            f"{NAME} /data/ws:/etc has a ':', which Docker's volumes read as a separator: rename the folder",
        ),
        ("", f"{NAME} '' {NOT_A_PATH}"),
        (None, f"{NAME} None {NOT_A_PATH}"),
    ],
)
def test_paths_that_do_not_say_which_folder_are_refused(path, message):
    assert problems(path) == [message]


def test_a_symlink_into_a_system_folder_is_refused_by_its_real_path():
    resolved = [
        {"path": "/usr/local/Ascend/driver", "realpath": "/usr/local/Ascend/driver"},
        {"path": "/data/ws", "realpath": "/usr/local/ws"},
    ]
    assert problems("/data/ws", resolved) == [
        f"{NAME} /data/ws leads through a symlink to /usr/local/ws, which matches /usr/** in"
        f" npufleet_refused_host_paths {WHY}: {FIX}, or remove the symlink"
    ]
    # A symlink to a folder of its own is fine, and so is a path the node did not resolve.
    assert problems("/data/ws", [{"path": "/data/ws", "realpath": "/mnt/sfs_turbo/ws"}]) == []
    assert problems("/data/ws", [{"path": "/data/other", "realpath": "/etc"}]) == []


def test_each_path_is_named_by_its_variable():
    paths = {"a": "/home/ma-user/ws", "b[0]": "/etc", "b[1]": "/data/w"}
    assert host_path_problems(paths, REFUSED) == [
        f"b[0] /etc matches /* in npufleet_refused_host_paths {WHY}: {FIX}"
    ]


def test_patterns_take_globs_and_a_list_of_ones_own():
    assert host_path_problems({"x": "/data/ws"}, ["/data/**"]) != []
    assert host_path_problems({"x": "/data/ws"}, ["/d*/ws"]) != []
    assert host_path_problems({"x": "/data/ws/a"}, ["/d*/ws"]) == []
    assert host_path_problems({"x": "/"}, []) == []
    with pytest.raises(AnsibleFilterError, match="'usr' is not an absolute path"):
        host_path_problems({"x": "/data/ws"}, ["usr"])
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        host_path_problems({"x": "/data/ws"}, "/usr")


def test_volume_host_paths_names_each_volume():
    volumes = ["/data/model:/data/model:ro", "/etc:/host-etc", "ws:/ws", 7]
    assert volume_host_paths(volumes, "npu_container_extra_volumes") == {
        "npu_container_extra_volumes[0]": "/data/model",
        "npu_container_extra_volumes[1]": "/etc",
        "npu_container_extra_volumes[2]": "ws",
        "npu_container_extra_volumes[3]": 7,
    }
    assert volume_host_paths([], "v") == {}


def test_a_folder_named_after_a_refused_one_is_not_refused_again():
    link = [{"path": "/data/ws", "realpath": "/usr/local/ws"},
            {"path": "/data/ws/npufleet/logs", "realpath": "/usr/local/ws/npufleet/logs"}]  # fmt: skip
    paths = {"serve_host_work_dir": "/data/ws", "serve_host_work_dir/npufleet/logs": "/data/ws/npufleet/logs"}
    (problem,) = host_path_problems(paths, REFUSED, link)
    assert problem.startswith("serve_host_work_dir /data/ws leads through a symlink to /usr/local/ws")
    # Named after nothing refused, a folder's own problem is still named.
    own_link = [*link, {"path": "/data/ws/x", "realpath": "/usr/local/ws/x"}]
    assert len(host_path_problems({"a": "/data/ws", "b": "/data/ws/x"}, REFUSED, own_link)) == 2
