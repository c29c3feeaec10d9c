# Copyright: npufleet contributors
# Apache License 2.0
"""The gate before a job: what every node's readings (hccn_info, listen_ports, ascend_version_info)
say about the job as a whole, as a table per node and a list of problems, each naming the node, the
NPU and the command that fixes it.

Pure functions on the modules' results, so the unit tests feed them recorded readings."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.plugin_utils.number_runs import number_runs

HCCN = "hccn_tool"
INIT_POLICIES = ("warn", "fail")


def _subnet(npu: dict) -> str | None:
    try:
        return str(ipaddress.ip_interface(f"{npu['ipaddr']}/{npu['netmask']}").network)
    except (KeyError, TypeError, ValueError):
        return None


def ping_targets(facts: list[dict], host: str, npus: list[int]) -> list[dict]:
    """What ``host`` pings: for every other node, the address of its NPU of the same index (the
    peers HCCL connects to across nodes), as hccn_info's ``ping`` option takes them."""
    targets = []
    for other in facts:
        if other.get("host") == host:
            continue
        by_id = {npu["id"]: npu for npu in (other.get("hccn") or {}).get("npus") or []}
        for npu_id in npus:
            address = (by_id.get(int(npu_id)) or {}).get("ipaddr")
            if address:
                targets.append({"npu": int(npu_id), "address": address})
    return targets


# The gate's registered readings on every node, by the key job_gate_report reads them under.
READING_VARS = {"hccn": "job_gate_hccn", "pings": "job_gate_pings", "ports": "job_gate_listeners",
                "versions": "job_gate_version_facts"}  # fmt: skip


def _address(host: str, found) -> str:
    return found.get("npufleet_node_address") or found.get("ansible_host") or host


def overrides(hosts: list[str], hostvars, var: str) -> dict:
    """``{node address: devices}`` for the hosts where ``var`` (a list of ``{device_id,
    device_ip}`` typed by hand) is set: rank_servers_from_facts' overrides."""
    found = {}
    for host in hosts:
        values = hostvars.get(host) or {}
        if values.get(var):
            found[_address(host, values)] = list(values[var])
    return found


def collect(hosts: list[str], hostvars, readings: dict | None = None) -> list[dict]:
    """Every node's readings from ``hostvars`` in ``hosts`` order (``readings``: the host variable of
    each kind, default READING_VARS); a skipped or missing reading is None, and a node's own address
    is what rank tables name it by."""
    facts = []
    for host in hosts:
        found = hostvars.get(host) or {}
        fact = {"host": host, "address": _address(host, found)}
        for key, var in (readings or READING_VARS).items():
            result = found.get(var)
            # A failed reading (its node left the play) says nothing: not "free", not "ok".
            fact[key] = None if not result or result.get("skipped") or result.get("failed") else result
        if fact["pings"] is not None:
            fact["pings"] = fact["pings"].get("pings") or []
        # What rank_servers_from_facts takes: the node's address and its NPUs as the gate read them.
        fact["server_id"] = fact["address"]
        fact["npus"] = (fact["hccn"] or {}).get("npus") or []
        facts.append(fact)
    return facts


def port_list(ports: list[dict], hccl_base_port=0) -> list[dict]:
    """The job's ports as ``{port, what}``, with HCCL's 16 host ports from ``hccl_base_port`` (0: none);
    a port that is not a number is kept as it is, for the gate's input check to name."""
    listed = [dict(port) for port in ports or []]
    base = int(hccl_base_port or 0)
    if base:
        listed += [
            {"port": port, "what": f"HCCL_IF_BASE_PORT {base} + {port - base}"}
            for port in range(base, base + 16)
        ]
    return listed


class _Report:
    def __init__(self, init_policy: str):
        if init_policy not in INIT_POLICIES:
            raise AnsibleFilterError(
                f"job_gate_report: init_policy must be one of {INIT_POLICIES}, got {init_policy!r}"
            )
        self.init_policy = init_policy
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def add(self, host: str, npu: int | None, what: str, fix: str, warn: bool = False) -> str:
        where = f"{host} NPU {npu}" if npu is not None else host
        (self.warnings if warn else self.problems).append(f"{where}: {what}; fix: {fix}")
        return "WARN" if warn else "FAIL"


