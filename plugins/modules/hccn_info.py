#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: hccn_info
short_description: Read the RoCE network ports of Ascend NPUs with hccn_tool
description:
  - Runs Huawei's C(hccn_tool) on the node for each NPU asked and returns what it reports as data
    (link state, net health, IP address and netmask, TLS switch, LLDP peer port, detect address,
    gateway, speed).
  - Multi-node HCCL jobs need, on every node and NPU, link C(UP), net health C(Success), an address
    consistent with C(/etc/hccn.conf), the same TLS switch on every NPU, and reachable peers; this
    module reads those facts, the playbook decides what to require.
  - Reads and parses C(/etc/hccn.conf) (or O(conf_path)) when it is present.
  - Optionally pings peer NPU addresses from given NPUs (C(hccn_tool -i N -ping -g address A)).
  - Read-only. A missing C(hccn_tool) or a failing command does not fail the module; they are
    reported per NPU in RV(npus[].errors) and in RV(tool_found).
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  executable:
    description:
      - Path of hccn_tool; it ships with the Ascend driver and is usually absent inside containers.
      - A bare name is looked up on E(PATH).
    type: path
    default: /usr/local/Ascend/driver/tools/hccn_tool
  npus:
    description: Ids of the NPUs to read (the C(-i) of hccn_tool), in the order they are returned.
    type: list
    elements: int
    required: true
  readings:
    description:
      - What to read of each NPU, one hccn_tool command each.
      - V(link) is C(-link -g), V(net_health) is C(-net_health -g), V(ip) is C(-ip -g), V(tls) is
        C(-tls -g), V(lldp) is C(-lldp -g), V(netdetect) is C(-netdetect -g), V(gateway) is
        C(-gateway -g), V(speed) is C(-speed -g).
      - The fields of a reading not asked for are null.
    type: list
    elements: str
    choices: [link, net_health, ip, tls, lldp, netdetect, gateway, speed]
    default: [link, net_health, ip, tls, lldp, netdetect, gateway, speed]
  conf_path:
    description:
      - The hccn.conf to read, if present (C(address_N), C(netmask_N), C(netdetect_N), C(gateway_N) lines).
    type: path
    default: /etc/hccn.conf
  ping:
    description:
      - Addresses to ping, each from one NPU (C(hccn_tool -i NPU -ping -g address ADDRESS)).
      - All pings run at the same time; see O(ping_timeout).
    type: list
    elements: dict
    default: []
    suboptions:
      npu:
        description: Id of the NPU that sends the ping.
        type: int
        required: true
      address:
        description: Address to ping (usually a peer node's NPU address).
        type: str
        required: true
  ping_timeout:
    description:
      - Seconds to wait for all pings together.
      - A ping still running then is killed and reported unreachable, with an error saying it timed out.
    type: int
    default: 20
  parallel:
    description: How many hccn_tool readings run at the same time (each has a 10 second limit).
    type: int
    default: 8
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: It changes nothing.
notes:
  - Lines of an output that the parsers do not recognise are returned in RV(npus[].unparsed) rather than
    dropped, so that a new driver's wording shows up instead of reading as unset.
  - A TLS switch that differs between the NPUs of a job is behind HCCL error EI0006
    (Some ranks tlsStatus are inconsistent); compare RV(npus[].tls_switch) across NPUs and nodes.
"""

EXAMPLES = r"""
- name: Read the network ports of the eight NPUs
  npufleet.ascend.hccn_info:
    npus: [0, 1, 2, 3, 4, 5, 6, 7]
  register: hccn

- name: Require link up and net health Success on every NPU
  ansible.builtin.assert:
    that:
      - hccn.npus | rejectattr('link', 'equalto', 'UP') | list | length == 0
      - hccn.npus | rejectattr('net_health', 'equalto', 'Success') | list | length == 0

- name: Ping a peer node's NPU addresses, at most 10 seconds in all
  npufleet.ascend.hccn_info:
    npus: [0, 1]
    readings: [link, ip]
    ping:
      - npu: 0
        address: 192.168.100.102
      - npu: 1
        address: 192.168.101.102
    ping_timeout: 10
  register: reach
"""

RETURN = r"""
executable:
  description: The hccn_tool that was run (or looked for).
  returned: always
  type: str
  sample: /usr/local/Ascend/driver/tools/hccn_tool
tool_found:
  description: Whether O(executable) exists and is executable; when false every NPU carries an error.
  returned: always
  type: bool
  sample: true
conf_path:
  description: The hccn.conf that was looked for.
  returned: always
  type: str
  sample: /etc/hccn.conf
conf_present:
  description: Whether O(conf_path) exists.
  returned: always
  type: bool
  sample: true
npus:
  description:
    - One entry per NPU asked, in the order of O(npus).
    - Fields of a reading not asked for, or whose command failed, are null.
    - C(conf) holds this NPU's lines of hccn.conf (null when the file or the NPU's lines are absent).
    - C(errors) lists the failed readings, each as its name, C(exit) and the exit code, and the first
      line of its output (or the missing hccn_tool); C(unparsed) holds, per reading, the lines the
      parser did not recognise (only readings that have some); C(raw) holds each reading's output.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 0
      link: UP
      net_health: Success
      ipaddr: 192.168.100.101
      netmask: 255.255.255.0
      tls_switch: 0
      tls_preconfigured: 1
      lldp_port: "400GE1/1/20:2"
      netdetect: 192.168.100.1
      gateway: 192.168.100.1
      speed_mbps: 200000
      conf:
        address: 192.168.100.101
        netmask: 255.255.255.0
        netdetect: 192.168.100.1
        gateway: null
      errors: []
      unparsed: {}
      raw:
        link: "link status: UP"
