# Copyright: npufleet contributors
# Apache License 2.0
"""Parsers for the text that Huawei's ``hccn_tool`` prints, and for ``/etc/hccn.conf``.

Pure functions: text in, plain data out. Nothing here runs a command or knows about
AnsibleModule, so the unit tests feed recorded outputs straight in.

Each parser returns a dict with an ``unparsed`` list: lines it did not recognise, kept so that a
new driver's wording shows up instead of silently reading as "unset". None of them raises on odd
input; a value that is not there reads as None.
"""

from __future__ import annotations

import re

__all__ = [
    "CONF_KEYS",
    "READINGS",
    "parse_gateway",
    "parse_hccn_conf",
    "parse_ip",
    "parse_link",
    "parse_link_stat",
    "parse_lldp",
    "parse_net_health",
    "parse_netdetect",
    "parse_ping",
    "parse_speed",
    "parse_stat",
    "parse_tls",
]

# The per-NPU keys of /etc/hccn.conf that ascend-deployer writes (key_N=value).
CONF_KEYS = ("address", "netmask", "netdetect", "gateway")

_LINK = re.compile(r"^link\s+status\s*:\s*(\S+)", re.IGNORECASE)
_NET_HEALTH = re.compile(r"^net\s+health\s+status\s*:\s*(.*?)\s*$", re.IGNORECASE)
_IPADDR = re.compile(r"^ipaddr\s*:\s*(\S*)\s*$", re.IGNORECASE)
_NETMASK = re.compile(r"^netmask\s*:\s*(\S*)\s*$", re.IGNORECASE)
_NETDETECT = re.compile(r"^netdetect\s+address\s*:\s*(\S*)\s*$", re.IGNORECASE)
_GATEWAY = re.compile(r"^default\s+gateway\s*:\s*([^,\s]*)\s*(?:,\s*netmask\s*:\s*(\S*))?\s*$", re.IGNORECASE)
_SPEED = re.compile(r"^speed\s*:\s*(?:(\d+)\s*Mb/s|(unknown)!?)\s*$", re.IGNORECASE)
_TLS_DEV = re.compile(r"dev_id\s*:\s*(\d+)")
_TLS_SWITCH = re.compile(r"tls\s+switch\s*\[(\d+)\]")
_TLS_PRESET = re.compile(r"tls\s+preconfigured\s*\[(\d+)\]")
_TLS_ALARM = re.compile(r"alarm\s+time\s+threshold\s*\[(\d+)\]")
_PING_SENT = re.compile(r"(\d+)\s+packets?\s+transmitted")
_PING_RECEIVED = re.compile(r"(\d+)\s+(?:packets?\s+)?received")
_PING_LOSS = re.compile(r"(\d+(?:\.\d+)?)%\s+packet\s+loss")
# Per-packet lines of hccn_tool's ping; recognised, not needed for the verdict.
_PING_CHATTER = re.compile(r"^(?:device\s+\d+\s+)?PING\s|^recv\s+seq=|[Tt]ime\s*out|^-+.*statistics")
_LINK_STAT_PREFIX = re.compile(r"^\[(?:device|devid)\s+(\d+)\]\s*(.*)$")
_LINK_CHANGE = re.compile(r"^(.*?\S)\s+LINK\s+(UP|DOWN)\s*$", re.IGNORECASE)
_CONF_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*?)_(\d+)\s*=\s*(.*?)\s*$")
_STAT_LINE = re.compile(r"^([A-Za-z0-9_]+)\s*:\s*(-?\d+)\s*$")
# TLV headers of ``-lldp -g`` read into named fields (lowercased, without "TLV").
_LLDP_SECTIONS = (
    "chassis id",
    "port id",
    "port description",
    "system name",
    "system description",
    "maximum frame size",
    "end of lldpdu",
)


def _lines(text: str | None) -> list[str]:
    """Stripped non-blank lines; None or non-text reads as no output."""
    if not isinstance(text, str):
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _single(text: str, pattern, key: str, convert=None) -> dict:
    """One ``key: value`` fact per output: the first line matching ``pattern`` gives it."""
    result = {key: None, "unparsed": []}
    for line in _lines(text):
        match = pattern.match(line)
        if match and result[key] is None:
            value = match.group(1)
            result[key] = convert(value) if convert else (value or None)
        else:
            result["unparsed"].append(line)
    return result


def parse_link(text: str) -> dict:
    """``hccn_tool -i N -link -g``: ``link status: UP`` -> {"link": "UP"}."""
    return _single(text, _LINK, "link", lambda value: value.upper())


