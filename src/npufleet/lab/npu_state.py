"""The simulated NPUs of a lab node: the state file the in-node npu-smi emulator reads."""

from __future__ import annotations

import copy

# HBM per chip in MB, by chip name as npu-smi prints it (910B3: 64 GB, 910B4: 32 GB).
CHIP_HBM_MB = {"910B1": 65536, "910B2": 65536, "910B2C": 65536, "910B3": 65536, "910B4": 32768}

# Bus ids in the order an 8-NPU Atlas 800T A2 lists them.
BUS_IDS = [
    "0000:C1:00.0",
    "0000:C2:00.0",
    "0000:81:00.0",
    "0000:82:00.0",
    "0000:01:00.0",
    "0000:02:00.0",
    "0000:41:00.0",
    "0000:42:00.0",
]

DEFAULT_DRIVER = "23.0.6"  # the manual pins driver 23.0.6 with CANN 8.0.rc3
DEFAULT_FIRMWARE = "7.1.0.11.220"  # inside driver 23.0.x's compatible_version_fw, [7.0.0,7.1.99]
DEFAULT_CANN = "8.0.RC3"
IDLE_HBM_MB = 3400  # what an idle 910B reports as used
NPU_NETMASK = "255.255.255.0"


def npu_address(npu_id: int, node: int) -> str:
    """NPU ``npu_id``'s RoCE address on lab node ``node`` (1-based): same-index NPUs share the subnet
    192.168.(100+id).0/24 across nodes, as on real clusters, and the node number is the host part."""
    return f"192.168.{100 + npu_id}.{100 + node}"


def _network(npu_id: int, node: int) -> dict:
    address = npu_address(npu_id, node)
    detect = address.rsplit(".", 1)[0] + ".1"
    return {
        "link": "UP",
        "net_health": "Success",
        "ipaddr": address,
        "netmask": NPU_NETMASK,
        # What /etc/hccn.conf says; a stale entry differs from what the NPU has (fault device_ip).
        "conf_address": address,
        "netdetect": detect,
        "gateway": detect,
        "tls": 0,
        # False: the address is kept but peers get no answer (fault unreachable).
        "reachable": True,
        "speed_mbps": 200000,
        "lldp_port": f"400GE1/1/{npu_id + 1}:{node}",
    }


def initial_state(chip: str = "910B3", npus: int = 8, driver: str = DEFAULT_DRIVER, node: int = 1) -> dict:
    """A healthy, idle node (number ``node`` of its lab) with ``npus`` chips of type ``chip``."""
    if chip not in CHIP_HBM_MB:
        raise ValueError(f"unknown chip {chip!r}: choose one of {', '.join(sorted(CHIP_HBM_MB))}")
    if not 1 <= npus <= 16:
        raise ValueError(f"--npus must be between 1 and 16, got {npus}")
    return {
        "chip": chip,
        "driver_version": driver,
        "firmware_version": DEFAULT_FIRMWARE,
        "cann_version": DEFAULT_CANN,
        "error": None,
        # What 'npufleet lab fault NODE clear' restores.
        "profile": {"chip": chip, "npus": npus, "driver": driver, "node": node},
        "npus": [
            {
                "id": index,
                "health": "OK",
                "power_w": 92.5 + index,
                "temp_c": 38 + index % 4,
                "aicore_pct": 0,
                "hbm_used_mb": IDLE_HBM_MB,
                "hbm_total_mb": CHIP_HBM_MB[chip],
                "bus_id": BUS_IDS[index] if index < len(BUS_IDS) else f"0000:{0x10 + index:02X}:00.0",
                "processes": [],
                "net": _network(index, node),
            }
            for index in range(npus)
        ],
    }


def _npu(state: dict, npu_id: int) -> dict:
    for npu in state["npus"]:
        if npu["id"] == npu_id:
            return npu
    raise ValueError(f"NPU {npu_id} does not exist on this node (it has {len(state['npus'])})")


def with_health(state: dict, npu_id: int, health: str) -> dict:
    new = copy.deepcopy(state)
    _npu(new, npu_id)["health"] = health
    return new


def with_process(
    state: dict, npu_id: int, pid: int = 43210, name: str = "python", memory_mb: int = 20480
) -> dict:
    new = copy.deepcopy(state)
    npu = _npu(new, npu_id)
    npu["processes"].append({"pid": pid, "name": name, "memory_mb": memory_mb})
    npu["hbm_used_mb"] = min(npu["hbm_total_mb"], npu["hbm_used_mb"] + memory_mb)
    npu["aicore_pct"] = 35
    return new


def with_driver(state: dict, version: str) -> dict:
    new = copy.deepcopy(state)
    new["driver_version"] = version
    return new


def with_npu_count(state: dict, count: int) -> dict:
    if not 0 <= count <= len(state["npus"]):
        raise ValueError(f"count must be between 0 and {len(state['npus'])}, got {count}")
    new = copy.deepcopy(state)
    new["npus"] = new["npus"][:count]
    return new


def with_error(state: dict, message: str) -> dict:
    new = copy.deepcopy(state)
    new["error"] = message
    return new


def with_network(state: dict, npu_id: int, **changes: object) -> dict:
    """The state with NPU ``npu_id``'s network port changed (link, net_health, tls, ...)."""
    new = copy.deepcopy(state)
    net = _npu(new, npu_id)["net"]
    unknown = set(changes) - set(net)
    if unknown:
        raise ValueError(f"unknown network settings {sorted(unknown)}: choose from {sorted(net)}")
    net.update(changes)
    return new


VERSION_KEYS = {"driver": "driver_version", "firmware": "firmware_version", "cann": "cann_version"}


def with_versions(state: dict, versions: dict) -> dict:
    """The state with other driver, firmware or CANN toolkit versions (keys of VERSION_KEYS)."""
    unknown = set(versions) - set(VERSION_KEYS)
    if unknown:
        raise ValueError(f"unknown version keys {sorted(unknown)}: choose from {', '.join(VERSION_KEYS)}")
    new = copy.deepcopy(state)
    for key, version in versions.items():
        new[VERSION_KEYS[key]] = version
    return new
