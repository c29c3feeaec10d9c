"""The job gate's filters on module results built as hccn_info, listen_ports and ascend_version_info
build them: hccn_tool's recorded outputs (tests/data/hccn_tool) and outputs of the same form for the
lab's addresses (NPU n of node k at 192.168.(100+n).(100+k)/24), run through the module_utils parsers."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter import job_gate
from ansible_collections.npufleet.ascend.plugins.module_utils.hccn_tool import (
    CONF_KEYS,
    parse_hccn_conf,
    parse_ip,
    parse_link,
    parse_net_health,
    parse_ping,
    parse_tls,
)

from tests.fixtures import FIXTURE_ROOT

HCCN_DATA = FIXTURE_ROOT / "hccn_tool"
HOSTS = ("node1", "node2")
NETMASK = "255.255.255.0"


def output(name: str) -> str:
    """A recorded hccn_tool output without its ``#`` header lines."""
    lines = (HCCN_DATA / name).read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines) + "\n"


def lab_address(npu: int, node: int) -> str:
    return f"192.168.{100 + npu}.{100 + node}"


def ip_output(address: str, netmask: str = NETMASK) -> str:
    """``hccn_tool -i N -ip -g`` in the form of ip_g_configured.txt."""
    return f"ipaddr:{address}\nnetmask:{netmask}\n"


def tls_output(npu: int, switch: int) -> str:
    """``hccn_tool -i N -tls -g`` for one NPU: the recorded line of dev 0 with this NPU and switch."""
    line = output("tls_g_mixed.txt").splitlines()[0]
    assert line.startswith("dev_id:0, tls switch[0]")
    return line.replace("dev_id:0", f"dev_id:{npu}").replace("tls switch[0]", f"tls switch[{switch}]") + "\n"


def conf_output(node: int, npus, addresses: dict | None = None) -> str:
    """/etc/hccn.conf as ascend-deployer writes it (hccn_conf.txt is node 1's, NPUs 0-3)."""
    if node == 1 and list(npus) == [0, 1, 2, 3] and not addresses:
        return output("hccn_conf.txt")
    lines = []
    for npu in npus:
        address = (addresses or {}).get(npu, lab_address(npu, node))
        lines += [
            f"address_{npu}={address}",
            f"netmask_{npu}={NETMASK}",
            f"netdetect_{npu}=192.168.{100 + npu}.1",
        ]
    return "\n".join(lines) + "\n"


def npu_entry(
    node: int,
    npu: int,
    conf: dict | None,
    *,
    link: str = "link_g_up.txt",
    health: str = "net_health_g_success.txt",
    address: str | None = None,
    tls: int = 0,
) -> dict:
    """One entry of hccn_info's ``npus``, its fields as the module takes them from the parsers."""
    link_data = parse_link(output(link))
    health_data = parse_net_health(output(health))
    ip_data = parse_ip(ip_output(address or lab_address(npu, node)))
    tls_data = parse_tls(tls_output(npu, tls))
    tls_values = next(entry for entry in tls_data["tls"] if entry["dev_id"] == npu)
    for data in (link_data, health_data, ip_data, tls_data):
        assert data["unparsed"] == []
    return {
        "id": npu,
        "link": link_data["link"],
        "net_health": health_data["net_health"],
        "ipaddr": ip_data["ipaddr"],
        "netmask": ip_data["netmask"],
        "tls_switch": tls_values["switch"],
        "tls_preconfigured": tls_values["preconfigured"],
        "lldp_port": None,
        "conf": conf,
        "errors": [],
        "unparsed": {},
        "raw": {},
    }


