# Copyright: npufleet contributors
# Apache License 2.0
"""Parsers for the text that Huawei's ``npu-smi`` prints.

Pure functions: text in, plain data out. Nothing here runs a command or knows about
AnsibleModule, so the unit tests feed recorded outputs straight in.

The table parser works on cells split at ``|`` rather than on column offsets, because the
table's width changes between driver generations (86 to 116 characters) and chip families
(910A, 910B/A2, A3/910C, 310P, 950).
"""

from __future__ import annotations

import re

__all__ = [
    "NpuSmiError",
    "check_error",
    "health_rank",
    "parse_board",
    "parse_common",
    "parse_flat",
    "parse_info",
    "parse_list",
    "parse_mapping",
    "parse_usages",
]

# Lines npu-smi prints instead of its table when the driver cannot be used.
_ERROR_PATTERNS = (
    re.compile(r"dcmi model initialized failed, because the device is used\. ret is (-?\d+)"),
    re.compile(r"dcmi module initialize failed\. ret is (-?\d+)"),
    re.compile(r"npu get board type failed\. ret is (-?\d+)"),
    re.compile(r"There is no NPU card on this server\."),
)

_ERROR_HINTS = {
    "-8020": "the NPUs are already mounted by another container: release them or mount disjoint devices",
}

# Health words from best to worst; anything unknown ranks as worst.
_HEALTH_ORDER = ("OK", "Warning", "Alarm", "Critical")

_PAIR = re.compile(r"(\d+|NA|-)\s*/\s*(\d+|NA|-)")
_VERSION_HEADER = re.compile(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)")
_NO_PROCESS = re.compile(r"No running processes found in NPU\s+(\d+)")


class NpuSmiError(Exception):
    """npu-smi printed one of its failure messages instead of data."""

    def __init__(self, message: str, code: str | None = None) -> None:
        self.code = code
        hint = _ERROR_HINTS.get(code or "")
        super().__init__(f"{message} ({hint})" if hint else message)


def check_error(text: str) -> None:
    """Raise NpuSmiError when ``text`` is one of npu-smi's failure outputs."""
    for line in text.splitlines():
        for pattern in _ERROR_PATTERNS:
            match = pattern.search(line)
            if match:
                code = match.group(1) if match.groups() else None
                raise NpuSmiError(line.strip(), code)


def health_rank(health: str | None) -> int:
    """Order health words so that the worst chip of an NPU can be picked."""
    if health in _HEALTH_ORDER:
        return _HEALTH_ORDER.index(health)
    return len(_HEALTH_ORDER)


