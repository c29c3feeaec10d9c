#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_state
short_description: Read in one call what the checks before a change need to know about a node
description:
  - Reads, in one module run, the state that the roles' checks used to read with a task each (a
    loop of M(ansible.builtin.stat), M(ansible.builtin.find), C(docker ps), C(docker inspect),
    C(docker image inspect), C(docker info), C(df)). That is the NPU device files, the paths asked
    about, the running containers with the devices they hold, the images asked about, Docker's data
    root and the free space under paths, what listens on the ports asked about, and whether the
    node has the addresses asked about.
  - The validation pass before any change (playbooks/validate.yml) reads in one run of it what every
    stage's checks on the node need.
  - One run is one round trip to the node; on a re-run with nothing to change, round trips are most
    of the time a play takes.
  - Read-only. Every part is read the same way in check mode.
version_added: "0.2.0"
author:
  - npufleet contributors
options:
  paths:
    description:
      - Paths to describe (exists, type, owner, the path with symlinks resolved). A path that does not
        exist is reported with C(exists=false).
    type: list
    elements: path
    default: []
  devices:
    description:
      - Whether to list the NPU device files C(/dev/davinciN) (not C(davinci_manager)).
    type: bool
    default: true
  containers:
    description:
      - Whether to list the running containers with their names, labels and the host devices they
        hold (C(docker ps) and one C(docker inspect) for all of them).
    type: bool
    default: false
  images:
    description:
      - Image references to look up in the node's Docker engine; each is reported with its id, or
        null when the engine does not have it.
    type: list
    elements: str
    default: []
  docker_root:
    description:
      - Whether to read Docker's data root and cgroup driver (C(docker info)) and the free space under
        the data root (RV(docker_root_free)). Where Docker is not running or not installed,
        RV(docker_root) is null, RV(docker_error) says why, and the free space is that of
        C(/var/lib/docker), where an installed Docker keeps its data by default.
    type: bool
    default: false
  free_space:
    description:
      - Paths whose file system's free space to measure. A path that does not exist yet is measured
        at its nearest existing parent, where it would be created.
    type: list
    elements: path
    default: []
  ports:
    description:
      - TCP ports to tell whether something already listens on, and what (read from procfs, as
        M(npufleet.ascend.listen_ports) reads them).
    type: list
    elements: int
    default: []
  ignore_containers:
    description:
      - Docker container names or ids whose listeners on O(ports) do not count (npufleet's own, on a
        re-run), as M(npufleet.ascend.listen_ports) takes them.
    type: list
    elements: str
    default: []
  addresses:
    description:
      - Addresses (or host names) to try binding a TCP socket to, at a port the kernel picks, closed
        at once. An address the node does not have cannot be bound. A server in a container
        with the host's network (the NPU container) can listen on the same addresses.
    type: list
    elements: str
    default: []
  dev_root:
    description:
      - Where the device files are; for tests.
    type: path
    default: /dev
  proc_root:
    description:
      - Where procfs is mounted, for O(ports); for tests.
    type: path
    default: /proc
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: It changes nothing.
"""

EXAMPLES = r"""
- name: Read the devices, driver paths and containers before starting the NPU container
  npufleet.ascend.node_state:
    paths: [/usr/local/Ascend/driver, /usr/local/dcmi, /usr/local/sbin/npu-smi]
    containers: true
    images: [swr.cn-southwest-2.myhuaweicloud.com/ei_mindspore/mindie:1.0.0]
  register: node

- name: Refuse when a driver path is missing
  ansible.builtin.assert:
    that: node.paths | selectattr('exists', 'false') | list | length == 0
"""

RETURN = r"""
npu_devices:
  description: The numbers N of the C(/dev/davinciN) device files, sorted.
  returned: when O(devices) is true
  type: list
  elements: int
  sample: [0, 1, 2, 3, 4, 5, 6, 7]
paths:
  description: One entry per path in O(paths), in the order asked.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path as asked.
      type: str
    exists:
      description: Whether something is there (a symlink counts when its target exists).
      type: bool
    type:
      description: C(directory), C(file), C(char), C(block), C(link) (a dangling symlink), C(other), or null.
      type: str
    uid:
      description: The owner's uid, or null.
      type: int
    gid:
      description: The group's gid, or null.
      type: int
    realpath:
      description: The path with every symlink resolved (as far as it exists).
      type: str
  sample:
    - {path: /usr/local/Ascend/driver, exists: true, type: directory, uid: 0, gid: 0,
       realpath: /usr/local/Ascend/driver}
containers:
  description: The running containers.
  returned: when O(containers) is true and Docker answered
  type: list
  elements: dict
  contains:
    id:
      description: The full container id.
      type: str
    name:
      description: The name, without Docker's leading slash.
      type: str
    devices:
      description: The host paths of the devices mapped into it.
      type: list
      elements: str
    labels:
      description: Its labels.
      type: dict
images:
  description: The id of each image in O(images), or null where the engine does not have it.
  returned: always
  type: dict
  sample: {"swr.example.com/llm/llamafactory:1.0": "sha256:0115dcf06e76..."}
docker_root:
  description: Docker's data root, or null when Docker did not answer.
  returned: when O(docker_root) is true
  type: str
  sample: /var/lib/docker
docker_cgroup_driver:
  description: Docker's cgroup driver (cgroupfs or systemd), or null when Docker did not answer.
  returned: when O(docker_root) is true
  type: str
  sample: cgroupfs
docker_root_free:
  description: The free space under Docker's data root, in the form of one RV(free_space) entry.
  returned: when O(docker_root) is true
  type: dict
  sample: {path: /var/lib/docker, measured_at: /var/lib, free_gib: 812.4}
docker_error:
  description: Why Docker could not be read (not installed, not running), or null.
  returned: when O(containers), O(images) or O(docker_root) is set
  type: str
