"""The inventory check every stage goes through before anything runs (issue 21, item 3): real inventory
files (YAML, INI, folders with group_vars and host_vars, Vault) read by Ansible's own classes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from npufleet import api
from npufleet.inventory import (
    InventoryError,
    InventoryNotFoundError,
    check_inventory,
    playbook_runs_on_nodes,
)
from npufleet.lab import inventory as lab_inventory
from npufleet.lab.lifecycle import Node

ROOT = Path(__file__).resolve().parents[3]
NPUFLEET = str(Path(sys.executable).parent / "npufleet")

# Addresses from TEST-NET-1 (RFC 5737): nothing answers there, should a run ever start.
TWO_NODES = """\
all:
  children:
    npu_nodes:
      hosts:
        node1:
          ansible_host: 192.0.2.11
        node2:
          ansible_host: {second}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path, **options) -> str:
    with pytest.raises(InventoryError) as refused:
        check_inventory(path, **options)
    return " ".join(str(refused.value).split())


def encrypted(text: str, password: str) -> str:
    """``text`` as ansible-vault encrypt writes it."""
    from ansible.parsing.vault import VaultLib, VaultSecret  # noqa: PLC0415

    return VaultLib([("default", VaultSecret(password.encode()))]).encrypt(text).decode()


def test_the_lab_inventory_and_the_example_inventories_pass(tmp_path):
    lab = tmp_path / "lab" / "hosts.yml"
    nodes = [Node("lab-node1", "172.18.0.2", "running", 8), Node("lab-node2", "172.18.0.3", "running", 8)]
    lab_inventory.write_inventory(nodes, lab, "lab", 8, "910B3")
    assert check_inventory(lab).nodes == ["lab-node1", "lab-node2"]
    # The example, as a file and as the folder that holds its group_vars.
    assert check_inventory(ROOT / "inventories" / "example" / "hosts.yml").nodes == ["node1", "node2"]
    assert check_inventory(ROOT / "inventories" / "example").nodes == ["node1", "node2"]


def test_an_ini_inventory_in_a_folder_with_group_vars_and_host_vars_passes(tmp_path):
    folder = tmp_path / "prod"
    write(folder / "hosts", "[npu_nodes]\nnode1 ansible_host=10.0.0.1\nnode2 ansible_host=10.0.0.2\n")
    write(folder / "group_vars" / "npu_nodes.yml", "ansible_user: root\n")
    write(folder / "host_vars" / "node1.yml", "npufleet_node_address: 192.168.1.1\n")
    write(folder / "host_vars" / "node2.yml", "npufleet_node_address: 192.168.1.2\n")
    found = check_inventory(folder)
    assert found.nodes == ["node1", "node2"] and found.groups["npu_nodes"] == ["node1", "node2"]


def test_a_missing_inventory_is_refused_as_a_missing_file(tmp_path):
    with pytest.raises(InventoryNotFoundError) as refused:
        check_inventory(tmp_path / "hosts.yml")
    # Callers catching either kind of error still do.
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, FileNotFoundError)
    assert str(refused.value) == (
        f"inventory {tmp_path / 'hosts.yml'} does not exist: run 'npufleet lab up' or pass --inventory"
    )


def test_a_yaml_syntax_error_names_the_file_the_line_and_ansibles_reason(tmp_path):
    # node2 one column off: the hosts of npu_nodes end where it starts.
    lines = TWO_NODES.format(second="192.0.2.12").splitlines()
    lines[6:8] = ["         node2: 192.0.2.12"]
    path = write(tmp_path / "hosts.yml", "\n".join(lines) + "\n")
    assert refusal(path) == (
        f"inventory {path} does not parse: YAML parsing failed: While parsing a block mapping did not find"
        f" expected key (line 7, column 10); correct it ('ansible-inventory -i {path} --graph' shows how"
        " Ansible reads it)"
    )


def test_an_ini_syntax_error_names_the_file_and_ansibles_reason(tmp_path):
    path = write(tmp_path / "hosts", "[npu_nodes]\nnode1 ansible_host=10.0.0.1\n[npu_nodes:vars\n")
    message = refusal(path)
    assert message.startswith(f"inventory {path} does not parse: ")
    # ini's reason, not the yaml plugin's (which declines a file without a YAML suffix).
    assert "YAML" not in message and "correct it" in message