def hccn_result(node: int, npus=(0, 1), conf_addresses: dict | None = None, **per_npu) -> dict:
    """hccn_info's result for node ``node``; ``per_npu`` maps an NPU id to npu_entry's options."""
    parsed = parse_hccn_conf(conf_output(node, npus, conf_addresses))
    assert parsed["unparsed"] == []
    conf = {npu: {key: values[key] for key in CONF_KEYS} for npu, values in parsed["npus"].items()}
    return {
        "changed": False,
        "executable": "/usr/local/Ascend/driver/tools/hccn_tool",
        "tool_found": True,
        "conf_path": "/etc/hccn.conf",
        "conf_present": True,
        "npus": [npu_entry(node, npu, conf.get(npu), **per_npu.get(f"npu{npu}", {})) for npu in npus],
        "pings": [],
    }


def pings(node: int, nodes: int = 2, npus=(0, 1), unreachable=()) -> list[dict]:
    """hccn_info's ``pings`` from ``node`` to the same-index NPUs of the others; an address in
    ``unreachable`` answers with 100% loss."""
    found = []
    for other in range(1, nodes + 1):
        if other == node:
            continue
        for npu in npus:
            address = lab_address(npu, other)
            text = (
                "4 packets transmitted, 0 received, 100.00% packet loss\n"
                if address in unreachable
                else output("ping_g_semantics.txt")
            )
            parsed = parse_ping(text)
            found.append(
                {
                    "npu": npu,
                    "address": address,
                    "reachable": bool(parsed["reachable"]),
                    "loss_pct": parsed["loss_pct"],
                    "error": None,
                    "output": text.strip(),
                }
            )
    return found


def fact(node: int, hccn: dict | None = None, ports=None, versions=None, **ping_options) -> dict:
    """One node as job_gate_collect gives it."""
    host = f"node{node}"
    return {
        "host": host,
        "address": f"172.20.0.{node + 1}",
        "hccn": hccn if hccn is not None else hccn_result(node),
        "pings": pings(node, **ping_options),
        "ports": ports,
        "versions": versions,
    }


def healthy(**overrides_by_node) -> list[dict]:
    return [fact(node, **overrides_by_node.get(f"node{node}", {})) for node in (1, 2)]


def report(facts, npus=(0, 1), **options):
    return job_gate.job_gate_report(facts, list(npus), **options)


def listen_ports_result(taken: dict | None = None, asked=(29500,)) -> dict:
    """listen_ports' result; ``taken`` maps a port to its listener."""
    ports = []
    for port in asked:
        listener = (taken or {}).get(port)
        ports.append(
            {
                "port": port,
                "free": listener is None,
                "listeners": [listener] if listener else [],
                "ignored": [],
            }
        )
    return {"changed": False, "ports": ports, "taken": [p["port"] for p in ports if not p["free"]]}


VERSIONS_OK = {
    "changed": False,
    "version_files": {"driver": "/usr/local/Ascend/driver/version.info"},
    "host": {
        "driver": {"version": "23.0.6"},
        "firmware": {"version": "7.1.0.11.220"},
        "toolkit": {"version": "8.0.RC3", "family": "V100R001C19"},
    },
    "image": None,
    "problems": [],
}


# --- job_gate_report ---


def test_healthy_two_nodes():
    result = report(healthy())
    assert result["problems"] == []
    assert result["warnings"] == []
    table = result["table"]
    assert "node1:" in table and "node2:" in table
    header = next(line for line in table if line.strip().startswith("NPU"))
    for column in ("link", "health", "address", "hccn.conf", "tls", "subnet", "reach"):
        assert column in header
    rows = [line.split() for line in table if line.startswith("  0 ") or line.startswith("  1 ")]
    assert len(rows) == 4
    assert ["0", "UP", "Success", "192.168.100.101", "ok", "0", "192.168.100.0/24", "1/1"] in rows
    assert ["1", "UP", "Success", "192.168.101.102", "ok", "0", "192.168.101.0/24", "1/1"] in rows
    assert result["reachability"] == {lab_address(npu, node): True for npu in (0, 1) for node in (1, 2)}


def test_link_down_names_host_npu_and_link_stat():
    facts = healthy(node2={"hccn": hccn_result(2, npu1={"link": "link_g_down.txt"})})
    problems = report(facts)["problems"]
    assert len(problems) == 1
    assert problems[0].startswith("node2 NPU 1: link is DOWN")
    assert "hccn_tool -i 1 -link_stat -g" in problems[0]


