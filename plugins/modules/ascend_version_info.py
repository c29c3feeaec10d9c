#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: ascend_version_info
short_description: Read the Ascend driver, firmware and CANN versions of a node or an image and check they fit
description:
  - Reads the node's driver and firmware C(version.info) files and its CANN toolkit's
    C(ascend_toolkit_install.info), and returns their versions and compatibility lists as data.
  - Checks them against each other (the firmware in the driver's C(compatible_version_fw) ranges,
    the driver in the firmware's C(compatible_version_drv) ranges, the toolkit's family in the
    driver's C(compatible_version)) and against the accepted versions in O(driver_versions) and
    O(cann_versions).
  - With O(image), also reads that image's torch, torch_npu and CANN versions (a short C(/bin/sh)
    script in a throw-away container without network) and checks them against each other and the node.
  - Every mismatch is one entry of RV(problems); the module does not fail on them, so the caller
    decides (for example with M(ansible.builtin.assert)). It fails only on bad input, an unreadable
    file, or an image that is not on the node.
  - Read-only; a missing file is reported in the result, not an error.
version_added: "0.2.0"
author:
  - npufleet contributors
options:
  driver_path:
    description: The driver's C(version.info).
    type: path
    default: /usr/local/Ascend/driver/version.info
  firmware_path:
    description: The firmware's C(version.info).
    type: path
    default: /usr/local/Ascend/firmware/version.info
  toolkit_paths:
    description:
      - Where to look for the CANN toolkit's C(ascend_toolkit_install.info), in order; the first
        existing file is read. Entries may be globs (the toolkit keeps it under C(<arch>-linux)).
      - No such file means the node has no toolkit; that is no problem, its checks are skipped.
    type: list
    elements: str
    default:
      - /usr/local/Ascend/ascend-toolkit/latest/*/ascend_toolkit_install.info
      - /usr/local/Ascend/ascend-toolkit/latest/ascend_toolkit_install.info
  driver_versions:
    description:
      - Accepted driver versions (the manual pins C(23.0.6)); empty accepts any.
    type: list
    elements: str
    default: []
  cann_versions:
    description:
      - Accepted CANN versions, for the node's toolkit and the image; empty accepts any.
      - Compared case-insensitively, and a C(cann_) prefix is dropped, so C(cann_8.0.rc3) (the
        manual's spelling) accepts C(8.0.RC3).
    type: list
    elements: str
    default: []
  image:
    description:
      - An image on the node (Docker) whose versions to read and check too, by name and tag or id.
      - Run as C(docker run --rm --network none --entrypoint /bin/sh IMAGE -c SCRIPT); the script
        reads torch and torch_npu with the image's C(python3) (or C(python)) and its
        C(importlib.metadata), and the first toolkit file under C(/usr/local/Ascend/ascend-toolkit/latest).
      - The image is never pulled; a missing image fails the module, naming it.
    type: str
  torch_versions:
    description:
      - Accepted torch versions in the image (the manual's images have C(2.1.0) or C(2.3.1)); empty
        accepts any.
    type: list
    elements: str
    default: []
  require_torch_npu:
    description: Whether an image without torch_npu is a problem.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: It changes nothing.
notes:
  - Versions compare component-wise; a test build (C(7.0.T10)) sorts before a release candidate
    (C(23.0.rc3)), which sorts before a release (C(23.0.0)). A range bound is compared on as many
    components as it has, and an upper bound ending in C(.) (C(23.0.0.)) holds the rest of its
    release line (C(23.0.7)). The rules are in the docstring of module_utils C(ascend_versions).
"""

EXAMPLES = r"""
- name: Read the node's Ascend versions
  npufleet.ascend.ascend_version_info:
  register: versions

- name: Check them against the manual's pins, and an image against the node
  npufleet.ascend.ascend_version_info:
    driver_versions: ["23.0.6"]
    cann_versions: ["cann_8.0.rc3"]
    # For example the manual's swr.cn-southwest-2.myhuaweicloud.com/atelier/pytorch_2_1_ascend image.
    image: "{{ training_image }}"
    torch_versions: ["2.1.0", "2.3.1"]
  register: versions

- name: Stop when something does not fit
  ansible.builtin.assert:
    that: versions.problems | length == 0
    fail_msg: "{{ versions.problems | map(attribute='message') | list }}"
"""

RETURN = r"""
version_files:
  description: The file read for each of driver, firmware and toolkit, or null when there was none.
  returned: success
  type: dict
  sample:
    driver: /usr/local/Ascend/driver/version.info
    firmware: /usr/local/Ascend/firmware/version.info
    toolkit: /usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info
host:
  description:
    - The node's versions; an entry is null when its file is missing.
    - C(compatible_fw) and C(compatible_drv) are lists of C([low, high]) ranges; C(compatible) lists
      CANN families; C(family) is the C(V100R001C13) prefix of the toolkit's C(innerversion).
  returned: success
  type: dict
  sample:
    driver:
      version: "23.0.7"
      innerversion: V100R001C15SPC012B220
      compatible_fw: [["7.0.0", "7.1.99"]]
      compatible: [V100R001C29, V100R001C30, V100R001C13, V100R001C15]
    firmware:
      version: "7.1.0.11.220"
      compatible_drv: [["23.0.rc3", "23.0.rc3."], ["23.0.0", "23.0.0."]]
    toolkit:
      version: 7.0.T10
      innerversion: V100R001C13B222
      family: V100R001C13
image:
  description: The image's versions (null values where it has none), or null without O(image).
  returned: success
  type: dict
  sample:
    name: pytorch_2_1_ascend:pytorch_2.1.0-cann_8.0.rc3
    python: "3.9.21"
    torch: "2.1.0"
    torch_npu: 2.1.0.post8
    cann:
      version: 8.0.RC3
      innerversion: V100R001C19SPC001B128
      family: V100R001C19
      file: /usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info
problems:
  description:
    - What does not fit, one entry each; empty when everything fits.
    - C(component) is C(driver), C(firmware), C(cann), C(torch) or C(torch_npu); C(found) is the
      version found or C(missing); C(expected) says what would fit; C(message) is one sentence with
      both versions and a fix.
  returned: success
  type: list
  elements: dict
  sample:
    - component: driver
      found: "23.0.7"
      expected: one of 23.0.6
      message: >-
        Driver 23.0.7 is not one of the accepted versions (23.0.6): install driver 23.0.6 (and the
        firmware of its package), or add 23.0.7 to the accepted versions if it is supported.
"""

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.ascend_versions import (
    IMAGE_PROBE,
    host_facts,
    host_problems,
    image_problems,
    parse_image_report,
)


class AscendVersionInfo:
    """The node's (and optionally an image's) Ascend versions and what does not fit; it only reads."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params

    def read(self, path: str | None) -> str | None:
        """A file's text, or None when it does not exist; other errors fail the module."""
        if not path:
            return None
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            self.module.fail_json(
                msg=f"could not read {path}: {error}; fix its permissions or the path option"
            )
        return None

    def toolkit_path(self) -> str | None:
        # glob.glob also answers a plain path, with [path] when it exists.
        for pattern in self.params["toolkit_paths"]:
            for path in sorted(glob.glob(pattern)):
                if os.path.isfile(path):
                    return path
        return None

    def image_facts(self, image: str) -> dict:
        docker = self.module.get_bin_path("docker", required=True)
        inspect = [docker, "image", "inspect", "--format", "{{.Id}}", image]
        rc, out, err = self.module.run_command(inspect, environ_update={"LC_ALL": "C"})
        if rc != 0:
            self.module.fail_json(
                msg=f"image {image} is not on this node (docker image inspect exited {rc}): pull or load "
                "it first (npufleet.ascend.node_image), or fix the image option",
                cmd=inspect,
                rc=rc,
                stdout=out,
                stderr=err,
            )
        cmd = [
            docker,
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            IMAGE_PROBE,
        ]
        rc, out, err = self.module.run_command(cmd, environ_update={"LC_ALL": "C"})
        if rc != 0:
            self.module.fail_json(
                msg=f"reading the versions in image {image} failed: docker run exited {rc}; see stderr",
                cmd=cmd,
                rc=rc,
                stdout=out,
                stderr=err,
            )
        return dict(parse_image_report(out), name=image)

    def gather(self) -> dict:
        params = self.params
        for option in ("driver_versions", "cann_versions", "torch_versions", "toolkit_paths"):
            if any(not value.strip() for value in params[option]):
                self.module.fail_json(msg=f"{option} has an empty entry: remove it, or give a version")
        files = {
            "driver": params["driver_path"],
            "firmware": params["firmware_path"],
            "toolkit": self.toolkit_path(),
        }
        texts = {name: self.read(path) for name, path in files.items()}
        files = {name: path if texts[name] is not None else None for name, path in files.items()}
        try:
            host = host_facts(texts["driver"], texts["firmware"], texts["toolkit"])
        except ValueError as error:
            self.module.fail_json(msg=f"could not read the version files {files}: {error}")
        problems = host_problems(host, params["driver_versions"], params["cann_versions"])
        image = None
        if params["image"]:
            image = self.image_facts(params["image"])
            problems += image_problems(
                image,
                host,
                cann_versions=params["cann_versions"],
                torch_versions=params["torch_versions"],
                require_torch_npu=params["require_torch_npu"],
            )
        return {"changed": False, "version_files": files, "host": host, "image": image, "problems": problems}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "driver_path": {"type": "path", "default": "/usr/local/Ascend/driver/version.info"},
            "firmware_path": {"type": "path", "default": "/usr/local/Ascend/firmware/version.info"},
            "toolkit_paths": {
                "type": "list",
                "elements": "str",
                "default": [
                    "/usr/local/Ascend/ascend-toolkit/latest/*/ascend_toolkit_install.info",
                    "/usr/local/Ascend/ascend-toolkit/latest/ascend_toolkit_install.info",
                ],
            },
            "driver_versions": {"type": "list", "elements": "str", "default": []},
            "cann_versions": {"type": "list", "elements": "str", "default": []},
            "image": {"type": "str"},
            "torch_versions": {"type": "list", "elements": "str", "default": []},
            "require_torch_npu": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    module.exit_json(**AscendVersionInfo(module).gather())


if __name__ == "__main__":
    main()