def test_a_broken_group_vars_file_is_named_within_the_inventory_folder(tmp_path):
    folder = tmp_path / "prod"
    write(folder / "hosts.yml", TWO_NODES.format(second="192.0.2.12"))
    broken = write(
        folder / "group_vars" / "all.yml", "serve_extra_args: [--enforce-eager\nserve_port: 8000\n"
    )
    message = refusal(folder)
    assert message.startswith(f"inventory {broken} (in {folder}) does not parse: YAML parsing failed")
    assert "line 2, column" in message


def test_vaulted_group_vars_need_the_password_and_are_read_with_it(tmp_path):
    folder = tmp_path / "prod"
    write(folder / "hosts.yml", TWO_NODES.format(second="192.0.2.12"))
    # The vault gives both nodes one node address: only a check that decrypted it can see that.
    vault = write(
        folder / "group_vars" / "all" / "vault.yml", encrypted("npufleet_node_address: 10.9.9.9\n", "s3cret")
    )
    assert refusal(folder) == (
        f"inventory {vault} (in {folder}) cannot be decrypted: A vault password must be specified to decrypt"
        " data; it is encrypted with Ansible Vault: run with --ask-vault-pass or --vault-password-file FILE"
    )
    assert "the Vault password given does not open it" in refusal(folder, vault_password="wrong")
    assert "the same npufleet_node_address 10.9.9.9" in refusal(folder, vault_password="s3cret")


def test_hosts_under_a_misspelt_group_are_refused_naming_that_group(tmp_path):
    path = write(
        tmp_path / "hosts.yml", TWO_NODES.format(second="192.0.2.12").replace("npu_nodes", "npu-nodes")
    )
    assert refusal(path) == (
        f"inventory {path} has no host in the group npu_nodes, where the stages run: its hosts are in group"
        " npu-nodes (node1, node2); rename the group to npu_nodes"
    )


def test_ungrouped_hosts_and_an_empty_inventory_are_refused_saying_where_hosts_go(tmp_path):
    ungrouped = write(tmp_path / "hosts", "node1 ansible_host=10.0.0.1\n")
    assert refusal(ungrouped).endswith("its hosts (node1) are in no group; put them under npu_nodes")
    empty = write(tmp_path / "empty.yml", "all:\n  children:\n    npu_nodes: {}\n")
    assert refusal(empty) == (
        f"inventory {empty} has no host in the group npu_nodes, where the stages run: it has no hosts; list"
        " your nodes under all.children.npu_nodes.hosts (as inventories/example/hosts.yml does)"
    )
    # A playbook that runs on the controller only (k8s.yml) needs no node.
    assert check_inventory(empty, needs_nodes=False).nodes == []


def test_two_hosts_at_one_address_are_refused_naming_both_and_the_address(tmp_path):
    path = write(tmp_path / "hosts.yml", TWO_NODES.format(second="192.0.2.11"))
    assert refusal(path) == (
        f"inventory {path}: hosts node1 and node2 of npu_nodes have the same address 192.0.2.11"
        " (ansible_host): they would be one machine, each run's containers and ranks taking over the"
        " other's; give each host its own ansible_host, or remove the duplicate host"
    )
    # A host without ansible_host is reached at its name.
    named = write(tmp_path / "named", "[npu_nodes]\n10.0.0.1\nnode2 ansible_host=10.0.0.1\n")
    assert "hosts 10.0.0.1 and node2 of npu_nodes have the same address 10.0.0.1" in refusal(named)
    # One address, two SSH ports (a NAT in front of two servers): two machines.
    ported = write(tmp_path / "ported", "[npu_nodes]\nn1 ansible_host=1.2.3.4 ansible_port=2201\n"
                                          "n2 ansible_host=1.2.3.4 ansible_port=2202\n")  # fmt: skip
    assert check_inventory(ported).nodes == ["n1", "n2"]
    both = write(tmp_path / "both", "[npu_nodes]\nn1 ansible_host=1.2.3.4 ansible_port=22\n"
                                      "n2 ansible_host=1.2.3.4 ansible_port=22\n")  # fmt: skip
    assert "the same address 1.2.3.4 port 22" in refusal(both)


