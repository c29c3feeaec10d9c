#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: npu_smi_info
short_description: Read Ascend NPU inventory, health and usage with npu-smi
description:
  - Runs Huawei's C(npu-smi) on the node and returns what it reports as data.
  - C(npu-smi info) gives the driver version, every NPU with its chips (health, power,
    temperature, AICore usage, memory and HBM used and total, bus id) and the processes using them.
  - C(npu-smi info -l) gives the total NPU count; board and usage details per NPU are read when asked.
  - Read-only; failure messages of npu-smi (for example C(dcmi ... ret is -8020) or
    C(There is no NPU card on this server.)) make the module fail with that message.
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  executable:
    description:
      - Path of npu-smi.
      - By default it is looked up on E(PATH) and in C(/usr/local/sbin) and C(/usr/local/bin).
    type: path
  container:
    description:
      - Run npu-smi inside this running Docker container (C(docker exec)) instead of on the node, to
        see the NPUs the container was given.
      - O(executable) is then a path inside the container (default C(npu-smi) on its E(PATH)).
    type: str
  board:
    description: Also run C(npu-smi info -t board -i N) for every NPU.
    type: bool
    default: false
  usages:
    description: Also run C(npu-smi info -t usages -i N) for every NPU.
    type: bool
    default: false
  mapping:
    description: Also run C(npu-smi info -m) (NPU id to chip logic id).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: It changes nothing.
notes:
  - Parses the table by cells, not by column offsets, so the layouts of 910A, 910B/A2, A3/910C,
    310P and 950 drivers are all read.
"""

EXAMPLES = r"""
- name: Read the NPUs of every node
  npufleet.ascend.npu_smi_info:
  register: npu

- name: Show the driver version and the NPU count
  ansible.builtin.debug:
    msg: "{{ npu.driver_version }}: {{ npu.count }} NPUs"

- name: See which NPUs a container was given
  npufleet.ascend.npu_smi_info:
    container: llm-train
  register: in_container

- name: Read board details too, with npu-smi at a custom path
  npufleet.ascend.npu_smi_info:
    executable: /opt/ascend/bin/npu-smi
    board: true
"""

RETURN = r"""
executable:
  description: The npu-smi that was run.
  returned: success
  type: str
  sample: /usr/local/sbin/npu-smi
tool_version:
  description: Version of npu-smi itself (header of C(npu-smi info)).
  returned: success
  type: str
  sample: "23.0.6"
driver_version:
  description: Driver version (the C(Version:) of the header, or the board's C(Software Version)).
  returned: success
  type: str
  sample: "23.0.6"
count:
  description: Total NPU count as C(npu-smi info -l) reports it.
  returned: success
  type: int
  sample: 8
npus:
  description: One entry per NPU with its chips.
  returned: success
  type: list
  elements: dict
  sample:
    - id: 0
      name: 910B3
      health: OK
      power_w: 93.4
      temp_c: 38
      chips:
        - chip_id: 0
          bus_id: "0000:C1:00.0"
          aicore_pct: 0
          hbm_used_mb: 3400
          hbm_total_mb: 65536
processes:
  description: Processes that hold an NPU.
  returned: success
  type: list
  elements: dict
  sample:
    - npu_id: 0
      chip_id: 0
      pid: 13128
      name: python
      memory_mb: 54601
unhealthy:
  description: Ids of NPUs whose health is not C(OK).
  returned: success
  type: list
  elements: int
  sample: [3]
board:
  description: C(npu-smi info -t board) of each NPU, in the order of RV(npus), when O(board=true).
  returned: when board is true
  type: list
  elements: dict
  sample:
    - npu_id: 0
      software_version: "23.0.6"
      firmware_version: "7.1.0.11.220"
      pcie_bus_info: "0000:C1:00.0"
usages:
  description: C(npu-smi info -t usages) of each NPU, in the order of RV(npus), when O(usages=true).
  returned: when usages is true
  type: list
  elements: dict
mapping:
  description: C(npu-smi info -m) rows, when O(mapping=true).
  returned: when mapping is true
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.npu_smi import (
    NpuSmiError,
    parse_board,
    parse_info,
    parse_list,
    parse_mapping,
    parse_usages,
)

SEARCH_PATHS = ["/usr/local/sbin", "/usr/local/bin"]


class NpuSmi:
    """Runs npu-smi with a C locale and hands its output to the parsers."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.prefix = []
        if module.params["container"]:
            self.prefix = [module.get_bin_path("docker", required=True), "exec", module.params["container"]]
            self.executable = module.params["executable"] or "npu-smi"
            return
        self.executable = module.params["executable"] or module.get_bin_path("npu-smi", opt_dirs=SEARCH_PATHS)
        if not self.executable:
            module.fail_json(
                msg="npu-smi was not found on PATH, /usr/local/sbin or /usr/local/bin: install the "
                "Ascend driver, or set the executable option to its path"
            )
        if not os.access(self.executable, os.X_OK):
            module.fail_json(
                msg=f"npu-smi at {self.executable} is missing or not executable: fix the executable option"
            )

    def run(self, *args: str):
        cmd = [*self.prefix, self.executable, "info", *args]
        rc, out, err = self.module.run_command(cmd, environ_update={"LC_ALL": "C"})
        return cmd, rc, out, err

    def parsed(self, parser, *args: str):
        cmd, rc, out, err = self.run(*args)
        try:
            data = parser(out + "\n" + err if rc != 0 else out)
        except NpuSmiError as error:
            self.module.fail_json(
                msg=f"npu-smi failed: {error}", cmd=cmd, rc=rc, stdout=out, stderr=err, error_code=error.code
            )
        except ValueError as error:
            self.module.fail_json(
                msg=f"could not read the output of {' '.join(cmd)}: {error}",
                cmd=cmd,
                rc=rc,
                stdout=out,
                stderr=err,
            )
        if rc != 0:
            self.module.fail_json(msg=f"{' '.join(cmd)} exited {rc}", cmd=cmd, rc=rc, stdout=out, stderr=err)
        return data


class NpuSmiInfo:
    """What npu-smi reports, as the module's result (it only reads, in check mode too)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.npu_smi = NpuSmi(module)

    def gather(self) -> dict:
        npu_smi, params = self.npu_smi, self.params
        info = npu_smi.parsed(parse_info)
        listing = npu_smi.parsed(parse_list, "-l")
        result = {
            "changed": False,
            "executable": npu_smi.executable,
            "tool_version": info["tool_version"],
            "driver_version": info["driver_version"],
            "count": listing["total_count"],
            "chip_count": info["chip_count"],
            "npus": info["npus"],
            "processes": info["processes"],
            "unhealthy": [npu["id"] for npu in info["npus"] if npu["health"] != "OK"],
            "warnings_from_npu_smi": info["warnings"],
        }
        if params["board"]:
            result["board"] = [
                npu_smi.parsed(parse_board, "-t", "board", "-i", str(npu["id"])) for npu in info["npus"]
            ]
            first = result["board"][0] if result["board"] else {}
            result["driver_version"] = first.get("software_version") or result["driver_version"]
        if params["usages"]:
            result["usages"] = [
                npu_smi.parsed(parse_usages, "-t", "usages", "-i", str(npu["id"])) for npu in info["npus"]
            ]
        if params["mapping"]:
            result["mapping"] = npu_smi.parsed(parse_mapping, "-m")
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "executable": {"type": "path"},
            "container": {"type": "str"},
            "board": {"type": "bool", "default": False},
            "usages": {"type": "bool", "default": False},
            "mapping": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    module.exit_json(**NpuSmiInfo(module).gather())


if __name__ == "__main__":
    main()
