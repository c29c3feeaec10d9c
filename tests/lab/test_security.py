"""The security suite: on the two-node training lab, set up as site.yml does, what a user or a co-tenant of
a shared node could find or reach, checked from the outside.

- every container npufleet started is kept off the instance-metadata endpoint: its rule and its cgroup
  are read (no packet is ever sent to 169.254.169.254);
- secrets given to the served model reach its process, and nothing else: not the process lists, the
  launch records, the run's kept artifacts, the CLI's --json output, the node's journal and files, or
  an image layer;
- extra vars that carry secrets are refused before anything runs.

Each test prints its count ("containers without a guard: 0 of 4"), which the closing notes quote."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
import yaml

from npufleet.api import run_playbook
from tests.lab.conftest import TRAIN_NODES, node_exec, run_cli, vaulted

pytestmark = pytest.mark.lab
PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
METADATA = "169.254.169.254"
TRAINING = "npufleet-workload"
# Every image's layers, as `docker history` shows the command that made each.
LAYERS = (
    "for image in $(docker images -q | sort -u); do "
    "docker history --no-trunc --format '{{.CreatedBy}}' $image; done"
)
# Where the stages write on a node.
WRITTEN = "/var/lib/npufleet /home/ma-user/ws/npufleet /etc/docker /etc/systemd/system"


def guard_rules(node: str) -> tuple[set[int], bool]:
    """The class ids the OUTPUT rule drops the endpoint for, and whether DOCKER-USER drops it."""
    _, output = node_exec(node, "iptables -S OUTPUT")
    _, docker_user = node_exec(node, "iptables -S DOCKER-USER")
    rule = rf"^-A OUTPUT -d {METADATA}/32 -m cgroup --cgroup (\d+) -j DROP$"
    classids = {int(found) for found in re.findall(rule, output, re.MULTILINE)}
    return classids, f"-A DOCKER-USER -d {METADATA}/32 -j DROP" in docker_user.splitlines()


def containers_of_npufleet(node: str) -> list[dict]:
    """Every container npufleet started on the node (they carry its label), with its network and the
    net_cls class id of its main process's cgroup."""
    _, names = node_exec(node, "docker ps -q --filter label=npufleet.container")
    found = []
    for container in names.split():
        _, inspected = node_exec(node, f"docker inspect {container}")
        (details,) = json.loads(inspected)
        pid = details["State"]["Pid"]
        _, cgroups = node_exec(node, f"cat /proc/{pid}/cgroup")
        net_cls = next(
            line.split(":", 2)[2] for line in cgroups.splitlines() if "net_cls" in line.split(":")[1]
        )
        _, classid = node_exec(node, f"cat /sys/fs/cgroup/net_cls{net_cls}/net_cls.classid")
        found.append(
            {
                "name": details["Name"].lstrip("/"),
                "network": details["HostConfig"]["NetworkMode"],
                "cgroup": net_cls,
                "classid": int(classid),
            }
        )
    return found


def test_every_container_npufleet_started_is_kept_off_the_metadata_endpoint(train_lab):
    unguarded, seen = [], []
    for node in TRAIN_NODES:
        classids, bridges_guarded = guard_rules(node)
        containers = containers_of_npufleet(node)
        assert containers, f"no container of npufleet on {node}"
        for container in containers:
            seen.append(f"{node}/{container['name']}")
            if container["network"] == "host":
                under_parent = container["cgroup"].startswith("/npufleet.slice/")
                guarded = under_parent and container["classid"] in classids
            else:
                guarded = bridges_guarded
            if not guarded:
                unguarded.append(f"{node}/{container['name']}: {container}")
        # The unit that puts the rules back runs before Docker at every start.
        assert node_exec(node, "/usr/local/sbin/npufleet-metadata-guard check")[0] == 0
    print(f"containers without a guard: {len(unguarded)} of {len(seen)} ({', '.join(seen)})")
    assert unguarded == []


def test_a_docker_restart_keeps_the_guard_on_the_restarted_containers(train_lab):
    node = TRAIN_NODES[1]
    node_exec(node, "systemctl restart docker")
    code, _ = node_exec(node, "timeout 60 sh -c 'until docker info >/dev/null 2>&1; do sleep 1; done'")
    assert code == 0
    classids, _ = guard_rules(node)
    containers = containers_of_npufleet(node)
    assert containers and all(container["classid"] in classids for container in containers), containers


def test_no_system_folder_is_ever_a_containers_work_dir(train_lab):
    """Each system folder, a relative path and a symlink into /usr, as the NPU container's host work
    dir: refused before any change (the playbook reads the folders' owners before and after)."""
    events: list[dict] = []
    result = run_playbook(str(PLAYBOOKS / "system_work_dirs.yml"), train_lab, limit=TRAIN_NODES[0],
                          on_event=events.append)  # fmt: skip
    counts = [
        event["event_data"]["res"]["msg"]
        for event in events
        if event.get("event") == "runner_on_ok" and event["event_data"].get("task") == "Report the count"
    ]
    print(*counts)
    assert result.succeeded, result.first_failure()
    assert counts and counts[0].startswith("system paths refused 29 of 29")


def files_on_nodes_with(text: str) -> str:
    """Files holding ``text`` on the nodes and in their containers, where runs write."""
    found = []
    for node in TRAIN_NODES:
        places = "/var/lib/npufleet /home/ma-user/ws/npufleet /tmp /var/tmp /root /etc/docker"
        found.append(node_exec(node, f"grep -rlsF {text} {places} ; true")[1])
        inside = f"grep -rlsF {text} /tmp /workspace/npufleet ; true"
        found.append(node_exec(node, f"docker exec {TRAINING} sh -c '{inside}'")[1])
    return "\n".join(line for line in found if line.strip())