def test_net_health_fault_is_a_problem():
    facts = healthy(node1={"hccn": hccn_result(1, npu0={"health": "net_health_g_fault.txt"})})
    result = report(facts)
    assert len(result["problems"]) == 1
    assert result["problems"][0].startswith("node1 NPU 0: net health is Fault")
    assert "-netdetect -g" in result["problems"][0]


@pytest.mark.parametrize("policy", ["warn", "fail"])
def test_net_health_init_follows_policy(policy):
    facts = healthy(node1={"hccn": hccn_result(1, npu1={"health": "net_health_g_init.txt"})})
    result = report(facts, init_policy=policy)
    found, other = (
        (result["warnings"], result["problems"])
        if policy == "warn"
        else (result["problems"], result["warnings"])
    )
    assert other == []
    assert len(found) == 1
    assert found[0].startswith("node1 NPU 1: net health is Init (expected Success)")


def test_hccn_conf_address_differs_from_the_npu():
    stale = "192.168.100.199"
    facts = healthy(node2={"hccn": hccn_result(2, conf_addresses={0: stale})})
    result = report(facts)
    assert len(result["problems"]) == 1
    problem = result["problems"][0]
    assert problem.startswith("node2 NPU 0:")
    assert stale in problem and lab_address(0, 2) in problem
    assert f"hccn_tool -i 0 -ip -s address {stale} netmask {NETMASK}" in problem
    assert any("stale" in line for line in result["table"])


def test_hccn_conf_without_the_npu():
    facts = healthy(node1={"hccn": hccn_result(1)})
    facts[0]["hccn"]["npus"][1]["conf"] = None
    problems = report(facts)["problems"]
    assert problems == [
        f"node1 NPU 1: /etc/hccn.conf has no address_1; fix: add address_1={lab_address(1, 1)} and"
        f" netmask_1={NETMASK} to /etc/hccn.conf"
    ]


def test_tls_switch_on_one_npu_of_four():
    npus = (0, 1, 2, 3)
    facts = [
        fact(1, hccn=hccn_result(1, npus=npus), npus=npus),
        fact(2, hccn=hccn_result(2, npus=npus, npu2={"tls": 1}), npus=npus),
    ]
    assert facts[0]["hccn"]["npus"][0]["conf"]["address"] == "192.168.100.101"  # hccn_conf.txt
    result = report(facts, npus=npus)
    assert len(result["problems"]) == 1
    problem = result["problems"][0]
    assert problem.startswith("node2 NPU 2: TLS switch is 1 while 7 other NPUs of the job have 0")
    assert "'hccn_tool -i 2 -tls -s enable 0' on node2" in problem
    assert any(" 1! " in line for line in result["table"])


def test_tls_from_the_recorded_mixed_output():
    """tls_g_mixed.txt as one node's -tls -g output: NPU 0 off, NPU 1 on; a tie keeps TLS off."""
    mixed = parse_tls(output("tls_g_mixed.txt"))["tls"]
    facts = healthy()
    for npu, entry in zip(facts[0]["hccn"]["npus"], mixed, strict=True):
        npu["tls_switch"] = entry["switch"]
    facts[1]["hccn"]["npus"][1]["tls_switch"] = 1
    problems = report(facts)["problems"]
    assert len(problems) == 2
    assert all("tls -s enable 0" in problem for problem in problems)
    assert {problem.split(":")[0] for problem in problems} == {"node1 NPU 1", "node2 NPU 1"}


