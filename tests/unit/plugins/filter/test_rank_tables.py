"""Rank tables: HCCL's RANK_TABLE_FILE from the network gate's facts, the checks a rendered table must
pass, and the agreement of MindIE's config.json with its rank_table_file.json."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter import rank_tables, serving

from tests.fixtures import SEED_TABLES

NODES = ("172.20.0.2", "172.20.0.3")
NPUS = list(range(8))


def npu_facts(node: int) -> list[dict]:
    """hccn_info's npus for node 1 or 2: NPU N at 192.168.10N.10<node> (subnet 192.168.10N.0/24)."""
    return [{"id": npu, "ipaddr": f"192.168.10{npu}.10{node}", "netmask": "255.255.255.0"} for npu in NPUS]


FACTS = [{"server_id": address, "npus": npu_facts(node)} for node, address in enumerate(NODES, start=1)]


def two_node_table() -> dict:
    return rank_tables.hccl_rank_table(rank_tables.rank_servers_from_facts(FACTS, NPUS))


def test_a_two_node_table_from_facts():
    table = two_node_table()
    assert (table["version"], table["server_count"], table["status"]) == ("1.0", "2", "completed")
    assert [s["server_id"] for s in table["server_list"]] == list(NODES)
    assert [s["container_ip"] for s in table["server_list"]] == list(NODES)
    first, second = table["server_list"]
    assert first["device"][0] == {"device_id": "0", "device_ip": "192.168.100.101", "rank_id": "0"}
    assert first["device"][7] == {"device_id": "7", "device_ip": "192.168.107.101", "rank_id": "7"}
    assert second["device"][0] == {"device_id": "0", "device_ip": "192.168.100.102", "rank_id": "8"}
    assert [d["rank_id"] for s in table["server_list"] for d in s["device"]] == [str(r) for r in range(16)]
    assert rank_tables.rank_table_problems(table) == []
    everyone = {d["device_ip"]: True for s in table["server_list"] for d in s["device"]}
    assert rank_tables.rank_table_problems(table, everyone) == []
    # Only the NPUs the job uses, in the order asked.
    half = rank_tables.hccl_rank_table(rank_tables.rank_servers_from_facts(FACTS, [4, 5]))
    addresses = [d["device_ip"] for d in half["server_list"][1]["device"]]
    assert addresses == ["192.168.104.102", "192.168.105.102"]
    assert half["server_list"][1]["device"][1]["rank_id"] == "3"


def test_the_hand_typed_override_wins_for_its_server():
    override = {NODES[1]: [{"device_id": 0, "device_ip": "10.0.0.9"}]}
    servers = rank_tables.rank_servers_from_facts(FACTS, [0], override)
    assert servers == [
        {"server_id": NODES[0], "devices": [{"device_id": 0, "device_ip": "192.168.100.101"}]},
        {"server_id": NODES[1], "devices": [{"device_id": 0, "device_ip": "10.0.0.9"}]},
    ]


def test_serving_rank_table_is_the_same_rendering():
    servers = rank_tables.rank_servers_from_facts(FACTS, NPUS)
    assert serving.rank_table(servers) == rank_tables.hccl_rank_table(servers)
    with pytest.raises(AnsibleFilterError, match=r"^hccl_rank_table: no servers"):
        rank_tables.hccl_rank_table([])


@pytest.mark.parametrize(
    ("fact", "message"),
    [
        ({"id": 3, "ipaddr": ""}, "server 172.20.0.3 NPU 3 has no ipaddr"),
        ({"id": 3}, "server 172.20.0.3 NPU 3 has no ipaddr"),
        (None, "server 172.20.0.3 NPU 3 is not in its hccn facts"),
    ],
)
def test_a_missing_ipaddr_names_the_server_the_npu_and_the_fix(fact, message):
    facts = copy.deepcopy(FACTS)
    facts[1]["npus"] = [npu for npu in facts[1]["npus"] if npu["id"] != 3] + ([fact] if fact else [])
    with pytest.raises(AnsibleFilterError) as error:
        rank_tables.rank_servers_from_facts(facts, NPUS)
    assert message in str(error.value)
    assert "hccn_tool -i 3 -ip -s address" in str(error.value) and "override" in str(error.value)
    # The override for that server is the other way out.
    override = {NODES[1]: [{"device_id": n, "device_ip": f"192.168.10{n}.102"} for n in NPUS]}
    assert rank_tables.rank_servers_from_facts(facts, NPUS, override)[1]["devices"][3]["device_ip"] == (
        "192.168.103.102"
    )