def test_secrets_reach_the_server_and_nothing_else(train_lab, tmp_path, monkeypatch):
    named = "hf_" + secrets.token_hex(16)  # a secret by its name, HF_TOKEN
    vaulted_value = "canary-" + secrets.token_hex(12)  # a secret because it comes from the vault
    exported = "exported-" + secrets.token_hex(12)  # in the controller's environment
    inventory, password = vaulted(
        train_lab, tmp_path / "inventory", {"serve_env": {"HF_TOKEN": named, "TEAM_SETTING": vaulted_value}}
    )
    password_file = tmp_path / "vault.pass"
    password_file.write_text(password)
    monkeypatch.setenv("HF_TOKEN", exported)
    monkeypatch.setenv("REGISTRY_PASSWORD", exported)
    canaries = (named, vaulted_value, exported)
    node = TRAIN_NODES[0]
    # The model the server loads, put in place as the train stage does.
    assets = run_playbook("train.yml", train_lab, limit=node, tags="train_assets")
    assert assets.succeeded, assets.first_failure()
    settings = ["-e", "serve_name=secret-api", "-e", "serve_port=8130", "-e", "serve_engine=llamafactory",
                "-e", "serve_adapter_path=", "-e", "serve_record_dir="]  # fmt: skip
    served = run_cli("--json", "serve", "-i", str(inventory), "--vault-password-file", str(password_file),
                     "--limit", node, *settings)  # fmt: skip
    try:
        assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]
        # The server has them: the secrets were delivered.
        # Read from the node, whose root may read every process's environment (the container's root may not).
        _, environ = node_exec(
            node, "for p in $(pgrep -f 'llamafactory-cli api'); do tr '\\0' '\\n' < /proc/$p/environ; done"
        )
        assert f"HF_TOKEN={named}" in environ and f"TEAM_SETTING={vaulted_value}" in environ
        # The server listens on the node's own address, not on every interface.
        address = yaml.safe_load(train_lab.read_text())["all"]["children"]["npu_nodes"]["hosts"][node][
            "npufleet_node_address"
        ]
        _, listening = node_exec(node, "ss -ltnH")
        local = {line.split()[3] for line in listening.splitlines() if len(line.split()) > 3}
        on_port = sorted(found for found in local if found.endswith(":8130"))
        print(f"listening on {node} for the server: {on_port}")
        assert on_port == [f"{address}:8130"]
        # The launch record names them, and holds no value.
        _, record = node_exec(node, "cat /var/lib/npufleet/launch/serve-secret-api.json")
        assert sorted(json.loads(record)["secret_env"]) == ["HF_TOKEN", "TEAM_SETTING"]
        artifacts = Path(json.loads(served.stdout)["artifact_dir"])
        kept = [path for path in artifacts.rglob("*") if path.is_file()]
        assert kept
        places = {
            "the CLI's output": served.stdout + served.stderr,
            "the run's kept artifacts": "".join(path.read_text(errors="replace") for path in kept),
            "process lists": "".join(
                node_exec(name, f"ps -eo args; docker exec {TRAINING} ps -eo args")[1] for name in TRAIN_NODES
            ),
            "launch records": record,
            "the nodes' journals": "".join(
                node_exec(name, "journalctl --no-pager -o cat")[1] for name in TRAIN_NODES
            ),
            "image layers": "".join(node_exec(name, LAYERS)[1] for name in TRAIN_NODES),
        }
        found = [f"{where}" for where, text in places.items() for canary in canaries if canary in text]
        leftover = "\n".join(files_on_nodes_with(canary) for canary in canaries).strip()
        count = len(found) + len(leftover.split())
        print(f"canaries found: {count} ({len(places) + 1} kinds of place searched)")
        assert found == [] and leftover == "", (found, leftover)
    finally:
        # Stopped, and waited for until its launcher wrote the exit code: nothing of it is written later.
        node_exec(node, f"docker exec {TRAINING} pkill -f 'llamafactory-cli api' ; true")
        state = "/home/ma-user/ws/npufleet/logs/serve-secret-api.log.state/rc"
        node_exec(node, f"timeout 30 sh -c 'until test -e {state}; do sleep 0.5; done'")


@pytest.mark.parametrize(
    "extra",
    [
        "registry_pw=hunter2-lab",
        "image_registry_pass=hunter2-lab",
        "swr_auth_string=abc",
        "serve_api_key=sk-lab",
        "train_model_url=https://user:hunter2@models.example/qwen",
    ],
)
def test_secrets_in_extra_vars_are_refused_before_anything_runs(train_lab, extra):
    name, _, value = extra.partition("=")
    node_exec(TRAIN_NODES[0], "touch /tmp/before-refusal")
    refused = run_cli("serve", "-i", str(train_lab), "-e", extra)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert name in refused.stderr + refused.stdout and "Vault" in refused.stderr + refused.stdout
    assert value not in refused.stdout + refused.stderr
    # Nothing on the node changed in the meantime: no record, no log, no rendered file.
    changed = node_exec(TRAIN_NODES[0], f"find {WRITTEN} -newer /tmp/before-refusal ; true")[1]
    assert changed == ""


def test_a_stage_leaves_no_runner_environment_behind(train_lab, monkeypatch):
    """ansible-runner kept the controller's whole environment in the run's artifacts."""
    canary = "env-canary-" + secrets.token_hex(8)
    monkeypatch.setenv("MY_TOOL_SETTING", canary)
    result = run_playbook("container.yml", train_lab, limit=TRAIN_NODES[0])
    assert result.succeeded, result.first_failure()
    kept = [path for path in Path(result.artifact_dir).rglob("*") if path.is_file()]
    assert kept and not [path for path in kept if canary in path.read_text(errors="replace")]
