#!/usr/bin/python3
"""Simulated Ascend NPUs for an npufleet lab node (runs inside the node, standard library only).

Installed as /usr/local/lib/npufleet-lab/npu_sim.py and called under two names:

* ``npu-smi`` (a symlink at /usr/local/sbin/npu-smi, where the manual's servers have it): prints
  what Huawei's npu-smi prints for ``info``, ``info -l``, ``info -t board -i N``,
  ``info -t usages -i N`` and ``info -m``, in the 910B/A2 layout, from the node's state file.
* ``hccn_tool`` (a symlink at /usr/local/Ascend/driver/tools/hccn_tool, on the node only): prints
  what Huawei's hccn_tool prints for ``-i N`` with ``-link``, ``-net_health``, ``-ip``, ``-tls``,
  ``-lldp``, ``-netdetect``, ``-gateway``, ``-speed``, ``-link_stat`` (``-g``), answers
  ``-ping -g address X`` with real pings between lab nodes, and applies the fixes users run
  (``-tls -s enable 0``, ``-ip -s address A netmask M``, ``-link -s up``).
* ``npu-sim-sync``: makes the device nodes, the driver, firmware and toolkit trees, /etc/hccn.conf
  and the NPU addresses match the state file. A systemd unit runs it at boot, and
  ``npufleet lab fault`` runs it after changing the state.

Each NPU's RoCE address is a real address on the node's lab interface (label ``eth0:npuN``), so an
``-ping`` from one node's NPU reaches the same-index NPU of another node over the lab network only;
a link that is down or an NPU made unreachable has no address there, and an address outside the
NPU's own subnet is never pinged (there is no route for it, as on a RoCE port without a gateway).

The state file (/var/lib/npufleet-lab/state.json) is the single source of truth, so a test can
inject a fault (an unhealthy chip, a busy NPU, another driver, fewer chips, a failing driver)
by rewriting it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

# ipaddress, platform, stat and subprocess are imported where they are used: every ``hccn_tool`` and
# ``npu-smi`` call is a new interpreter, and a job gate makes 64 of them per node (see
# benchmarks/site_setup.py). The real tools are native binaries, so startup is the lab's cost only.

STATE_FILE = Path(os.environ.get("NPU_SIM_STATE", "/var/lib/npufleet-lab/state.json"))
DEV = Path(os.environ.get("NPU_SIM_DEV", "/dev"))
ROOT = Path(os.environ.get("NPU_SIM_ROOT", "/"))

# Character device majors as an Ascend driver registers them; the numbers only have to be stable.
DAVINCI_MAJOR = 236
MANAGER_DEVICES = {"davinci_manager": (237, 0), "devmm_svm": (238, 0), "hisi_hdc": (239, 0)}

WIDTH = 96  # inner width of the 910B/A2 table between the outer bars


# A copy of the state inside the driver tree: a container that mounts /usr/local/Ascend/driver (as
# NPU containers do) runs the same npu-smi and sees the same NPUs.
DRIVER_STATE = "usr/local/Ascend/driver/npufleet-lab-state.json"


def load_state() -> dict:
    path = STATE_FILE if STATE_FILE.exists() else ROOT / DRIVER_STATE
    return json.loads(path.read_text(encoding="utf-8"))


def visible(state: dict) -> dict:
    """The state as this environment sees it: like the real tool in a container, npu-smi lists only
    the NPUs whose /dev/davinciN is present (keeping their host ids). Where there is no
    davinci_manager at all (not a node), every NPU is listed."""
    if not (DEV / "davinci_manager").exists():
        return state
    return state | {"npus": [npu for npu in state["npus"] if (DEV / f"davinci{npu['id']}").exists()]}


DEVICE_CELLS = (27, 15, 52)
PROCESS_CELLS = (27, 15, 26, 25)


def _row(cells: tuple[str, ...], widths: tuple[int, ...]) -> str:
    return "|" + "|".join(f" {cell}".ljust(width) for cell, width in zip(cells, widths, strict=True)) + "|"


def _line(fill: str, widths: tuple[int, ...]) -> str:
    return "+" + "+".join(fill * width for width in widths) + "+"


def _pair(used: int, total: int) -> str:
    # npu-smi pads the used value to a fixed field: a 5-digit value touches the slash.
    return f"{used:<5d}/ {total}"


def _values(*columns: tuple[str, int]) -> str:
    return "".join(text.ljust(width) for text, width in columns)


def _table(state: dict) -> list[str]:
    version = state["driver_version"]
    joint = _line("=", DEVICE_CELLS)
    lines = [
        "+" + "-" * WIDTH + "+",
        "|" + f" npu-smi {version:<24} Version: {version}".ljust(WIDTH) + "|",
        _line("-", DEVICE_CELLS),
        _row(("NPU   Name", "Health", "Power(W)    Temp(C)           Hugepages-Usage(page)"), DEVICE_CELLS),
        _row(("Chip", "Bus-Id", "AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)"), DEVICE_CELLS),
        joint,
    ]
    for npu in state["npus"]:
        first = _values((f"{npu['power_w']:.1f}", 12), (str(npu["temp_c"]), 18), (_pair(0, 0), 21))
        second = _values(
            (str(npu["aicore_pct"]), 12),
            (_pair(0, 0), 18),
            (_pair(npu["hbm_used_mb"], npu["hbm_total_mb"]), 21),
        )
        lines += [
            _row((f"{npu['id']:<5d} {state['chip']}", npu["health"], first), DEVICE_CELLS),
            _row(("0", npu["bus_id"], second), DEVICE_CELLS),
            joint,
        ]
    lines += [
        _line("-", DEVICE_CELLS),
        _row(("NPU     Chip", "Process id", "Process name", "Process memory(MB)"), PROCESS_CELLS),
        joint,
    ]
    for npu in state["npus"]:
        if not npu["processes"]:
            lines.append("|" + f" No running processes found in NPU {npu['id']}".ljust(WIDTH) + "|")
        for proc in npu["processes"]:
            cells = (f"{npu['id']:<7d} 0", str(proc["pid"]), proc["name"], str(proc["memory_mb"]))
            lines.append(_row(cells, PROCESS_CELLS))
        lines.append(joint)
    return lines


def _kv(key: str, value: object) -> str:
    return f"\t{key:<30} : {value}"


def _find(state: dict, npu_id: str) -> dict:
    for npu in state["npus"]:
        if str(npu["id"]) == npu_id:
            return npu
    raise LookupError(npu_id)


def _listing(state: dict) -> list[str]:
    lines = [_kv("Total Count", len(state["npus"])), ""]
    for npu in state["npus"]:
        lines += [_kv("NPU ID", npu["id"]), _kv("Chip Count", 1), ""]
    return lines


def _board(state: dict, npu: dict) -> list[str]:
    return [
        _kv("NPU ID", npu["id"]),
        _kv("Product Name", state.get("board", "IT21HMDC_Bin5")),
        _kv("Model", "NA"),
        _kv("Manufacturer", "Huawei"),
        _kv("Serial Number", f"LAB{npu['id']:09d}"),
        _kv("Software Version", state["driver_version"]),
        _kv("Firmware Version", state["firmware_version"]),
        _kv("Compatibility", "OK"),
        _kv("Board ID", "0x60"),
        _kv("PCB ID", "A"),
        _kv("BOM ID", 1),
        _kv("PCIe Bus Info", npu["bus_id"]),
        _kv("Slot ID", npu["id"]),
        _kv("Class ID", "NA"),
        _kv("PCI Vendor ID", "0x19E5"),
        _kv("PCI Device ID", "0xD802"),
        _kv("Subsystem Vendor ID", "0x19E5"),
        _kv("Subsystem Device ID", "0x3003"),
        _kv("Chip Count", 1),
    ]


def _usages(npu: dict) -> list[str]:
    hbm_rate = round(100 * npu["hbm_used_mb"] / npu["hbm_total_mb"]) if npu["hbm_total_mb"] else 0
    return [
        _kv("NPU ID", npu["id"]),
        _kv("Chip Count", 1),
        "",
        _kv("DDR Capacity(MB)", 0),
        _kv("DDR Usage Rate(%)", 0),
        _kv("DDR Hugepages Total(page)", 0),
        _kv("DDR Hugepages Usage Rate(%)", 0),
        _kv("HBM Capacity(MB)", npu["hbm_total_mb"]),
        _kv("HBM Usage Rate(%)", hbm_rate),
        _kv("Aicore Usage Rate(%)", npu["aicore_pct"]),
        _kv("Aivector Usage Rate(%)", 0),
        _kv("Aicpu Usage Rate(%)", 0),
        _kv("Ctrlcpu Usage Rate(%)", 1),
        _kv("DDR Bandwidth Usage Rate(%)", 0),
        _kv("HBM Bandwidth Usage Rate(%)", 0),
        _kv("Chip ID", 0),
    ]


def _mapping(state: dict) -> list[str]:
    lines = ["\t" + " ".join(f"{h:<30}" for h in ("NPU ID", "Chip ID", "Chip Logic ID", "Chip Name"))]
    for logic_id, npu in enumerate(state["npus"]):
        lines.append(f"\t{npu['id']:<30} {0:<30} {logic_id:<30} Ascend {state['chip']}")
        lines.append(f"\t{npu['id']:<30} {1:<30} {'-':<30} {'Mcu':<30}")
    return lines


def npu_smi(argv: list[str]) -> int:
    usage = "Usage: npu-smi info [-l | -m | -t board|usages -i NPU_ID]\n"
    if not argv or argv[0] != "info":
        sys.stderr.write(usage)
        return 2
    state = visible(load_state())
    if state.get("error"):
        # A failing driver prints one line instead of the table and exits non-zero.
        print(state["error"])
        return 255
    args = argv[1:]
    if not args:
        lines = _table(state)
    elif args == ["-l"]:
        lines = _listing(state)
    elif args == ["-m"]:
        lines = _mapping(state)
    elif (len(args) == 4 and args[0] == "-t" and args[2] == "-i") or (len(args) == 4 and args[0] == "-i"):
        options = dict(zip(args[::2], args[1::2], strict=True))
        try:
            npu = _find(state, options["-i"])
        except LookupError:
            print(f"Device {options['-i']} does not exist.")
            return 1
        kind = options.get("-t")
        if kind == "board":
            lines = _board(state, npu)
        elif kind == "usages":
            lines = _usages(npu)
        else:
            sys.stderr.write(usage)
            return 2
    else:
        sys.stderr.write(usage)
        return 2
    print("\n".join(lines))
    return 0


def _char_device(path: Path, major: int, minor: int) -> None:
    import stat  # noqa: PLC0415 (see the imports)

    if path.exists():
        info = path.stat()
        if stat.S_ISCHR(info.st_mode) and os.major(info.st_rdev) == major and os.minor(info.st_rdev) == minor:
            return
        path.unlink()
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    os.chmod(path, 0o666)


# The driver's user-space library, which torch_npu's extension links; the lab's training image loads it
# when torch starts (files/npufleet_lab_npu.py). Any loadable shared object does: the node's zlib.
DRIVER_LIBRARY = "libascend_hal.so"


def _driver_library(path: Path) -> None:
    if path.is_file():
        return
    multiarch = getattr(sys.implementation, "_multiarch", "")
    for folder in ("/usr/lib", "/lib"):
        zlib = Path(folder) / multiarch / "libz.so.1"
        if zlib.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zlib.read_bytes())
            return


def sync() -> int:
    """Make /dev and the driver tree match the state file."""
    state = load_state()
    wanted = {f"davinci{npu['id']}" for npu in state["npus"]}
    for npu in state["npus"]:
        _char_device(DEV / f"davinci{npu['id']}", DAVINCI_MAJOR, npu["id"])
    for existing in DEV.glob("davinci[0-9]*"):
        if existing.name not in wanted:
            existing.unlink()
    for name, (major, minor) in MANAGER_DEVICES.items():
        _char_device(DEV / name, major, minor)

    driver = ROOT / "usr/local/Ascend/driver"
    (driver / "lib64").mkdir(parents=True, exist_ok=True)
    _driver_library(driver / "lib64/driver" / DRIVER_LIBRARY)
    (ROOT / DRIVER_STATE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    _write_versions(state)
    tool = ROOT / HCCN_TOOL
    tool.parent.mkdir(parents=True, exist_ok=True)
    if not tool.is_symlink():
        tool.unlink(missing_ok=True)
        tool.symlink_to(Path(__file__).resolve())
    dcmi = ROOT / "usr/local/dcmi"
    dcmi.mkdir(parents=True, exist_ok=True)
    (dcmi / "dcmi_interface_api.h").write_text("/* simulated by npufleet lab */\n", encoding="utf-8")
    (ROOT / "etc").mkdir(parents=True, exist_ok=True)
    (ROOT / "etc/ascend_install.info").write_text(
        "UserName=HwHiAiUser\nUserGroup=HwHiAiUser\n"
        "Driver_Install_Type=full\nDriver_Install_Path_Param=/usr/local/Ascend\n"
        "Firmware_Install_Type=full\nFirmware_Install_Path_Param=/usr/local/Ascend\n",
        encoding="utf-8",
    )
    (ROOT / "etc/hccn.conf").write_text(_hccn_conf(state), encoding="utf-8")
    (ROOT / "var/log/npu").mkdir(parents=True, exist_ok=True)
    if str(ROOT) == "/":
        _sync_addresses(state)  # only on a node: never on the machine that runs the unit tests
    return 0


HCCN_TOOL = "usr/local/Ascend/driver/tools/hccn_tool"
HCCN_USAGE = "Usage: hccn_tool -i <device_id> -<command> -g|-s [args]\n"


def _ping_line(transmitted: int, received: int) -> str:
    loss = 100.0 * (transmitted - received) / transmitted if transmitted else 100.0
    return f"{transmitted} packets transmitted, {received} received, {loss:.2f}% packet loss"


def _same_subnet(net: dict, address: str) -> bool:
    import ipaddress  # noqa: PLC0415 (see the imports)

    try:
        own = ipaddress.ip_interface(f"{net['ipaddr']}/{net['netmask']}")
        return ipaddress.ip_address(address) in own.network
    except ValueError:
        return False


def _ping(net: dict, address: str, count: int) -> str:
    import subprocess  # noqa: PLC0415 (see the imports)

    if net["link"] != "UP" or not net["ipaddr"] or not net["reachable"] or not _same_subnet(net, address):
        return _ping_line(count, 0)
    # Only from an address this node holds (a lab node's NPU alias): the peer is then on-link, on the
    # lab network; anywhere else (a developer's machine) nothing is sent.
    held = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False)
    if f" {net['ipaddr']}/" not in held.stdout:
        return _ping_line(count, 0)
    # Bound by a deadline, from the NPU's own address.
    done = subprocess.run(
        ["busybox", "ping", "-c", str(count), "-W", "1", "-w", str(count + 1), "-I", net["ipaddr"], address],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"(\d+) packets received", done.stdout)
    return _ping_line(count, int(found.group(1)) if found else 0)


def _hccn_get(state: dict, npu: dict, command: str, args: list[str]) -> list[str] | None:
    net = npu["net"]
    npu_id = npu["id"]
    up = net["link"] == "UP"
    if command == "link":
        return [f"link status: {net['link']}"]
    if command == "net_health":
        return [f"net health status: {net['net_health']}"]
    if command == "ip":
        # An NPU with no address prints nothing.
        return [f"ipaddr:{net['ipaddr']}", f"netmask:{net['netmask']}"] if net["ipaddr"] else []
    if command == "tls":
        return [
            f"dev_id:{npu_id}, tls switch[{net['tls']}](0:disable, 1:enable),"
            " tls preconfigured[1](0:non-preset, 1:preset), tls alarm time threshold[60]days"
        ]
    if command == "lldp":
        if not up:
            return []  # no switch answers on a port that is down
        return [
            "Chassis ID TLV", f"        MAC: 00:e0:fc:00:{state['profile'].get('node', 1):02x}:{npu_id:02x}",
            "Port ID TLV", f"        Ifname: {net['lldp_port']}",
            "System Description TLV", "        Versatile Routing Platform Software",
            "Maximum Frame Size TLV", "        9216", "End of LLDPDU TLV",
        ]  # fmt: skip
    if command == "netdetect":
        return [f"netdetect address: {net['netdetect']}"]
    if command == "gateway":
        return [f"default gateway:{net['gateway']}, netmask:{net['netmask']}"]
    if command == "speed":
        return [f"Speed: {net['speed_mbps']} Mb/s" if up else "Speed: Unknown!"]
    if command == "link_stat":
        return [
            f"[device {npu_id}]current time        : Wed Dec  2 10:00:00 2026",
            f"[device {npu_id}]link up count       : {1 if up else 0}",
            f"[device {npu_id}]link change records :",
            f"[device {npu_id}]    Wed Dec  2 09:00:00 2026    LINK {'UP' if up else 'DOWN'}",
        ]
    if command == "ping" and len(args) >= 2 and args[0] == "address":
        count = int(args[3]) if len(args) >= 4 and args[2] == "pkt" else 3
        return [_ping(net, args[1], count)]
    return None


def _hccn_set(state: dict, npu: dict, command: str, args: list[str]) -> bool:
    """The fixes users run; the state file changes, then the node is synced to it."""
    net = npu["net"]
    options = dict(zip(args[::2], args[1::2], strict=False))
    if command == "tls" and "enable" in options:
        net["tls"] = int(options["enable"])
    elif command == "ip" and "address" in options:
        net["ipaddr"] = options["address"]
        net["netmask"] = options.get("netmask", net["netmask"])
    elif command == "link" and args in (["up"], ["down"]):
        net["link"] = args[0].upper()
        net["net_health"] = "Success" if args[0] == "up" else "Fault"
    else:
        return False
    STATE_FILE.write_text(json.dumps(state, indent=2), encoding="utf-8")
    sync()
    return True


def hccn_tool(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] != "-i" or not argv[2].startswith("-") or argv[3] not in ("-g", "-s"):
        sys.stderr.write(HCCN_USAGE)
        return 2
    state = load_state()
    if state.get("error"):
        print(state["error"])
        return 255
    try:
        npu = _find(state, argv[1])
    except LookupError:
        print(f"device id {argv[1]} is invalid")
        return 1
    command, args = argv[2][1:], argv[4:]
    if argv[3] == "-s":
        if not _hccn_set(state, npu, command, args):
            sys.stderr.write(HCCN_USAGE)
            return 2
        return 0
    lines = _hccn_get(state, npu, command, args)
    if lines is None:
        sys.stderr.write(HCCN_USAGE)
        return 2
    if lines:
        print("\n".join(lines))
    return 0


def _hccn_conf(state: dict) -> str:
    lines = []
    for npu in state["npus"]:
        net = npu["net"]
        if net["conf_address"]:
            lines += [f"address_{npu['id']}={net['conf_address']}", f"netmask_{npu['id']}={net['netmask']}",
                      f"netdetect_{npu['id']}={net['netdetect']}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _sync_addresses(state: dict) -> None:
    """The NPUs' addresses on the lab interface: one labelled address per NPU whose link is up and
    that peers can reach; every other ``<dev>:npuN`` address goes."""
    import ipaddress  # noqa: PLC0415 (see the imports)
    import subprocess  # noqa: PLC0415

    route = subprocess.run(["ip", "-o", "route", "show", "default"], capture_output=True, text=True,
                           check=False)  # fmt: skip
    found = re.search(r"\bdev (\S+)", route.stdout)
    if not found:
        return
    dev = found.group(1)
    wanted = {}
    for npu in state["npus"]:
        net = npu["net"]
        if net["link"] == "UP" and net["reachable"] and net["ipaddr"]:
            prefix = ipaddress.ip_network(f"0.0.0.0/{net['netmask']}").prefixlen
            wanted[f"{net['ipaddr']}/{prefix}"] = f"{dev}:npu{npu['id']}"
    listed = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", dev], capture_output=True, text=True,
                            check=False)  # fmt: skip
    for line in listed.stdout.splitlines():
        fields = line.split()
        # "11: eth0 inet 192.168.100.101/24 scope global eth0:npu0\ valid_lft ...": the label
        # follows the scope.
        label = next((field.rstrip("\\") for field in fields if field.startswith(f"{dev}:npu")), None)
        address = fields[3]
        if label and wanted.get(address) != label:
            subprocess.run(["ip", "addr", "del", address, "dev", dev], check=False)
    for address, label in wanted.items():
        subprocess.run(["ip", "addr", "replace", address, "dev", dev, "label", label], check=False)


# The lab's stand-in CANN inner versions: the family (V100R001Cnn) a driver's compatible_version lists.
CANN_FAMILIES = {"8.0.RC3": "V100R001C19", "8.0.RC2": "V100R001C18", "8.0.RC1": "V100R001C17"}


def _write_versions(state: dict) -> None:
    """Driver, firmware and CANN toolkit version files, in the real files' form
    (tests/data/ascend_versions)."""
    import platform  # noqa: PLC0415 (see the imports)

    ascend = ROOT / "usr/local/Ascend"
    driver = state["driver_version"]
    cann = state.get("cann_version", "8.0.RC3")
    family = CANN_FAMILIES.get(cann.upper(), "V100R001C99")
    (ascend / "driver/version.info").write_text(
        f"Version={driver}\nascendhal_version=7.35.19\naicpu_version=1.0\ntdt_version=1.0\nlog_version=1.0\n"
        f"prof_version=2.0\ndvppkernels_version=1.1\ntsfw_version=1.0\n"
        f"Innerversion=V100R001C15SPC{driver.replace('.', '')}B220\n"
        "compatible_version=[V100R001C15],[V100R001C17],[V100R001C18],[V100R001C19]\n"
        f"compatible_version_fw=[7.0.0,7.1.99]\npackage_version={driver}\n",
        encoding="utf-8",
    )
    (ascend / "firmware").mkdir(parents=True, exist_ok=True)
    (ascend / "firmware/version.info").write_text(
        f"Version={state['firmware_version']}\nfirmware_version=1.0\npackage_version={driver}\n"
        "compatible_version_drv=[23.0.rc3,23.0.rc3.],[23.0.0,23.0.0.]\n",
        encoding="utf-8",
    )
    arch = f"{platform.machine()}-linux"
    toolkit = ascend / "ascend-toolkit" / cann / arch
    toolkit.mkdir(parents=True, exist_ok=True)
    (toolkit / "ascend_toolkit_install.info").write_text(
        f"package_name=Ascend-cann-toolkit\nversion={cann}\ninnerversion={family}B001\n"
        f"compatible_version=[V100R001C15],[V100R001C17],[V100R001C18],[V100R001C19]\narch={platform.machine()}\n"
        f"os=linux\npath=/usr/local/Ascend/ascend-toolkit/{cann}/{arch}\n",
        encoding="utf-8",
    )
    latest = ascend / "ascend-toolkit/latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(cann)


def main() -> int:
    name = Path(sys.argv[0]).name
    if name == "npu-sim-sync" or sys.argv[1:2] == ["--sync"]:
        return sync()
    if name == "hccn_tool":
        return hccn_tool(sys.argv[1:])
    return npu_smi(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
