#!/usr/bin/python3
"""Simulated Ascend NPUs for an npufleet lab node (runs inside the node, standard library only).

Installed as /usr/local/lib/npufleet-lab/npu_sim.py and called under two names:

* ``npu-smi`` (symlinks in /usr/local/sbin and /usr/local/bin): prints what Huawei's npu-smi
  prints for ``info``, ``info -l``, ``info -t board -i N``, ``info -t usages -i N`` and
  ``info -m``, in the 910B/A2 layout, from the node's state file.
* ``npu-sim-sync``: makes the device nodes and the driver tree match the state file. A systemd
  unit runs it at boot, and ``npufleet lab fault`` runs it after changing the state.

The state file (/var/lib/npufleet-lab/state.json) is the single source of truth, so a test can
inject a fault (an unhealthy chip, a busy NPU, another driver, fewer chips, a failing driver)
by rewriting it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

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
    if path.exists():
        info = path.stat()
        if stat.S_ISCHR(info.st_mode) and os.major(info.st_rdev) == major and os.minor(info.st_rdev) == minor:
            return
        path.unlink()
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    os.chmod(path, 0o666)


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
    (ROOT / DRIVER_STATE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    (driver / "version.info").write_text(
        f"Version={state['driver_version']}\nascendhal_version=7.35.19\naicpu_version=1.0\n"
        f"tdt_version=1.0\nlog_version=1.0\nprof_version=2.0\ndvppkernels_version=1.1\n"
        f"tsfw_version=1.0\nInnerversion=V100R001C{state['driver_version'].replace('.', '')}\n"
        f"compatible_version=[V100R001C30],[V100R001C13],[V100R001C15],[V100R001C17]\n",
        encoding="utf-8",
    )
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
    (ROOT / "var/log/npu").mkdir(parents=True, exist_ok=True)
    return 0


def main() -> int:
    name = Path(sys.argv[0]).name
    if name == "npu-sim-sync" or sys.argv[1:2] == ["--sync"]:
        return sync()
    return npu_smi(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