def test_different_subnets_for_one_npu_index():
    other = "10.10.0.10"  # ip_g_configured.txt's address
    hccn = hccn_result(2, conf_addresses={1: other}, npu1={"address": other})
    assert parse_ip(output("ip_g_configured.txt"))["ipaddr"] == other
    facts = healthy(node2={"hccn": hccn})
    result = report(facts)
    subnet = [problem for problem in result["problems"] if "different subnets" in problem]
    assert len(subnet) == 1
    assert subnet[0].startswith("node1, node2 NPU 1: NPU 1 is on different subnets")
    assert "node1 192.168.101.0/24" in subnet[0] and "node2 10.10.0.0/24" in subnet[0]


def test_failed_ping():
    lost = lab_address(0, 2)
    facts = healthy(node1={"unreachable": (lost,)})
    result = report(facts)
    assert len(result["problems"]) == 1
    problem = result["problems"][0]
    assert problem.startswith(f"node1 NPU 0: cannot reach node2 NPU 0 at {lost}")
    assert f"hccn_tool -i 0 -ping -g address {lost}' on node1" in problem
    assert result["reachability"][lost] is False
    assert result["reachability"][lab_address(0, 1)] is True
    assert any(line.split()[-1:] == ["0/1"] for line in result["table"])


def test_npu_without_address_and_failed_reading():
    facts = healthy()
    npu = facts[1]["hccn"]["npus"][0]
    npu.update(ipaddr=None, netmask=None)
    npu["ipaddr"] = parse_ip(output("ip_g_unset.txt"))["ipaddr"]
    npu["errors"] = ["link: exit 1: device not found"]
    npu["link"] = None
    problems = report(facts)["problems"]
    assert any(
        p.startswith("node2 NPU 0: hccn_tool failed (link: exit 1: device not found)") for p in problems
    )
    assert any(p.startswith("node2 NPU 0: link is unknown") for p in problems)
    assert any(p.startswith("node2 NPU 0: the NPU has no address") for p in problems)


def test_taken_port():
    listener = {
        "address": "0.0.0.0",
        "pid": 41230,
        "process": "python3",
        "cmdline": "python3 -m torch.distributed.run",
        "container_id": "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899",
    }
    facts = healthy(
        node1={"ports": listen_ports_result()},
        node2={"ports": listen_ports_result({29500: listener})},
    )
    result = report(facts, ports=[{"port": 29500, "what": "train_master_port"}])
    assert len(result["problems"]) == 1
    problem = result["problems"][0]
    assert problem.startswith("node2: port 29500 (train_master_port) is taken by pid 41230 (python3")
    assert "container 3f4e5d6c7b8a" in problem
    assert "  ports 29500: free" in result["table"]
    assert "  ports 29500: taken 29500" in result["table"]


def test_version_problems_are_passed_through():
    problem = {
        "component": "driver",
        "found": "23.0.7",
        "expected": "one of 23.0.6",
        "message": "Driver 23.0.7 is not one of the accepted versions (23.0.6): install driver 23.0.6.",
    }
    bad = dict(VERSIONS_OK, problems=[problem])
    facts = healthy(node1={"versions": VERSIONS_OK}, node2={"versions": bad})
    result = report(facts)
    # The finding, then what to do: the message's own hint after its first ": ".
    assert result["problems"] == [
        "node2: Driver 23.0.7 is not one of the accepted versions (23.0.6); fix: install driver 23.0.6"
    ]
    assert "  versions: driver 23.0.6, firmware 7.1.0.11.220, toolkit 8.0.RC3: ok" in result["table"]
    assert any(line.endswith(": FAIL") and line.startswith("  versions:") for line in result["table"])


def test_a_version_problem_names_the_setting_that_accepts_versions():
    problem = {
        "component": "cann",
        "found": "8.0.RC2",
        "expected": "one of 8.0.rc3",
        "message": "CANN toolkit 8.0.RC2 is not one of the accepted versions (8.0.rc3): install CANN toolkit"
        " 8.0.rc3, or add 8.0.RC2 to the accepted versions if it is supported.",
    }
    facts = healthy(node2={"versions": dict(VERSIONS_OK, problems=[problem])})
    assert report(facts)["problems"] == [
        "node2: CANN toolkit 8.0.RC2 is not one of the accepted versions (8.0.rc3); fix: install CANN toolkit"
        " 8.0.rc3, or add 8.0.RC2 to job_gate_cann_versions if it is supported"
    ]