def only_problem(table: dict, reachability: dict | None = None) -> str:
    problems = rank_tables.rank_table_problems(table, reachability)
    assert len(problems) == 1, problems
    return problems[0]


def test_a_duplicate_device_ip_names_both_devices():
    table = two_node_table()
    table["server_list"][1]["device"][2]["device_ip"] = "192.168.100.101"
    problem = only_problem(table)
    holders = "server 172.20.0.2 device 0 and server 172.20.0.3 device 2"
    assert f"device_ip 192.168.100.101 is shared by {holders}" in problem
    assert "hccn_tool -i N -ip -s" in problem


def test_a_gap_in_rank_id():
    table = two_node_table()
    table["server_list"][1]["device"][7]["rank_id"] = "16"
    assert "rank_id is not contiguous 0..15: missing 15" in only_problem(table)
    table["server_list"][1]["device"][7]["rank_id"] = "14"
    problems = rank_tables.rank_table_problems(table)
    assert any("rank_id 14 is used more than once" in p and "server 172.20.0.3 device 7" in p
               for p in problems)  # fmt: skip


def test_a_wrong_server_count():
    table = two_node_table()
    table["server_count"] = "3"
    assert only_problem(table) == (
        "server_count is '3' but server_list has 2 servers: set server_count to \"2\""
    )


def test_a_status_not_completed():
    table = two_node_table()
    table["status"] = "initializing"
    assert "status is 'initializing', not 'completed'" in only_problem(table)
    del table["version"]
    assert len(rank_tables.rank_table_problems(table)) == 2


def test_an_unreachable_device():
    table = two_node_table()
    reachability = {d["device_ip"]: True for s in table["server_list"] for d in s["device"]}
    reachability["192.168.105.102"] = False
    problem = only_problem(table, reachability)
    assert problem.startswith("server 172.20.0.3 device 5: device_ip 192.168.105.102 did not answer")
    assert "hccn_tool -i 5 -link -g" in problem
    del reachability["192.168.105.102"]
    assert "192.168.105.102 was not in the ping matrix" in only_problem(table, reachability)


def test_bad_addresses_duplicate_servers_and_devices():
    table = two_node_table()
    table["server_list"][0]["device"][1]["device_ip"] = "192.168.101.301"
    problem = only_problem(table)
    assert "server 172.20.0.2 device 1: device_ip '192.168.101.301' is not an IPv4 address" in problem
    table = two_node_table()
    table["server_list"][1]["server_id"] = NODES[0]
    assert "server_id 172.20.0.2 is listed 2 times" in only_problem(table)
    table = two_node_table()
    table["server_list"][0]["device"][1]["device_id"] = "0"
    assert "server 172.20.0.2: device_id 0 is listed 2 times" in only_problem(table)


def test_mindie_config_and_rank_table_from_the_same_facts_agree_as_the_manual_says():
    manual = yaml.safe_load((SEED_TABLES / "serving_params.yaml").read_text())["mindie_config_json"]
    assert "the server_id in rank_table_file.json" in manual["keys_to_modify"]["ipAddress"]
    example = json.loads((SEED_TABLES / "mindie_config_example.json").read_text())
    servers = rank_tables.rank_servers_from_facts(FACTS, NPUS)
    table = serving.rank_table(servers)
    # As roles/serve/tasks/mindie.yml does: the master is the first host of the facts.
    config = serving.mindie_config(
        {"master_address": FACTS[0]["server_id"], "model_name": "DeepSeek-V3",
         "model_weight_path": "/data/model/DeepSeek-V3-w8a8", "npu_device_ids": NPUS}
    )  # fmt: skip
    assert config["ServerConfig"]["ipAddress"] == table["server_list"][0]["server_id"] == NODES[0]
    assert config["ServerConfig"]["managementIpAddress"] == config["ServerConfig"]["ipAddress"]
    assert set(config) == set(example)
    # The Ascend rank table 1.0 layout, key for key.
    assert list(table) == ["version", "server_count", "server_list", "status"]
    for server in table["server_list"]:
        assert list(server) == ["server_id", "container_ip", "device"]
        for device in server["device"]:
            assert list(device) == ["device_id", "device_ip", "rank_id"]
            assert all(isinstance(value, str) for value in device.values())
    assert all(isinstance(table[key], str) for key in ("version", "server_count", "status"))
    assert config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["worldSize"] == len(
        table["server_list"][0]["device"]
    )
