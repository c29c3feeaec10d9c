"""The bad-input suite (issue 21, item 9): every stage's mistakes, each refused with a message that names
the variable, its value and the fix, before anything changes on the nodes.

The cases are block/rescue playbooks, one a stage (tests/playbooks/bad_input/), run on the training lab as
site.yml leaves it before training (node setup, image, containers, and the run's assets in place); the
inventory's mistakes are rows of CLI_CASES, run with the npufleet command. The nodes' state
(tests/lab/node_state.py) is read after each case by the playbook, and before and after each stage here:
a case counts as refused before change when every node refused it with the expected words and neither
reading saw a change. The table (case | stage | message) and the summary line are printed; the table is
also written as JSON into the test's tmp dir."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from npufleet.api import run_playbook
from tests.lab import node_state
from tests.lab.conftest import TRAIN_NODES, node_exec, run_cli

pytestmark = pytest.mark.lab
CASES = Path(__file__).resolve().parents[1] / "playbooks" / "bad_input"
# In the order of the main job; host paths span four stages; bench and teardown after serving.
PLAYBOOKS = ["preflight", "node", "image", "npu_container", "host_paths", "train", "serve", "bench",
             "teardown", "k8s"]  # fmt: skip
# The table's order: the stages as the main job runs them, then the rest.
STAGES = ["inventory", "preflight", "docker", "ip_forward", "metadata_guard", "git_lfs", "image",
          "npu_container", "train", "serve", "bench", "teardown", "k8s_job"]  # fmt: skip


@dataclass
class Case:
    """One case's outcome on every node it ran on."""

    id: str
    stage: str
    message: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def refused_before_change(self) -> bool:
        return not self.problems