def test_image_versions_in_the_table():
    image = {"name": "img", "torch": "2.1.0", "torch_npu": "2.1.0.post8", "cann": {"version": "8.0.RC3"}}
    facts = healthy(node1={"versions": dict(VERSIONS_OK, image=image)})
    table = report(facts)["table"]
    assert any("image torch 2.1.0, torch_npu 2.1.0.post8, CANN 8.0.RC3" in line for line in table)


def test_node_without_readings():
    facts = healthy()
    facts[1]["hccn"], facts[1]["pings"] = None, None
    problems = report(facts)["problems"]
    assert any(p.startswith("node2: gave no NPU network readings") for p in problems)


def test_hccn_tool_not_found():
    facts = healthy()
    missing = "/usr/local/Ascend/driver/tools/hccn_tool"
    facts[0]["hccn"] = dict(
        facts[0]["hccn"],
        tool_found=False,
        npus=[dict(npu, errors=[f"{missing} not found"]) for npu in facts[0]["hccn"]["npus"]],
    )
    problems = report(facts)["problems"]
    assert any(p.startswith(f"node1: hccn_tool was not found at {missing}") for p in problems)


def test_hccn_conf_missing_and_npu_not_read():
    facts = healthy()
    facts[0]["hccn"]["conf_present"] = False
    problems = report(facts, npus=(0, 1, 2))["problems"]
    assert any(p.startswith("node1: /etc/hccn.conf is missing") for p in problems)
    assert any(p.startswith("node1 NPU 2: was not read") for p in problems)
    assert any(p.startswith("node2 NPU 2: was not read") for p in problems)


def test_network_false_skips_the_network_but_not_ports_or_versions():
    listener = {"pid": 7, "process": "nginx", "container_id": None}
    facts = healthy(node1={"hccn": hccn_result(1, npu0={"link": "link_g_down.txt"})})
    facts[0].update(ports=listen_ports_result({29500: listener}), versions=VERSIONS_OK)
    facts[1].update(hccn=None, pings=None)
    result = report(facts, ports=[{"port": 29500, "what": "train_master_port"}], network=False)
    assert result["problems"] == [
        "node1: port 29500 (train_master_port) is taken by pid 7 (nginx); fix: stop that process,"
        " or choose another port (train_master_port)"
    ]
    assert result["reachability"] == {}
    assert not any(line.strip().startswith("NPU") for line in result["table"])
    assert any(line.startswith("  versions:") for line in result["table"])


def test_bad_init_policy():
    with pytest.raises(AnsibleFilterError, match="init_policy"):
        report(healthy(), init_policy="ignore")


def test_single_node_has_no_subnet_or_reach_checks():
    facts = [fact(1, nodes=1)]
    result = report(facts)
    assert result["problems"] == [] and result["reachability"] == {}


# --- job_gate_ping_targets ---


def test_ping_targets_are_the_other_nodes_same_index_npus():
    facts = [fact(node, hccn=hccn_result(node, npus=(0, 1, 2))) for node in (1, 2, 3)]
    assert job_gate.ping_targets(facts, "node1", [0, "1"]) == [
        {"npu": 0, "address": lab_address(0, 2)},
        {"npu": 1, "address": lab_address(1, 2)},
        {"npu": 0, "address": lab_address(0, 3)},
        {"npu": 1, "address": lab_address(1, 3)},
    ]


def test_ping_targets_skip_nodes_without_readings_or_address():
    facts = healthy()
    facts[1]["hccn"]["npus"][1]["ipaddr"] = None
    facts.append({"host": "node3", "hccn": None})
    assert job_gate.ping_targets(facts, "node1", [0, 1]) == [{"npu": 0, "address": lab_address(0, 2)}]
    assert job_gate.ping_targets(facts, "node3", [1]) == [{"npu": 1, "address": lab_address(1, 1)}]