ports:
  description:
    - One entry per port in O(ports), in the order asked, as M(npufleet.ascend.listen_ports) returns it.
  returned: when O(ports) is not empty
  type: list
  elements: dict
  sample:
    - {port: 8000, free: false, ignored: [],
       listeners: [{address: 0.0.0.0, pid: 4242, process: python3, cmdline: python3 -m http.server 8000,
                    container_id: null}]}
addresses:
  description: One entry per address in O(addresses), in the order asked.
  returned: when O(addresses) is not empty
  type: list
  elements: dict
  contains:
    address:
      description: The address as asked.
      type: str
    bindable:
      description: Whether a TCP socket could be bound to it on the node.
      type: bool
    error:
      description: Why it could not (the resolver's or the kernel's message), or null.
      type: str
  sample:
    - {address: 10.0.0.5, bindable: false, error: "[Errno 99] Cannot assign requested address"}
free_space:
  description: One entry per path in O(free_space), in the order asked.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path as asked.
      type: str
    measured_at:
      description: The existing path that was measured (the path or its nearest existing parent).
      type: str
    free_gib:
      description: Free space for unprivileged users, in GiB, to one decimal.
      type: float
"""

import os
import socket
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.listeners import (
    Listeners,
    ProcUnreadable,
    bad_ports,
)
from ansible_collections.npufleet.ascend.plugins.module_utils.node_readings import (
    DockerUnavailable,
    docker_json,
    running_containers,
)


def describe_path(path: str) -> dict:
    entry = {"path": path, "exists": False, "type": None, "uid": None, "gid": None}
    entry["realpath"] = os.path.realpath(path)
    try:
        info = os.stat(path)
    except OSError:
        if os.path.islink(path):
            entry["type"] = "link"
        return entry
    mode = info.st_mode
    kinds = (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISREG, "file"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
    )
    entry.update(
        exists=True,
        type=next((name for test, name in kinds if test(mode)), "other"),
        uid=info.st_uid,
        gid=info.st_gid,
    )
    return entry


def free_space(path: str) -> dict:
    measured = path
    while not os.path.exists(measured) and measured not in ("", os.sep):
        measured = os.path.dirname(measured.rstrip(os.sep)) or os.sep
    info = os.statvfs(measured)
    return {
        "path": path,
        "measured_at": measured,
        "free_gib": round(info.f_bavail * info.f_frsize / 1024**3, 1),
    }


def npu_devices(dev_root: str) -> list[int]:
    try:
        names = os.listdir(dev_root)
    except OSError:
        return []
    numbers = [name[len("davinci") :] for name in names if name.startswith("davinci")]
    return sorted(int(number) for number in numbers if number.isdigit())


def bind_probe(address: str) -> dict:
    """Whether a TCP socket binds to ``address`` (port 0, closed at once): the node has that address."""
    entry = {"address": address, "bindable": False, "error": None}
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(address, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(sockaddr)
    except (OSError, UnicodeError) as error:
        entry["error"] = str(error)
    else:
        entry["bindable"] = True
    return entry


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "default": []},
            "devices": {"type": "bool", "default": True},
            "containers": {"type": "bool", "default": False},
            "images": {"type": "list", "elements": "str", "default": []},
            "docker_root": {"type": "bool", "default": False},
            "free_space": {"type": "list", "elements": "path", "default": []},
            "ports": {"type": "list", "elements": "int", "default": []},
            "ignore_containers": {"type": "list", "elements": "str", "default": []},
            "addresses": {"type": "list", "elements": "str", "default": []},
            "dev_root": {"type": "path", "default": "/dev"},
            "proc_root": {"type": "path", "default": "/proc"},
        },
        supports_check_mode=True,
    )
    params = module.params
    bad = bad_ports(params["ports"])
    if bad:
        module.fail_json(
            msg=f"ports must be 1..65535, got {', '.join(map(str, bad))}: fix the ports option", bad_ports=bad
        )
    result = {
        "changed": False,
        "paths": [describe_path(path) for path in params["paths"]],
        "free_space": [free_space(path) for path in params["free_space"]],
        "images": {},
    }
    if params["devices"]:
        result["npu_devices"] = npu_devices(params["dev_root"])
    if params["containers"] or params["images"] or params["docker_root"]:
        result["docker_error"] = None
        docker = module.get_bin_path("docker")
        try:
            if docker is None:
                raise DockerUnavailable("docker is not installed (no docker on PATH)")
            if params["docker_root"]:
                info = docker_json(module.run_command, [docker, "info", "--format", "{{json .}}"])
                result["docker_root"] = info.get("DockerRootDir")
                result["docker_cgroup_driver"] = info.get("CgroupDriver")
            if params["containers"]:
                result["containers"] = running_containers(module.run_command, docker)
            for reference in params["images"]:
                argv = [docker, "image", "inspect", "--format", "{{.Id}}", reference]
                rc, out, _ = module.run_command(argv)
                result["images"][reference] = out.strip() if rc == 0 else None
        except DockerUnavailable as error:
            result["docker_error"] = str(error)
            result["images"] = dict.fromkeys(params["images"])
            result.setdefault("docker_root", None)
            result.setdefault("docker_cgroup_driver", None)
    if params["ports"]:
        listeners = Listeners(params["proc_root"], module.run_command, module.get_bin_path("docker"))
        try:
            result["ports"] = listeners.gather(params["ports"], params["ignore_containers"])["ports"]
        except ProcUnreadable as error:
            module.fail_json(msg=str(error))
    if params["addresses"]:
        result["addresses"] = [bind_probe(address) for address in params["addresses"]]
    if params["docker_root"]:
        result["docker_root_free"] = free_space(result.get("docker_root") or "/var/lib/docker")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