def parse_net_health(text: str) -> dict:
    """``hccn_tool -i N -net_health -g``: ``net health status: Success`` (or Fault, Init, ...)."""
    return _single(text, _NET_HEALTH, "net_health")


def parse_netdetect(text: str) -> dict:
    """``hccn_tool -i N -netdetect -g``: ``netdetect address: 11.12.165.1``."""
    return _single(text, _NETDETECT, "netdetect")


def parse_ip(text: str) -> dict:
    """``hccn_tool -i N -ip -g``: ``ipaddr:`` and ``netmask:`` lines; no output means no address."""
    result = {"ipaddr": None, "netmask": None, "unparsed": []}
    for line in _lines(text):
        address = _IPADDR.match(line)
        netmask = _NETMASK.match(line)
        if address and result["ipaddr"] is None:
            result["ipaddr"] = address.group(1) or None
        elif netmask and result["netmask"] is None:
            result["netmask"] = netmask.group(1) or None
        else:
            result["unparsed"].append(line)
    return result


def parse_gateway(text: str) -> dict:
    """``hccn_tool -i N -gateway -g``: ``default gateway:11.12.165.1, netmask:255.255.255.0``."""
    result = {"gateway": None, "netmask": None, "unparsed": []}
    for line in _lines(text):
        match = _GATEWAY.match(line)
        if match and result["gateway"] is None:
            result["gateway"] = match.group(1) or None
            result["netmask"] = match.group(2) or None
        else:
            result["unparsed"].append(line)
    return result


def parse_speed(text: str) -> dict:
    """``hccn_tool -i N -speed -g``: ``Speed: 100000 Mb/s``; ``Unknown!`` reads as None."""
    result = {"speed_mbps": None, "unparsed": []}
    seen = False
    for line in _lines(text):
        match = _SPEED.match(line)
        if match and not seen:
            seen = True
            result["speed_mbps"] = _int(match.group(1))
        else:
            result["unparsed"].append(line)
    return result


def parse_tls(text: str) -> dict:
    """``hccn_tool -i N -tls -g``: one entry per ``dev_id:N, tls switch[S](...), ...`` line.

    A line with a switch but no ``dev_id`` gives an entry with ``dev_id`` None; a line with only
    the preconfigured flag or the alarm threshold completes the entry before it.
    """
    result = {"tls": [], "unparsed": []}
    for line in _lines(text):
        dev_id, switch = _TLS_DEV.search(line), _TLS_SWITCH.search(line)
        preset, alarm = _TLS_PRESET.search(line), _TLS_ALARM.search(line)
        if dev_id or switch:
            entry = {
                "dev_id": int(dev_id.group(1)) if dev_id else None,
                "switch": int(switch.group(1)) if switch else None,
                "preconfigured": None,
                "alarm_days": None,
            }
            result["tls"].append(entry)
        elif (preset or alarm) and result["tls"]:
            entry = result["tls"][-1]
        else:
            result["unparsed"].append(line)
            continue
        if preset:
            entry["preconfigured"] = int(preset.group(1))
        if alarm:
            entry["alarm_days"] = int(alarm.group(1))
    return result


def parse_lldp(text: str) -> dict:
    """``hccn_tool -i N -lldp -g``: a block per TLV, a ``... TLV`` header then indented values.

    The Ifname of the Port ID TLV is the peer switch port; no Ifname means no switch answered.
    Lines under TLVs not read here are kept by header in ``other_tlvs``.
    """
    result = {
        "chassis_mac": None,
        "chassis_id": None,
        "port_ifname": None,
        "port_id": None,
        "port_description": None,
        "system_name": None,
        "system_description": None,
        "max_frame_size": None,
        "other_tlvs": {},
        "unparsed": [],
    }
    described = []
    section = header = None
    for line in _lines(text):
        if line.endswith("TLV"):
            header, section = line, line[: -len("TLV")].strip().lower()
            if section not in _LLDP_SECTIONS:
                result["other_tlvs"].setdefault(header, [])
            continue
        key, colon, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if section == "chassis id":
            if key == "mac" and value:
                result["chassis_mac"] = value
            result["chassis_id"] = value if colon else line
        elif section == "port id":
            if key == "ifname" and value:
                result["port_ifname"] = value
            result["port_id"] = value if colon else line
        elif section == "port description":
            result["port_description"] = line
        elif section == "system name":
            result["system_name"] = line
        elif section == "system description":
            described.append(line)
        elif section == "maximum frame size" and line.isdigit():
            result["max_frame_size"] = int(line)
        elif section is not None and section not in _LLDP_SECTIONS:
            result["other_tlvs"][header].append(line)
        else:
            result["unparsed"].append(line)
    result["system_description"] = "\n".join(described) if described else None
    return result