def _npu_cells(report: _Report, host: str, npu: dict) -> dict:
    """The per-NPU checks of one node: link, net health, address against /etc/hccn.conf."""
    npu_id = npu["id"]
    cells = {}
    for error in npu.get("errors") or []:
        report.add(host, npu_id, f"{HCCN} failed ({error})", "check the driver on this node (npu-smi info)")
    link = npu.get("link")
    if link == "UP":
        cells["link"] = "UP"
    else:
        peer = f" (switch port {npu['lldp_port']})" if npu.get("lldp_port") else ""
        report.add(
            host,
            npu_id,
            f"link is {link or 'unknown'}{peer}",
            f"check the cable and the switch port ('{HCCN} -i {npu_id} -link_stat -g' shows its history)",
        )
        cells["link"] = link or "?"
    health = npu.get("net_health")
    if health == "Success":
        cells["health"] = "Success"
    else:
        warn = health == "Init" and report.init_policy == "warn"
        report.add(
            host,
            npu_id,
            f"net health is {health or 'unknown'} (expected Success)",
            f"check the link and the detect address ('{HCCN} -i {npu_id} -netdetect -g'; set it with"
            f" '{HCCN} -i {npu_id} -netdetect -s address <gateway>')",
            warn=warn,
        )
        cells["health"] = health or "?"
    address, conf = npu.get("ipaddr"), npu.get("conf") or {}
    cells["address"] = address or "-"
    if not address:
        report.add(
            host,
            npu_id,
            "the NPU has no address",
            f"'{HCCN} -i {npu_id} -ip -s address <A> netmask <M>' as /etc/hccn.conf says",
        )
        cells["hccn.conf"] = "-"
    elif not conf.get("address"):
        report.add(
            host,
            npu_id,
            f"/etc/hccn.conf has no address_{npu_id}",
            f"add address_{npu_id}={address} and netmask_{npu_id}={npu.get('netmask')} to /etc/hccn.conf",
        )
        cells["hccn.conf"] = "missing"
    elif conf["address"] != address:
        report.add(
            host,
            npu_id,
            f"/etc/hccn.conf says address_{npu_id}={conf['address']} but the NPU has {address}",
            f"make them agree: '{HCCN} -i {npu_id} -ip -s address {conf['address']} netmask"
            f" {conf.get('netmask') or npu.get('netmask')}', or correct address_{npu_id} in /etc/hccn.conf",
        )
        cells["hccn.conf"] = "stale"
    else:
        cells["hccn.conf"] = "ok"
    cells["tls"] = "-" if npu.get("tls_switch") is None else str(npu["tls_switch"])
    return cells


def _tls(report: _Report, rows: dict) -> None:
    """One TLS switch on every NPU of the job; the NPUs that differ from most are named (a tie
    keeps TLS off, as the manual's MindIE settings do)."""
    switches = [
        (host, npu_id, cells["tls"])
        for host, npus in rows.items()
        for npu_id, cells in npus.items()
        if cells["tls"] != "-"
    ]
    values = {value for _, _, value in switches}
    if len(values) < 2:
        return
    keep = "1" if sum(v == "1" for *_, v in switches) > len(switches) / 2 else "0"
    for host, npu_id, value in switches:
        if value != keep:
            report.add(
                host,
                npu_id,
                f"TLS switch is {value} while {sum(v == keep for *_, v in switches)} other"
                f" NPUs of the job have {keep} (HCCL: 'Some ranks tlsStatus are inconsistent')",
                f"'{HCCN} -i {npu_id} -tls -s enable {keep}' on {host}",
            )
            rows[host][npu_id]["tls"] = f"{value}!"


def _subnets(report: _Report, readings: dict, rows: dict) -> None:
    """Same-index NPUs share one subnet across nodes (HCCL connects NPU n to NPU n)."""
    npu_ids = sorted({npu_id for npus in rows.values() for npu_id in npus})
    for npu_id in npu_ids:
        seen = {host: _subnet(readings[host][npu_id]) for host in rows if npu_id in readings[host]}
        subnets = {subnet for subnet in seen.values() if subnet}
        for host, subnet in seen.items():
            rows[host][npu_id]["subnet"] = subnet or "-"
        if len(subnets) > 1:
            named = ", ".join(f"{host} {subnet}" for host, subnet in seen.items())
            for host, subnet in seen.items():
                rows[host][npu_id]["subnet"] = f"{subnet}!"
            report.add(
                ", ".join(seen),
                npu_id,
                f"NPU {npu_id} is on different subnets ({named})",
                f"give NPU {npu_id} of every node an address in one subnet ('{HCCN} -i {npu_id} -ip -s"
                " address <A> netmask <M>' and /etc/hccn.conf)",
            )