def one_line(message: str, width: int = 150) -> str:
    line = " ".join(message.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def cases_of(rows: list[dict]) -> list[Case]:
    """The playbook's rows (a case on a node each) as cases, in the playbook's order."""
    found: dict[str, Case] = {}
    hosts = sorted({row["host"] for row in rows})
    for row in rows:
        case = found.setdefault(row["id"], Case(row["id"], row["stage"], row["message"]))
        where = row["host"]
        if not row["refused"]:
            case.problems.append(f"case {row['id']} was accepted on {where}")
        if row["missing"]:
            case.problems.append(f"{where}: the message lacks {row['missing']}")
        if row["cleanup"]:
            case.problems.append(f"{where}: {row['cleanup']}")
        if row["changed"]:
            case.problems.append(f"{where} changed: gone {row['gone']}, new {row['new']}")
    for case in found.values():
        ran_on = {row["host"] for row in rows if row["id"] == case.id}
        if ran_on != set(hosts):
            case.problems.append(f"ran on {sorted(ran_on)} only, not on {sorted(set(hosts) - ran_on)}")
    return list(found.values())


@pytest.fixture(scope="module")
def ready_lab(train_lab):
    """The training lab with the run's assets in place, as a run leaves them before its ranks start: the
    train checks that read the ranks' container need the model and the data (putting them there is the
    user's asked-for change, which a bad value further on does not undo)."""
    placed = run_playbook("train.yml", train_lab, tags="train_assets")
    assert placed.succeeded, placed.first_failure()
    return train_lab


def run_cases(playbook: str, inventory: Path, folder: Path) -> tuple[list[Case], list[str], str]:
    """Run one stage's playbook: its cases, what changed on the nodes between before and after, and the
    play's failure (empty when it passed)."""
    report = folder / f"{playbook}.json"
    before = node_state.read_all(TRAIN_NODES)
    result = run_playbook(str(CASES / f"{playbook}.yml"), inventory,
                          extravars={"bad_input_report": str(report),
                                     "bad_input_watch": node_state.STATE_SCRIPT})  # fmt: skip
    changed = node_state.changes(before, node_state.read_all(TRAIN_NODES))
    cases = cases_of(json.loads(report.read_text())) if report.exists() else []
    failure = "" if result.succeeded else result.first_failure()
    if not cases:
        failure = failure or "no case reported"
    return cases, changed, failure


def inventory_variants(inventory: Path, folder: Path) -> dict[str, Path]:
    """The lab's inventory with each mistake users make in one."""
    data = yaml.safe_load(inventory.read_text())
    hosts = data["all"]["children"]["npu_nodes"]["hosts"]
    first, second = list(hosts)
    variants: dict[str, str] = {}
    same = copy.deepcopy(data)
    same["all"]["children"]["npu_nodes"]["hosts"][second]["ansible_host"] = hosts[first]["ansible_host"]
    variants["same address"] = yaml.safe_dump(same)
    same_node = copy.deepcopy(data)
    same_node["all"]["children"]["npu_nodes"]["hosts"][second]["npufleet_node_address"] = hosts[first][
        "npufleet_node_address"
    ]
    variants["same node address"] = yaml.safe_dump(same_node)
    variants["npu-nodes"] = yaml.safe_dump(data).replace("npu_nodes:", "npu-nodes:")
    variants["syntax"] = inventory.read_text().replace(
        f"ansible_host: {hosts[second]['ansible_host']}", f"ansible_host: [{hosts[second]['ansible_host']}"
    )
    paths = {}
    for name, text in variants.items():
        path = folder / name.replace(" ", "-") / "hosts.yml"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        paths[name] = path
    return paths


# The inventory's and the command line's mistakes: (case, inventory variant or None for the lab's,
# the command's arguments, its exit code, the words its message must hold).
CLI_CASES = [
    ("two hosts at one address", "same address", ["up"], 2,
     ["have the same address", "give each host its own ansible_host, or remove the duplicate host"]),
    ("two hosts at one npufleet_node_address", "same node address", ["train"], 2,
     ["have the same npufleet_node_address", "give each host its own node's address"]),
    ("hosts under npu-nodes", "npu-nodes", ["check"], 2,
     ["has no host in the group npu_nodes", "its hosts are in group npu-nodes",
      "rename the group to npu_nodes"]),
    ("a YAML syntax error in the inventory", "syntax", ["check"], 2,
     ["does not parse: YAML parsing failed"]),
    ("bench --request-timeout -1", None, ["bench", "--request-timeout", "-1"], 1,
     ["timeout must be a number of seconds above 0, got -1"]),
    ("bench --requests 0", None, ["bench", "--requests", "0"], 1, ["requests must be at least 1, got 0"]),
]  # fmt: skip


def run_cli_cases(inventory: Path, folder: Path) -> tuple[list[Case], list[str]]:
    variants = inventory_variants(inventory, folder / "inventories")
    # Reports and the evidence of a failed stage go to the test's folder, not the checkout's reports/.
    reports = ["-e", f"npufleet_report_dir={folder / 'reports'}", "-e", f"bench_dest={folder / 'bench'}"]
    before = node_state.read_all(TRAIN_NODES)
    cases = []
    for name, variant, args, code, expect in CLI_CASES:
        path = variants[variant] if variant else inventory
        done = run_cli(*args, "-i", str(path), *reports)
        # What it said, each "npufleet: " part apart, the inventory named without the test's folder; the
        # part that says why (a failed stage says first that it collects the evidence).
        said = " ".join((done.stderr + done.stdout).split()).replace(f"{path.parent.parent}/", "")
        parts = [part.strip() for part in said.split("npufleet: ") if part.strip()] or [said]
        message = next((part for part in parts if any(words in part for words in expect)), parts[0])
        case = Case(name, "inventory" if variant else args[0], message)
        if done.returncode != code:
            accepted = " (accepted)" if done.returncode == 0 else ""
            case.problems.append(f"exit {done.returncode}, expected {code}{accepted}")
        case.problems += [f"the message lacks {words!r}" for words in expect if words not in said]
        if "PLAY [" in done.stdout or (variant and "succeeded" in said):
            case.problems.append("a play ran")
        cases.append(case)
    return cases, node_state.changes(before, node_state.read_all(TRAIN_NODES))


def test_every_bad_input_is_refused_before_any_change(ready_lab, tmp_path):
    started = time.monotonic()
    cases: list[Case] = []
    failures: list[str] = []
    timings = []
    for playbook in PLAYBOOKS:
        began = time.monotonic()
        found, changed, failure = run_cases(playbook, ready_lab, tmp_path)
        timings.append(f"{playbook} {time.monotonic() - began:.0f} s")
        if failure and not any(case.problems for case in found):
            failures.append(f"{playbook}.yml: {one_line(failure, 400)}")
        if changed:
            # A change no case's own reading saw: none of the stage's cases is known to be clean.
            for case in found:
                case.problems.append(f"the nodes changed during {playbook}.yml")
            failures.append(f"{playbook}.yml changed the nodes: {changed[:20]}")
        cases += found
    found, changed = run_cli_cases(ready_lab, tmp_path)
    if changed:
        for case in found:
            case.problems.append("the nodes changed during the command-line cases")
        failures.append(f"the command-line cases changed the nodes: {changed[:20]}")
    cases += found

    cases.sort(key=lambda case: STAGES.index(case.stage) if case.stage in STAGES else len(STAGES))
    stages = list(dict.fromkeys(case.stage for case in cases))
    refused = sum(case.refused_before_change for case in cases)
    width = max(len(case.id) for case in cases)
    print(f"\n{'case':<{width}} | stage | message")
    for case in cases:
        flag = "" if case.refused_before_change else "NOT REFUSED BEFORE CHANGE: "
        print(f"{case.id:<{width}} | {case.stage} | {flag}{one_line(case.message)}")
    summary = (
        f"bad-input suite: refused before change {refused} of {len(cases)} (stages: {', '.join(stages)})"
    )
    print(summary)
    print(f"took {time.monotonic() - started:.0f} s ({', '.join(timings)})")
    table = tmp_path / "bad-input-suite.json"
    table.write_text(json.dumps({"summary": summary, "cases": [
        {"case": case.id, "stage": case.stage, "message": case.message, "problems": case.problems}
        for case in cases]}, indent=2))  # fmt: skip
    print(f"table: {table}")

    wrong = [f"{case.stage} {case.id}: {'; '.join(case.problems)}" for case in cases if case.problems]
    assert not wrong and not failures, "\n".join(wrong + failures)
    assert len(cases) >= 60


def test_the_node_state_sees_each_kind_of_change(ready_lab):
    """The reading the suite relies on fails when something changes: a container made, a firewall chain
    added, a file touched in the work dir, a folder given to the container user, daemon.json rewritten;
    and is the same again once each is undone."""
    node = TRAIN_NODES[1]
    image = node_exec(node, "docker inspect --format '{{.Config.Image}}' npufleet-workload")[1]
    kinds = {
        "containers": (f"docker create --name bad-input-probe {image} true",
                       "docker rm bad-input-probe"),
        "filter table": ("iptables -N BAD-INPUT-PROBE", "iptables -X BAD-INPUT-PROBE"),
        "work dirs": ("touch /home/ma-user/ws/bad-input-probe", "rm /home/ma-user/ws/bad-input-probe"),
        "given to the container user": ("mkdir /srv/bad-input-probe && chown 1000 /srv/bad-input-probe",
                                        "rmdir /srv/bad-input-probe"),
        "daemon.json": ("cp -p /etc/docker/daemon.json /tmp/daemon.json.probe"
                        " && echo ' ' >> /etc/docker/daemon.json",
                        "cp -p /tmp/daemon.json.probe /etc/docker/daemon.json"),
    }  # fmt: skip
    seen = {}
    for kind, (change, undo) in kinds.items():
        before = node_state.read_all([node])
        code, output = node_exec(node, change)
        assert code == 0, output
        try:
            seen[kind] = node_state.changes(before, node_state.read_all([node]))
        finally:
            assert node_exec(node, undo)[0] == 0
        assert node_state.changes(before, node_state.read_all([node])) == [], kind
    print(*(f"{kind}: {lines}" for kind, lines in seen.items()), sep="\n")
    assert {kind for kind, lines in seen.items() if any(f" {kind}: " in line for line in lines)} == set(kinds)