def _number(text: str | None) -> int | float | None:
    """'121.6' -> 121.6, '40' -> 40, 'NA' / '-' / '' -> None."""
    if text is None:
        return None
    text = text.strip()
    if not text or text in ("NA", "-", "N/A"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _cells(line: str) -> list[str]:
    """Split a ``| a | b |`` table row into stripped cells."""
    parts = line.strip().split("|")
    return [part.strip() for part in parts[1:-1]] if len(parts) >= 3 else []


def _pairs(text: str) -> list[tuple[int | None, int | None]]:
    return [(_number(used), _number(total)) for used, total in _PAIR.findall(text)]


def _first_row(cells: list[str]) -> dict:
    """Row 1 of a chip: ``NPU Name | Health | Power Temp Hugepages``."""
    ident = cells[0].split(None, 1)
    values = cells[2]
    pairs = _pairs(values)
    before_pairs = _PAIR.split(values)[0].split() if pairs else values.split()
    hugepages = pairs[0] if pairs else (None, None)
    return {
        "npu_id": int(ident[0]),
        "name": ident[1].strip() if len(ident) > 1 else "",
        "health": cells[1],
        "power_w": _number(before_pairs[0]) if before_pairs else None,
        "temp_c": _number(before_pairs[1]) if len(before_pairs) > 1 else None,
        "hugepages_used": hugepages[0],
        "hugepages_total": hugepages[1],
    }


def _second_row(cells: list[str]) -> dict:
    """Row 2 of a chip: ``Chip [Phy-ID|Device] | Bus-Id | AICore Memory [HBM]``."""
    ids = [_number(token) for token in cells[0].split()]
    values = cells[2]
    pairs = _pairs(values)
    head = _PAIR.split(values)[0].split() if pairs else values.split()
    memory = pairs[0] if pairs else (None, None)
    hbm = pairs[1] if len(pairs) > 1 else (None, None)
    bus_id = cells[1] if cells[1] not in ("", "NA", "-") else None
    return {
        "chip_id": ids[0] if ids else 0,
        "phy_id": ids[1] if len(ids) > 1 else None,
        "bus_id": bus_id,
        "aicore_pct": _number(head[0]) if head else None,
        "memory_used_mb": memory[0],
        "memory_total_mb": memory[1],
        "hbm_used_mb": hbm[0],
        "hbm_total_mb": hbm[1],
    }


def _normalise_950(cells: list[str]) -> list[str]:
    """The 950 layout splits ``NPU ID | Name`` into two cells; join them to the common shape."""
    if len(cells) == 4:
        return [f"{cells[0]} {cells[1]}".strip(), cells[2], cells[3]]
    return cells


def _add_chip(npus: list[dict], first: dict, second: dict) -> None:
    chip = {
        "chip_id": second["chip_id"],
        "phy_id": second["phy_id"],
        "bus_id": second["bus_id"],
        "health": first["health"],
        "power_w": first["power_w"],
        "temp_c": first["temp_c"],
        "hugepages_used": first["hugepages_used"],
        "hugepages_total": first["hugepages_total"],
        "aicore_pct": second["aicore_pct"],
        "memory_used_mb": second["memory_used_mb"],
        "memory_total_mb": second["memory_total_mb"],
        "hbm_used_mb": second["hbm_used_mb"],
        "hbm_total_mb": second["hbm_total_mb"],
    }
    # Dies of one card (A3, 310P Duo) each print their own two rows under the same NPU id.
    if npus and npus[-1]["id"] == first["npu_id"]:
        npu = npus[-1]
    else:
        npu = {"id": first["npu_id"], "name": first["name"], "chips": []}
        npus.append(npu)
    npu["chips"].append(chip)
    chips = npu["chips"]
    npu["health"] = max((c["health"] for c in chips), key=health_rank)
    npu["power_w"] = next((c["power_w"] for c in chips if c["power_w"] is not None), None)
    temps = [c["temp_c"] for c in chips if c["temp_c"] is not None]
    npu["temp_c"] = max(temps) if temps else None


def _process_row(cells: list[str], memory_in_bytes: bool) -> dict | None:
    ids = cells[0].split()
    if not ids or not ids[0].isdigit() or len(cells) < 4:
        return None
    memory = _number(cells[3])
    if memory_in_bytes and memory is not None:
        memory = round(memory / (1024 * 1024), 3)
    process = {
        "npu_id": int(ids[0]),
        "chip_id": int(ids[1]) if len(ids) > 1 and ids[1].isdigit() else 0,
        "pid": int(cells[1]),
        "name": cells[2],
        "memory_mb": memory,
    }
    if len(cells) > 4:
        process["container_pid"] = _number(cells[4])
    return process


def parse_info(text: str) -> dict:
    """Parse ``npu-smi info``: versions, NPUs with their chips, and processes.

    Raises NpuSmiError for npu-smi's failure messages and ValueError for text that holds no
    NPU table at all.
    """
    check_error(text)
    result: dict = {
        "tool_version": None,
        "driver_version": None,
        "npus": [],
        "processes": [],
        "idle_npus": [],
        "warnings": [],
    }
    pending: dict | None = None
    in_processes = False
    memory_in_bytes = False
    seen_table = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        stripped = line.strip()
        if stripped.startswith("[WARNING]"):
            result["warnings"].append(stripped)
            continue
        if stripped.startswith("+"):
            continue
        version = _VERSION_HEADER.search(line)
        if version:
            result["tool_version"], result["driver_version"] = version.groups()
            seen_table = True
            continue
        idle = _NO_PROCESS.search(line)
        if idle:
            result["idle_npus"].append(int(idle.group(1)))
            in_processes = seen_table = True
            continue
        if "Process id" in line:
            in_processes = seen_table = True
            memory_in_bytes = "memory(B)" in line
            continue
        if "Health" in line or "Bus-Id" in line:
            seen_table = True
            continue
        cells = _cells(line)
        if in_processes:
            process = _process_row(cells, memory_in_bytes)
            if process:
                result["processes"].append(process)
            continue
        cells = _normalise_950(cells)
        if len(cells) < 3:
            continue
        if pending is None:
            pending = _first_row(cells)
        else:
            _add_chip(result["npus"], pending, _second_row(cells))
            pending = None
    if not seen_table and not result["npus"]:
        raise ValueError("no npu-smi table found in the output")
    result["count"] = len(result["npus"])
    result["chip_count"] = sum(len(npu["chips"]) for npu in result["npus"])
    return result


def _key(name: str) -> str:
    """'HBM Capacity(MB)' -> 'hbm_capacity_mb', 'Aicore Usage Rate(%)' -> 'aicore_usage_rate_pct'."""
    name = name.replace("(%)", " pct").replace("(", " ").replace(")", " ")
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def _value(text: str) -> int | str | None:
    text = text.strip()
    if text in ("NA", "-", ""):
        return None
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _key_values(text: str) -> list[tuple[str, int | str | None]]:
    """``\\tKey   : value`` lines (a TAB or spaces before, keys padded) as (snake_key, value)."""
    pairs = []
    for line in text.splitlines():
        if ":" not in line or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition(" : ") if " : " in line else line.partition(":")
        if key.strip():
            pairs.append((_key(key), _value(value)))
    return pairs


def parse_list(text: str) -> dict:
    """Parse ``npu-smi info -l``: total count and one entry per NPU card."""
    check_error(text)
    result: dict = {"total_count": None, "npus": []}
    for key, value in _key_values(text):
        if key in ("total_count", "card_count"):
            result["total_count"] = value
        elif key == "npu_id":
            result["npus"].append({"npu_id": value})
        elif result["npus"]:
            result["npus"][-1][key] = value
    if result["total_count"] is None:
        raise ValueError("no 'Total Count' line in the npu-smi info -l output")
    return result


def parse_flat(text: str) -> dict:
    """Parse a flat key/value output (``-t health``, chip-level ``-t board``) into a dict."""
    check_error(text)
    return dict(_key_values(text))


def parse_board(text: str) -> dict:
    """Parse ``npu-smi info -t board -i N`` into a flat dict (``software_version`` is the driver)."""
    board = parse_flat(text)
    if "npu_id" not in board:
        raise ValueError("no 'NPU ID' line in the npu-smi board output")
    return board


def parse_usages(text: str) -> dict:
    """Parse ``npu-smi info -t usages -i N``: each chip's block ends with its ``Chip ID`` line."""
    check_error(text)
    result: dict = {"npu_id": None, "chip_count": None, "chips": []}
    block: dict = {}
    for key, value in _key_values(text):
        if key in ("npu_id", "chip_count") and result[key] is None:
            result[key] = value
        elif key in ("chip_id", "chip_name"):
            block[key] = value
            result["chips"].append(block)
            block = {}
        else:
            block[key] = value
    if block:
        result["chips"].append(block)
    if result["npu_id"] is None:
        raise ValueError("no 'NPU ID' line in the npu-smi usages output")
    return result


def parse_common(text: str) -> dict:
    """Parse ``npu-smi info -t common -i N``: here a chip's block *starts* with ``Chip ID``
    (or ``Chip Name`` for the board's MCU)."""
    check_error(text)
    result: dict = {"npu_id": None, "chip_count": None, "chips": []}
    for key, value in _key_values(text):
        if key in ("npu_id", "chip_count") and result[key] is None:
            result[key] = value
        elif key in ("chip_id", "chip_name") or not result["chips"]:
            result["chips"].append({key: value})
        else:
            result["chips"][-1][key] = value
    if result["npu_id"] is None:
        raise ValueError("no 'NPU ID' line in the npu-smi common output")
    return result


def parse_mapping(text: str) -> list[dict]:
    """Parse ``npu-smi info -m``: columns are separated by runs of spaces or a TAB."""
    check_error(text)
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not rows or not rows[0].startswith("NPU ID"):
        raise ValueError("no 'NPU ID' header in the npu-smi info -m output")
    header = [_key(column) for column in re.split(r"\s{2,}|\t", rows[0])]
    mapping = []
    for row in rows[1:]:
        values = re.split(r"\s{2,}|\t", row)
        entry = {column: _value(value) for column, value in zip(header, values)}
        mapping.append(entry)
    return mapping