def _reachability(report: _Report, facts: list[dict], readings: dict, rows: dict) -> dict:
    """Each node's pings to the same-index NPU of every other node: a matrix per NPU."""
    owner = {
        npu["ipaddr"]: (host, npu_id)
        for host, npus in readings.items()
        for npu_id, npu in npus.items()
        if npu.get("ipaddr")
    }
    reachable: dict[str, bool] = {}
    for fact in facts:
        host = fact["host"]
        for ping in fact.get("pings") or []:
            target = owner.get(ping["address"])
            ok = bool(ping.get("reachable"))
            reachable[ping["address"]] = reachable.get(ping["address"], True) and ok
            cells = rows[host].get(ping["npu"])
            if cells is not None:
                done, tried = cells.get("reach", "0/0").split("/")
                cells["reach"] = f"{int(done) + ok}/{int(tried) + 1}"
            if not ok:
                peer = f"{target[0]} NPU {target[1]}" if target else "the peer"
                why = f" ({ping['error']})" if ping.get("error") else ""
                report.add(
                    host,
                    ping["npu"],
                    f"cannot reach {peer} at {ping['address']}{why}",
                    f"check both links ('{HCCN} -i N -link -g'), both addresses and the TLS switch; retry"
                    f" with '{HCCN} -i {ping['npu']} -ping -g address {ping['address']}' on {host}",
                )
    return reachable


def _ports(report: _Report, host: str, found: dict, wanted: list[dict]) -> list[str]:
    what = {int(port["port"]): port.get("what", "") for port in wanted}
    taken = []
    for port in found.get("ports") or []:
        if port.get("free", True):
            continue
        holders = "; ".join(
            f"pid {holder.get('pid')} ({holder.get('process') or '?'}"
            + (f", container {holder['container_id'][:12]}" if holder.get("container_id") else "")
            + ")"
            for holder in port.get("listeners") or []
        )
        name = what.get(int(port["port"]), "")
        report.add(
            host,
            None,
            f"port {port['port']}{f' ({name})' if name else ''} is taken by {holders or 'a process'}",
            f"stop that process, or choose another port{f' ({name})' if name else ''}",
        )
        taken.append(str(port["port"]))
    return taken


COLUMNS = ("link", "health", "address", "hccn.conf", "tls", "subnet", "reach")


# The settings that hold each kind of accepted version, named where a message says "accepted versions".
VERSION_SETTINGS = {"driver": "job_gate_driver_versions", "cann": "job_gate_cann_versions",
                    "torch": "job_gate_torch_versions"}  # fmt: skip


def _version_problem(report: _Report, host: str, problem: dict) -> None:
    """ascend_version_info's message reads "<finding>: <what to do>."; the setting that accepts a
    version is named where the message speaks of accepted versions."""
    message = problem.get("message") or f"{problem.get('component')} {problem.get('found')} does not fit"
    setting = VERSION_SETTINGS.get(str(problem.get("component")))
    if setting:
        message = message.replace("to the accepted versions", f"to {setting}")
    finding, _, fix = message.rstrip(".").partition(": ")
    report.add(host, None, finding, fix or f"use one that fits: {problem.get('expected')}")


def _table(host: str, rows: dict, extra: list[str]) -> list[str]:
    widths = {
        column: max([len(column)] + [len(cells.get(column, "-")) for cells in rows.values()])
        for column in COLUMNS
    }
    lines = [f"{host}:"]
    if rows:  # no NPU header when the network was not read (ports and versions only)
        lines.append("  NPU  " + "  ".join(column.ljust(widths[column]) for column in COLUMNS))
    for npu_id, cells in sorted(rows.items()):
        lines.append(
            f"  {npu_id:<3}  " + "  ".join(cells.get(column, "-").ljust(widths[column]) for column in COLUMNS)
        )
    return lines + [f"  {line}" for line in extra]