pings:
  description:
    - One entry per O(ping) item, in its order.
    - C(reachable) is false at 100% packet loss, on a failed or timed-out command, and when the output
      has no packet statistics; C(error) says why in the last three cases (null otherwise).
  returned: always
  type: list
  elements: dict
  sample:
    - npu: 0
      address: 192.168.100.102
      reachable: true
      loss_pct: 0.0
      error: null
      output: "4 packets transmitted, 4 received, 0.00% packet loss"
"""

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.hccn_tool import (
    CONF_KEYS,
    READINGS,
    parse_hccn_conf,
    parse_ping,
)

# Every reading is one quick query of the driver; longer means the driver hangs.
COMMAND_TIMEOUT_S = 10

# The NPU entry's fields filled by each reading, from the parser's result.
FIELDS = {
    "link": {"link": "link"},
    "net_health": {"net_health": "net_health"},
    "ip": {"ipaddr": "ipaddr", "netmask": "netmask"},
    "tls": {"tls_switch": "switch", "tls_preconfigured": "preconfigured"},
    "lldp": {"lldp_port": "port_ifname"},
    "netdetect": {"netdetect": "netdetect"},
    "gateway": {"gateway": "gateway"},
    "speed": {"speed_mbps": "speed_mbps"},
}


def run_tool(argv: list, timeout: float) -> tuple:
    """Run one command with stderr merged into stdout: ``(rc, output, timed_out)``.

    The command gets its own process group, so that a timeout kills it together with anything it
    started (a wrapper script's children would otherwise keep the pipe open).
    """
    try:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, LC_ALL="C"),
            start_new_session=True,
            universal_newlines=True,
            errors="replace",
        )
    except OSError as error:
        return None, str(error), False
    try:
        output, _ = process.communicate(timeout=max(timeout, 0.1))
        return process.returncode, output, False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
        try:
            output, _ = process.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            output = ""
        return process.returncode, output or "", True


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "(no output)")


class HccnInfo:
    """What hccn_tool reports for the NPUs asked, as the module's result (read-only)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        executable = self.params["executable"]
        if "/" not in executable:
            executable = module.get_bin_path(executable) or executable
        self.executable = executable
        self.tool_found = os.path.isfile(executable) and os.access(executable, os.X_OK)
        self.missing = (
            f"hccn_tool not found at {executable} (it ships with the Ascend driver: install the driver, "
            "or set executable)"
        )

    def read_conf(self) -> tuple:
        """(present, {npu_id: {address, netmask, netdetect, gateway}})."""
        path = self.params["conf_path"]
        if not os.path.isfile(path):
            return False, {}
        try:
            with open(path, encoding="utf-8", errors="replace") as conf:
                parsed = parse_hccn_conf(conf.read())
        except OSError as error:
            self.module.warn(f"could not read {path}: {error}")
            return True, {}
        if parsed["unparsed"]:
            self.module.warn(f"{path}: lines not of the form key_N=value: {parsed['unparsed']}")
        return True, {
            npu_id: {key: values[key] for key in CONF_KEYS} for npu_id, values in parsed["npus"].items()
        }

    def read(self, npu_id: int, reading: str) -> tuple:
        args, parser = READINGS[reading]
        rc, output, timed_out = run_tool([self.executable, "-i", str(npu_id), *args], COMMAND_TIMEOUT_S)
        if timed_out:
            return output, None, f"{reading}: timed out after {COMMAND_TIMEOUT_S} s"
        if rc is None:
            return output, None, f"{reading}: could not run {self.executable}: {output}"
        if rc != 0:
            return output, None, f"{reading}: exit {rc}: {first_line(output)}"
        return output, parser(output), None

    def npu_entry(self, npu_id: int, conf: dict, readings: dict) -> dict:
        entry = {"id": npu_id}
        for fields in FIELDS.values():
            entry.update(dict.fromkeys(fields))
        entry.update({"conf": conf.get(npu_id), "errors": [], "unparsed": {}, "raw": {}})
        if not self.tool_found:
            entry["errors"].append(self.missing)
            return entry
        for reading, (output, data, error) in readings.items():
            entry["raw"][reading] = output
            if error:
                entry["errors"].append(error)
                continue
            if data["unparsed"]:
                entry["unparsed"][reading] = data["unparsed"]
            if reading == "tls":
                # -tls -g may list several devices; this NPU's line, else the only one.
                tls = data["tls"]
                values = next((t for t in tls if t["dev_id"] == npu_id), tls[0] if tls else {})
            else:
                values = data
            for field, key in FIELDS[reading].items():
                entry[field] = values.get(key)
        return entry

    def gather_readings(self) -> list:
        """{reading: (output, parsed, error)} per NPU, in the order of the npus option."""
        npus, readings = self.params["npus"], self.params["readings"]
        if not self.tool_found:
            return [{} for _ in npus]
        jobs = [(index, npu_id, reading) for index, npu_id in enumerate(npus) for reading in readings]
        results = [{} for _ in npus]
        with ThreadPoolExecutor(max_workers=self.params["parallel"]) as pool:
            futures = [
                (index, reading, pool.submit(self.read, npu_id, reading)) for index, npu_id, reading in jobs
            ]
            for index, reading, future in futures:
                results[index][reading] = future.result()
        return results

    def ping(self, npu_id: int, address: str, deadline: float) -> dict:
        result = {"npu": npu_id, "address": address, "reachable": False, "loss_pct": None, "error": None}
        result["output"] = ""
        if not self.tool_found:
            result["error"] = self.missing
            return result
        argv = [self.executable, "-i", str(npu_id), "-ping", "-g", "address", address]
        rc, output, timed_out = run_tool(argv, deadline - time.monotonic())
        parsed = parse_ping(output)
        result.update(output=output, loss_pct=parsed["loss_pct"], reachable=bool(parsed["reachable"]))
        if timed_out:
            result.update(reachable=False, error=f"timed out after {self.params['ping_timeout']} s")
        elif rc is None:
            result["error"] = f"could not run {self.executable}: {output}"
        elif rc != 0:
            result.update(reachable=False, error=f"exit {rc}: {first_line(output)}")
        elif parsed["reachable"] is None:
            result["error"] = "no packet statistics in the output"
        return result

    def gather_pings(self) -> list:
        pings = self.params["ping"] or []
        if not pings:
            return []
        # One thread per ping: they all start now and share one deadline.
        deadline = time.monotonic() + self.params["ping_timeout"]
        with ThreadPoolExecutor(max_workers=len(pings)) as pool:
            futures = [pool.submit(self.ping, item["npu"], item["address"], deadline) for item in pings]
            return [future.result() for future in futures]

    def gather(self) -> dict:
        for option in ("ping_timeout", "parallel"):
            if self.params[option] < 1:
                self.module.fail_json(msg=f"{option} must be at least 1, not {self.params[option]}")
        conf_present, conf = self.read_conf()
        readings = self.gather_readings()
        return {
            "changed": False,
            "executable": self.executable,
            "tool_found": self.tool_found,
            "conf_path": self.params["conf_path"],
            "conf_present": conf_present,
            "npus": [
                self.npu_entry(npu_id, conf, npu_readings)
                for npu_id, npu_readings in zip(self.params["npus"], readings)
            ],
            "pings": self.gather_pings(),
        }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "executable": {"type": "path", "default": "/usr/local/Ascend/driver/tools/hccn_tool"},
            "npus": {"type": "list", "elements": "int", "required": True},
            "readings": {
                "type": "list",
                "elements": "str",
                "choices": ["link", "net_health", "ip", "tls", "lldp", "netdetect", "gateway", "speed"],
                "default": ["link", "net_health", "ip", "tls", "lldp", "netdetect", "gateway", "speed"],
            },
            "conf_path": {"type": "path", "default": "/etc/hccn.conf"},
            "ping": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "npu": {"type": "int", "required": True},
                    "address": {"type": "str", "required": True},
                },
            },
            "ping_timeout": {"type": "int", "default": 20},
            "parallel": {"type": "int", "default": 8},
        },
        supports_check_mode=True,
    )
    module.exit_json(**HccnInfo(module).gather())


if __name__ == "__main__":
    main()