# --- job_gate_collect ---


def test_collect_from_hostvars():
    hccn = hccn_result(1)
    hostvars = {
        "node1": {
            "ansible_host": "172.20.0.2",
            "job_gate_hccn": hccn,
            "job_gate_pings": {"changed": False, "npus": [], "pings": pings(1)},
            "job_gate_listeners": {"skipped": True, "changed": False},
            "job_gate_version_facts": VERSIONS_OK,
        },
        "node2": {
            "npufleet_node_address": "10.0.0.3",
            "ansible_host": "172.20.0.3",
            "job_gate_hccn": {"skipped": True},
        },
    }
    facts = job_gate.collect(["node2", "node1", "node3"], hostvars)
    assert [f["host"] for f in facts] == ["node2", "node1", "node3"]
    node2, node1, node3 = facts
    assert node1["address"] == node1["server_id"] == "172.20.0.2"
    assert node1["hccn"] is hccn and node1["npus"] == hccn["npus"]
    assert node1["pings"] == pings(1)
    assert node1["ports"] is None
    assert node1["versions"] is VERSIONS_OK
    assert node2["server_id"] == "10.0.0.3"
    assert node2["hccn"] is None and node2["pings"] is None and node2["npus"] == []
    assert node3["server_id"] == "node3" and node3["hccn"] is None and node3["npus"] == []


def test_collect_failed_reading_is_none():
    """A node whose reading failed (it left the play) has no ports or versions to call free or ok."""
    failed = {"failed": True, "msg": "boom", "changed": False}
    hostvars = {"node1": {"job_gate_listeners": failed, "job_gate_version_facts": failed}}
    (node1,) = job_gate.collect(["node1"], hostvars)
    assert node1["ports"] is None and node1["versions"] is None
    table = job_gate.job_gate_report([node1], [0], network=False)["table"]
    assert not any("free" in line or ": ok" in line for line in table)


def test_collect_then_report():
    hostvars = {
        f"node{node}": {"job_gate_hccn": hccn_result(node), "job_gate_pings": {"pings": pings(node)}}
        for node in (1, 2)
    }
    result = job_gate.job_gate_report(job_gate.collect(list(HOSTS), hostvars), [0, 1])
    assert result["problems"] == []


# --- job_gate_port_list ---


def test_port_list_with_hccl_ports():
    listed = job_gate.port_list([{"port": 29500, "what": "train_master_port"}], 60000)
    assert len(listed) == 17
    assert listed[0] == {"port": 29500, "what": "train_master_port"}
    assert [entry["port"] for entry in listed[1:]] == list(range(60000, 60016))
    assert listed[-1]["what"] == "HCCL_IF_BASE_PORT 60000 + 15"


def test_port_list_without_hccl_ports():
    ports = [{"port": 29500, "what": "train_master_port"}]
    assert job_gate.port_list(ports, 0) == ports
    assert job_gate.port_list(ports) == ports
    assert job_gate.port_list(None, "0") == []
    assert job_gate.port_list([{"port": "x"}], 0) == [{"port": "x"}]


# --- job_gate_overrides ---


def test_overrides():
    devices = [{"device_id": "0", "device_ip": "192.168.100.101"}]
    hostvars = {
        "node1": {"ansible_host": "172.20.0.2", "devices": devices},
        "node2": {"npufleet_node_address": "10.0.0.3", "devices": []},
        "node3": {"devices": devices},
    }
    assert job_gate.overrides(["node1", "node2", "node3", "node4"], hostvars, "devices") == {
        "172.20.0.2": devices,
        "node3": devices,
    }
    assert job_gate.overrides(["node1"], hostvars, "other") == {}


def test_filter_names():
    assert set(job_gate.FilterModule().filters()) == {
        "job_gate_report",
        "job_gate_ping_targets",
        "job_gate_collect",
        "job_gate_port_list",
        "job_gate_overrides",
    }