def job_gate_report(
    facts: list[dict],
    npus: list[int],
    ports: list[dict] | None = None,
    init_policy: str = "warn",
    network: bool = True,
) -> dict:
    """Judge a job from every node's readings.

    ``facts``: one dict per node of the job, in rank order: ``host``, and the results of
    ``hccn_info`` (``hccn``), its pings (``pings``), ``listen_ports`` (``ports``) and
    ``ascend_version_info`` (``versions``); a node without readings (unreachable, or failed before)
    is a problem. ``npus``: the NPU ids the job uses. ``ports``: the job's ports as
    ``{port, what}``. ``init_policy``: whether net health Init warns or fails.

    Returns ``problems`` and ``warnings`` (lines naming node, NPU and fix), ``table`` (lines, one
    block per node), and ``reachability`` (device ip: every ping to it answered), which the rank
    table checks use.
    """
    report = _Report(init_policy)
    npus = [int(npu) for npu in npus]
    readings: dict[str, dict[int, dict]] = {}
    rows: dict[str, dict[int, dict]] = {}
    for fact in facts:
        host = fact["host"]
        hccn = fact.get("hccn") or {}
        readings[host], rows[host] = {}, {}
        if not network:
            continue
        if not hccn:
            report.add(
                host,
                None,
                "gave no NPU network readings (unreachable, or it failed an earlier step)",
                "see that node's error above, then run again",
            )
            continue
        if hccn.get("tool_found") is False:
            report.add(
                host,
                None,
                f"{HCCN} was not found at {hccn.get('executable')}",
                "install the Ascend driver (hccn_tool ships with it), or set job_gate_hccn_tool",
            )
            continue
        if hccn.get("conf_present") is False:
            report.add(
                host,
                None,
                f"{hccn.get('conf_path', '/etc/hccn.conf')} is missing",
                "write it (address_N, netmask_N, netdetect_N per NPU) as the driver's hccn setup does",
            )
        by_id = {npu["id"]: npu for npu in hccn.get("npus") or []}
        for npu_id in npus:
            if npu_id not in by_id:
                report.add(host, npu_id, "was not read", "check that the node has this NPU (npu-smi info)")
                continue
            readings[host][npu_id] = by_id[npu_id]
            rows[host][npu_id] = _npu_cells(report, host, by_id[npu_id])
    reachable: dict[str, bool] = {}
    if network:
        _tls(report, rows)
        if len(facts) > 1:
            _subnets(report, readings, rows)
            reachable = _reachability(report, facts, readings, rows)
    table = []
    for fact in facts:
        host = fact["host"]
        extra = []
        if fact.get("ports") is not None:
            taken = _ports(report, host, fact["ports"], ports or [])
            asked = number_runs([int(port["port"]) for port in ports or []])
            extra.append(f"ports {asked}: " + (f"taken {', '.join(taken)}" if taken else "free"))
        versions = fact.get("versions")
        if versions is not None:
            host_facts = versions.get("host") or {}
            found = ", ".join(
                f"{name} {(host_facts.get(name) or {}).get('version') or '-'}"
                for name in ("driver", "firmware", "toolkit")
            )
            image = versions.get("image") or {}
            if image:
                cann = (image.get("cann") or {}).get("version")
                found += (
                    f"; image torch {image.get('torch') or '-'}, torch_npu {image.get('torch_npu') or '-'},"
                    f" CANN {cann or '-'}"
                )
            for problem in versions.get("problems") or []:
                _version_problem(report, host, problem)
            extra.append(f"versions: {found}: {'ok' if not versions.get('problems') else 'FAIL'}")
        table += _table(host, rows[host], extra) if (rows[host] or extra) else []
    return {
        "problems": report.problems,
        "warnings": report.warnings,
        "table": table,
        "reachability": reachable,
    }


class FilterModule:
    def filters(self):
        return {
            "job_gate_report": job_gate_report,
            "job_gate_ping_targets": ping_targets,
            "job_gate_collect": collect,
            "job_gate_port_list": port_list,
            "job_gate_overrides": overrides,
        }