def test_addresses_known_only_when_the_play_runs_are_not_compared(tmp_path):
    # An inline Vault value (decrypted by ansible-playbook's own secrets) and a template.
    value = encrypted("192.0.2.11", "s3cret")
    inline = "!vault |\n" + "\n".join(f"            {line}" for line in value.splitlines())
    text = TWO_NODES.format(second='"{{ inventory_hostname }}.lan"').replace("192.0.2.11", inline)
    path = write(tmp_path / "hosts.yml", text)
    assert (
        check_inventory(path).nodes
        == check_inventory(path, vault_password="s3cret").nodes
        == ["node1", "node2"]
    )


def test_two_hosts_with_one_node_address_are_refused_whatever_limit_picks(tmp_path):
    folder = tmp_path / "prod"
    write(folder / "hosts", "[npu_nodes]\nnode1 ansible_host=10.0.0.1\nnode2 ansible_host=10.0.0.2\n"
                            "node3 ansible_host=10.0.0.3\n")  # fmt: skip
    for host in ("node1", "node2", "node3"):
        write(folder / "host_vars" / f"{host}.yml", "npufleet_node_address: 172.16.0.5\n")
    assert refusal(folder) == (
        f"inventory {folder}: hosts node1, node2 and node3 of npu_nodes have the same npufleet_node_address"
        " 172.16.0.5: the nodes and the controller would reach one machine for both; give each host its own"
        " node's address"
    )


def test_which_playbooks_run_on_the_nodes():
    playbooks = ROOT / "playbooks"
    # site.yml through the playbooks it imports; bench.yml on npu_nodes[0]; k8s.yml on the controller.
    assert playbook_runs_on_nodes(playbooks / "site.yml")
    assert playbook_runs_on_nodes(playbooks / "bench.yml")
    assert not playbook_runs_on_nodes(playbooks / "k8s.yml")


def test_run_playbook_refuses_before_anything_runs(tmp_path):
    path = write(
        tmp_path / "hosts.yml", TWO_NODES.format(second="192.0.2.12").replace("npu_nodes", "npu-nodes")
    )
    with pytest.raises(api.InventoryError, match="its hosts are in group npu-nodes"):
        api.run("preflight", path, artifacts=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("command", "inventory", "message"),
    [
        (("check",), "npu-nodes", "has no host in the group npu_nodes, where the stages run: its hosts are in"
                                  " group npu-nodes (node1, node2); rename the group to npu_nodes"),
        (("up", "--check"), "duplicate", "hosts node1 and node2 of npu_nodes have the same address"
                                         " 192.0.2.11"),
        (("bench", "--requests", "5"), "syntax", "does not parse: YAML parsing failed: While parsing a flow"
                                                 " sequence did not find expected ',' or ']'"),
        (("down",), "missing", "does not exist: run 'npufleet lab up' or pass --inventory"),
    ],
)  # fmt: skip
def test_the_command_exits_2_with_the_message_and_runs_nothing(tmp_path, command, inventory, message):
    # The folder's name has brackets: printed as they are, not read as rich markup.
    folder = tmp_path / "inv[prod]"
    path = folder / "hosts.yml"
    if inventory == "npu-nodes":
        write(path, TWO_NODES.format(second="192.0.2.12").replace("npu_nodes", "npu-nodes"))
    elif inventory == "duplicate":
        write(path, TWO_NODES.format(second="192.0.2.11"))
    elif inventory == "syntax":
        write(path, TWO_NODES.format(second="[192.0.2.12"))
    done = subprocess.run(
        [NPUFLEET, *command, "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=os.environ | {"COLUMNS": "300"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"npufleet: inventory {path}" in done.stderr
    assert message in " ".join(done.stderr.split())
    assert "succeeded" not in done.stdout + done.stderr and "PLAY" not in done.stdout