def parse_ping(text: str) -> dict:
    """``hccn_tool -i N -ping -g address A``: the ``sent, received, loss%`` statistics line.

    As MindIE's msprechecker reads it: 100% loss is unreachable, any reply is reachable. Without a
    statistics line ``reachable`` is None (the caller decides what that means).
    """
    result = {"transmitted": None, "received": None, "loss_pct": None, "reachable": None, "unparsed": []}
    for line in _lines(text):
        loss = _PING_LOSS.search(line)
        if loss and result["loss_pct"] is None:
            sent, received = _PING_SENT.search(line), _PING_RECEIVED.search(line)
            result["loss_pct"] = float(loss.group(1))
            result["transmitted"] = int(sent.group(1)) if sent else None
            result["received"] = int(received.group(1)) if received else None
        elif not _PING_CHATTER.search(line):
            result["unparsed"].append(line)
    if result["loss_pct"] is not None:
        if result["loss_pct"] >= 100.0:
            result["reachable"] = False
        elif result["received"] is not None:
            result["reachable"] = result["received"] > 0
        else:
            result["reachable"] = True
    return result


def parse_link_stat(text: str) -> dict:
    """``hccn_tool -i N -link_stat -g``: link-up count and the link change records, newest first.

    Every line starts ``[device N]`` (``[devid N]`` on some drivers).
    """
    result = {"dev_id": None, "current_time": None, "link_up_count": None, "changes": [], "unparsed": []}
    for line in _lines(text):
        prefixed = _LINK_STAT_PREFIX.match(line)
        if not prefixed:
            result["unparsed"].append(line)
            continue
        if result["dev_id"] is None:
            result["dev_id"] = int(prefixed.group(1))
        body = prefixed.group(2).strip()
        key, _, value = body.partition(":")
        key, value = " ".join(key.split()).lower(), value.strip()
        change = _LINK_CHANGE.match(body)
        if key == "current time" and value:
            result["current_time"] = " ".join(value.split())
        elif key == "link up count" and value.isdigit():
            result["link_up_count"] = int(value)
        elif key == "link change records":
            pass
        elif change:
            result["changes"].append(
                {"time": " ".join(change.group(1).split()), "state": change.group(2).upper()}
            )
        else:
            result["unparsed"].append(line)
    return result


def parse_stat(text: str) -> dict:
    """``hccn_tool -i N -stat -g``: ``counter:value`` lines after ``packet statistics:``."""
    result = {"counters": {}, "unparsed": []}
    for line in _lines(text):
        match = _STAT_LINE.match(line)
        if match:
            result["counters"][match.group(1)] = int(match.group(2))
        elif line.lower() != "packet statistics:":
            result["unparsed"].append(line)
    return result


def parse_hccn_conf(text: str) -> dict:
    """``/etc/hccn.conf``: ``address_0=...`` lines into ``{"npus": {0: {...}}}``.

    Keys other than address, netmask, netdetect and gateway land in the NPU's ``other`` dict.
    """
    result = {"npus": {}, "unparsed": []}
    for line in _lines(text):
        if line.startswith("#"):
            continue
        match = _CONF_LINE.match(line)
        if not match:
            result["unparsed"].append(line)
            continue
        key, npu_id, value = match.group(1), int(match.group(2)), match.group(3)
        npu = result["npus"].get(npu_id)
        if npu is None:
            npu = dict.fromkeys(CONF_KEYS)
            npu["other"] = {}
            result["npus"][npu_id] = npu
        if key in CONF_KEYS:
            npu[key] = value
        else:
            npu["other"][key] = value
    return result


# Reading name -> (hccn_tool arguments after ``-i N``, parser of its output).
READINGS = {
    "link": (["-link", "-g"], parse_link),
    "net_health": (["-net_health", "-g"], parse_net_health),
    "ip": (["-ip", "-g"], parse_ip),
    "tls": (["-tls", "-g"], parse_tls),
    "lldp": (["-lldp", "-g"], parse_lldp),
    "netdetect": (["-netdetect", "-g"], parse_netdetect),
    "gateway": (["-gateway", "-g"], parse_gateway),
    "speed": (["-speed", "-g"], parse_speed),
}
