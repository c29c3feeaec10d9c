"""The train role on a two-node lab running the real LLaMA-Factory on the CPU: SFT LoRA on one node
and on two (torchrun, gloo, each node on its own address), DPO, a rank lost mid-run, bad plans and
variables, and code/weights/data put in place (git with git-lfs, the shared volume, the controller)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.npufleet.ascend.plugins.module_utils import run_processes

from npufleet.api import run_playbook
from npufleet.lab import faults
from tests.lab.conftest import TRAIN_LAB, TRAIN_NODES, node_exec, run_cli, vaulted

pytestmark = pytest.mark.lab
LAB = TRAIN_LAB
NODES = TRAIN_NODES
CONTAINER = "npufleet-workload"
TRAINING_ROOT = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"


@pytest.fixture
def reports(tmp_path):
    return tmp_path / "reports"


def train(inventory: Path, reports: Path, limit: str | None = None, **extravars):
    return run_playbook(
        "train.yml", inventory, limit=limit, extravars={"train_report_dir": str(reports)} | extravars
    )


# Fewer epochs than the lab's 12 (make demo's loss curve): enough steps for the report's window and
# verdict, in a third of the time. The later tests that serve this adapter ask for the same run.
SFT_ONE = {"train_name": "sft-one", "train_epochs": 4}
SFT_TWO = {"train_name": "sft-two", "train_epochs": 6}


def read_report(reports: Path, name: str) -> dict:
    return json.loads((reports / name / "report.json").read_text())


def test_sft_lora_on_one_node(train_lab, reports):
    result = train(train_lab, reports, limit=NODES[0], train_force=True, **SFT_ONE)
    assert result.succeeded, result.first_failure()
    code, listing = node_exec(NODES[0], "ls /home/ma-user/ws/output/sft-one")
    assert code == 0
    assert {"adapter_model.safetensors", "adapter_config.json", "trainer_log.jsonl"} <= set(listing.split())
    report = read_report(reports, "sft-one")
    assert (report["nodes"], report["cards"], report["stage"], report["finetuning_type"]) == (
        1,
        1,
        "sft",
        "lora",
    )
    # The report is computed from the real log fetched from the node: recompute it here.
    log = (reports / "sft-one" / "trainer_log.jsonl").read_text()
    _, node_log = node_exec(NODES[0], "cat /home/ma-user/ws/output/sft-one/trainer_log.jsonl")
    assert log.strip() == node_log.strip()
    assert report["throughput"]["steps"] == sum(1 for line in log.splitlines() if '"loss"' in line)
    assert report["throughput"]["tokens_per_second_per_card"] > 0
    assert report["loss"]["verdict"] in ("converging", "falling")
    assert (reports / "sft-one" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "| tokens/s per card |" in (reports / "sft-one" / "report.md").read_text()
    # Everything the stages put in the work dir belongs to the container's user (a re-run of the
    # container stage then has nothing to chown).
    assert node_exec(NODES[0], "find /home/ma-user/ws ! -uid 1000 -o ! -gid 1000") == (0, "")


def node_addresses(inventory: Path) -> dict[str, str]:
    hosts = yaml.safe_load(inventory.read_text())["all"]["children"]["npu_nodes"]["hosts"]
    return {name: hosts[name]["npufleet_node_address"] for name in NODES}


# The processes of a training run: torchrun's agent (pt_elastic) and the ranks (python3).
TRAINING_PROCESSES = ('"pt_elastic"', '"python3"', '"python"', '"torchrun"')


def listeners_while(run) -> tuple[object, set[tuple[str, str, str]]]:
    """``run()``'s result, and every TCP listener of the training processes on both nodes seen while
    it ran (node, local address:port, process), from ss on the node (the containers share its network)."""
    seen: set[tuple[str, str, str]] = set()
    done = threading.Event()

    def sample():
        while not done.is_set():
            for name in NODES:
                _, listing = node_exec(name, "ss -ltnpH")
                for line in listing.splitlines():
                    fields = line.split()
                    if (
                        len(fields) >= 6
                        and fields[5].startswith("users:")
                        and any(process in fields[5] for process in TRAINING_PROCESSES)
                    ):
                        seen.add((name, fields[3], fields[5].split('"')[1]))
            done.wait(1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        return run(), seen
    finally:
        done.set()
        sampler.join()


def bridge_connect(node: str, image: str, address: str, port: int) -> str:
    """A connection from a container on the node's own Docker bridge (not the job network) to
    address:port: "connected", or the error."""
    script = (
        "import socket\ntry:\n"
        f"    socket.create_connection(({address!r}, {port}), timeout=5); print('connected')\n"
        "except OSError as error:\n    print(type(error).__name__)"
    )
    code, output = node_exec(
        node, f"docker run --rm --network bridge --entrypoint python3 {image} -c {shlex.quote(script)}"
    )
    assert code == 0, output
    return output.splitlines()[-1]


def test_sft_lora_on_two_nodes_then_nothing_to_do(train_lab, reports):
    result, listeners = listeners_while(lambda: train(train_lab, reports, train_force=True, **SFT_TWO))
    assert result.succeeded, result.first_failure()
    addresses = node_addresses(train_lab)
    assert addresses[NODES[0]] != addresses[NODES[1]]
    # What listened while it ran: torch's rendezvous store on every interface of the first node
    # (torch binds it to ::, whatever MASTER_ADDR says), and the ranks' gloo listeners, each on its
    # node's job address (GLOO_SOCKET_IFNAME); nothing else.
    print("listeners:", sorted(listeners))
    assert (NODES[0], "*:29500", "pt_elastic") in listeners
    others = {(name, local) for name, local, _ in listeners if local != "*:29500"}
    assert {name for name, _ in others} == set(NODES), listeners
    assert all(local.rsplit(":", 1)[0] == addresses[name] for name, local in others), listeners
    # So the first node lets only the job network reach that port: a listener there (the store has
    # gone) answers node 2, not a container on node 1's own Docker bridge, which reaches another
    # port listening on every interface.
    _, rules = node_exec(NODES[0], "iptables -w -S")
    assert "-A INPUT -p tcp -m tcp --dport 29500 -m comment --comment" in rules, rules
    assert f"-A NPUFLEET-MASTER-PORT -s {addresses[NODES[1]]}/32 " in rules, rules
    assert node_exec(NODES[1], "iptables -w -S | grep -c NPUFLEET ; true")[1] == "0"
    # Over IPv6 (the store's socket is dual stack) only node 1 itself may reach it.
    _, rules6 = node_exec(NODES[0], "ip6tables -w -S INPUT")
    assert [line.split(" -m comment")[0] for line in rules6.splitlines() if "29500" in line] == [
        "-A INPUT -i lo -p tcp -m tcp --dport 29500",
        "-A INPUT -p tcp -m tcp --dport 29500",
    ], rules6
    image = yaml.safe_load(train_lab.read_text())["all"]["vars"]
    image = f"{image['image_name']}:{image['image_tag']}"
    for port in (29500, 29502):
        node_exec(NODES[0], f"nohup python3 -m http.server {port} >/dev/null 2>&1 & sleep 1")
    try:
        reached = node_exec(
            NODES[1], f"curl -s -o /dev/null -w '%{{http_code}}' http://{addresses[NODES[0]]}:29500/"
        )
        assert reached == (0, "200")
        assert bridge_connect(NODES[0], image, addresses[NODES[0]], 29502) == "connected"
        assert bridge_connect(NODES[0], image, addresses[NODES[0]], 29500) == "ConnectionRefusedError"
    finally:
        node_exec(NODES[0], "pkill -f 'http.server 2950[02]' ; true")
    for rank, name in enumerate(NODES):
        _, log = node_exec(name, f"cat /home/ma-user/ws/npufleet/logs/sft-two-rank{rank}.log")
        assert f"Process rank: {rank}, world size: 2" in log
        _, record = node_exec(name, "cat /var/lib/npufleet/launch/train-sft-two.json")
        env = json.loads(record)["env"]
        assert (env["NNODES"], env["NODE_RANK"], env["MASTER_PORT"]) == ("2", str(rank), "29500")
        assert env["MASTER_ADDR"] == addresses[NODES[0]]
        assert env["HCCL_IF_IP"] == addresses[name]
        assert env["GLOO_SOCKET_IFNAME"] == env["HCCL_SOCKET_IFNAME"] == "eth0"
        assert env["FORCE_TORCHRUN"] == "1"
    # The gate before launch wrote the job's rank table on both nodes from the NPU addresses it read:
    # the training container's NPUs 0-3, NPU n of node k at 192.168.(100+n).(100+k).
    tables = [json.loads(node_exec(name, "cat /home/ma-user/ws/npufleet/hccl.json")[1]) for name in NODES]
    assert tables[0] == tables[1]
    assert (tables[0]["version"], tables[0]["server_count"], tables[0]["status"]) == ("1.0", "2", "completed")
    assert [server["server_id"] for server in tables[0]["server_list"]] == [addresses[name] for name in NODES]
    assert [
        (d["device_id"], d["device_ip"], d["rank_id"]) for s in tables[0]["server_list"] for d in s["device"]
    ] == [
        (str(npu), f"192.168.{100 + npu}.{101 + node}", str(4 * node + npu))
        for node in range(2)
        for npu in range(4)
    ]
    # Rank 0 writes the log and the adapter; the report says 2 cards and which method it used.
    _, listing = node_exec(NODES[0], "ls /home/ma-user/ws/output/sft-two")
    assert "adapter_model.safetensors" in listing.split()
    report = read_report(reports, "sft-two")
    throughput = report["throughput"]
    assert (report["nodes"], report["cards"]) == (2, 2)
    assert throughput["method"].startswith("manual's formula"), throughput["method"]
    assert throughput["window"]["delta_seconds"] >= 10
    assert throughput["llamafactory_tokens_per_second_per_card"] > 0
    print("2-node tokens/s per card: report", throughput["tokens_per_second_per_card"],
          "LLaMA-Factory", throughput["llamafactory_tokens_per_second_per_card"])  # fmt: skip
    again = train(train_lab, reports, **SFT_TWO)
    assert again.succeeded, again.first_failure()
    assert {name: again.hosts[name].changed for name in NODES} == {name: 0 for name in NODES}, {
        name: again.hosts[name].changed_tasks for name in NODES
    }


def test_dpo_on_one_node(train_lab, reports):
    result = train(train_lab, reports, limit=NODES[0], train_name="dpo-one", train_stage="dpo",
                   train_force=True, train_dataset="lab_preference", train_epochs=2)  # fmt: skip
    assert result.succeeded, result.first_failure()
    _, recipe = node_exec(NODES[0], "cat /home/ma-user/ws/npufleet/dpo-one.yaml")
    assert yaml.safe_load(recipe)["stage"] == "dpo"
    _, log = node_exec(NODES[0], "cat /home/ma-user/ws/output/dpo-one/trainer_log.jsonl")
    first = json.loads(log.splitlines()[0])
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3)  # DPO's sigmoid loss starts at ln 2
    assert read_report(reports, "dpo-one")["stage"] == "dpo"


def wait_for_training_steps(name: str, ended=lambda: False) -> None:
    """Until rank 0 of run ``name`` draws its progress bar (training steps run), at most 2 minutes,
    or until ``ended()``."""
    for _ in range(240):
        if ended():
            return
        code, _ = node_exec(NODES[0], f"grep -q 'it/s' /home/ma-user/ws/npufleet/logs/{name}-rank0.log")
        if code == 0:
            return
        time.sleep(0.5)


def forget_logs(name: str) -> None:
    for node in NODES:
        node_exec(node, f"rm -f /home/ma-user/ws/npufleet/logs/{name}-rank*")


# A long two-node run: 30 epochs, looked at every 5 s.
LONG_RUN = {"train_epochs": 30, "train_poll_seconds": 5, "train_force": True}


def train_then_interrupt(inventory: Path, reports: Path, name: str, interrupt) -> object:
    """A long two-node run whose ``interrupt`` is called once training steps run: the run's result."""

    def when_steps_run():
        wait_for_training_steps(name)
        interrupt()

    forget_logs(name)
    interrupter = threading.Thread(target=when_steps_run)
    interrupter.start()
    try:
        return train(inventory, reports, train_name=name, **LONG_RUN)
    finally:
        interrupter.join()


def cli_train_then_interrupt(inventory: Path, name: str, report_dir: Path, interrupt) -> tuple:
    """The same long run through `npufleet train --json`, as a user starts it; ``interrupt(cli)`` is
    called once training steps run. The exit code, stdout, stderr, and the seconds from the
    interrupt to the command's exit."""
    forget_logs(name)
    extravars = {"train_name": name, "npufleet_report_dir": str(report_dir)} | LONG_RUN
    # -e reads numbers and true/false as such, and text as it is.
    values = {key: value if isinstance(value, str) else json.dumps(value) for key, value in extravars.items()}
    options = [item for key, value in values.items() for item in ("-e", f"{key}={value}")]
    argv = [str(Path(sys.executable).parent / "npufleet"), "train", "-i", str(inventory), "--json", *options]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as cli:
        wait_for_training_steps(name, ended=lambda: cli.poll() is not None)
        interrupted = time.monotonic()
        interrupt(cli)
        out, err = cli.communicate(timeout=600)
    return cli.returncode, out, err, time.monotonic() - interrupted


def test_a_lost_rank_stops_the_other_and_names_its_node(train_lab, reports):
    stopped_at = {}

    def stop_node2_container():
        node_exec(NODES[1], f"docker stop -t 1 {CONTAINER}")
        stopped_at["time"] = time.monotonic()

    try:
        result = train_then_interrupt(train_lab, reports, "fault", stop_node2_container)
        ended = time.monotonic()
    finally:
        node_exec(NODES[1], f"docker start {CONTAINER}")
    assert not result.succeeded
    message = result.first_failure()
    assert f"Training fault failed on {NODES[1]}" in message
    assert f"== {NODES[1]} (rank 1): container {CONTAINER} is not running" in message
    # Bounded: one round of waiting (5 s) plus stopping, not the run's 30 epochs.
    assert ended - stopped_at["time"] < 60
    code, _ = node_exec(NODES[0], f"docker exec {CONTAINER} pgrep -f 'llamafactory|torchrun'")
    assert code == 1, "the survivor's rank still runs"


@pytest.mark.parametrize(
    ("fault", "refusal", "message"),
    [
        (("link", 2, None), "the job cannot start:", f"{NODES[1]} NPU 2: link is DOWN"),
        # Read when the stage starts (and by site.yml's validation pass), before the gate.
        (
            ("port", 0, "29500"),
            f"train on {NODES[1]}:",
            "train_master_port 29500 is already taken on the node by pid",
        ),
    ],
)
def test_a_two_node_run_is_refused_by_the_gate_before_any_rank_starts(
    train_lab, reports, fault, refusal, message
):
    node_exec(NODES[0], "rm -f /home/ma-user/ws/npufleet/logs/gated-rank0.log")
    faults.fault(LAB, NODES[1], *fault)
    try:
        result = train(train_lab, reports, train_name="gated", train_force=True)
    finally:
        faults.fault(LAB, NODES[1], "clear")
    assert not result.succeeded
    failures = " ".join(result.failure_lines())
    assert refusal in failures and message in failures
    for rank, name in enumerate(NODES):
        assert node_exec(name, f"test -e /home/ma-user/ws/npufleet/logs/gated-rank{rank}.log")[0] == 1
        assert node_exec(name, "test -e /var/lib/npufleet/launch/train-gated.json")[0] == 1


def test_assets_from_git_with_lfs_pinned_and_pip_requirements(train_lab, reports):
    # Node setup's git_lfs role puts git and git-lfs on the node (full lab nodes come without them).
    setup_node = run_playbook("node.yml", train_lab, limit=NODES[0], tags="git_lfs")
    assert setup_node.succeeded, setup_node.first_failure()
    # A repository on the node with a git-lfs file; clones use its file:// URL (git-lfs serves it).
    setup = "; ".join([
        "set -e",
        "rm -rf /srv/weights.git /tmp/w",
        "git init -q /tmp/w",
        "cd /tmp/w",
        "git lfs install --local >/dev/null",
        "git lfs track '*.bin' >/dev/null",
        "head -c 4096 /dev/urandom > model.bin",
        "echo v1 > README",
        "git add -A",
        "git -c user.email=t@lab -c user.name=t commit -qm v1",
        "git rev-parse HEAD > /tmp/v1",
        "echo v2 > README",
        "git -c user.email=t@lab -c user.name=t commit -qam v2",
        "git clone -q --bare /tmp/w /srv/weights.git",
        "cp -r /tmp/w/.git/lfs /srv/weights.git/",
    ])  # fmt: skip
    code, output = node_exec(NODES[0], setup)
    assert code == 0, output
    _, pinned = node_exec(NODES[0], "cat /tmp/v1")
    # In the bare repository the weights are git-lfs objects; the commit holds only a pointer.
    assert "oid sha256:" in node_exec(NODES[0], f"git -C /srv/weights.git show {pinned}:model.bin")[1]
    assets = {
        "train_assets": [
            {
                "name": "weights",
                "git": "file:///srv/weights.git",
                "version": pinned,
                "lfs": True,
                "dest": "models/weights",
            }
        ],
        "train_pip_requirements": ["pyarrow<20"],
        "train_pip_extra_args": ["--no-index"],
    }
    first = run_playbook("train.yml", train_lab, limit=NODES[0], tags="train_assets", extravars=assets)
    assert first.succeeded, first.first_failure()
    assert node_exec(NODES[0], "cat /home/ma-user/ws/models/weights/README") == (0, "v1")
    _, original = node_exec(NODES[0], "sha256sum < /tmp/w/model.bin")
    assert node_exec(NODES[0], "sha256sum < /home/ma-user/ws/models/weights/model.bin") == (0, original)
    assert node_exec(NODES[0], "stat -c %u /home/ma-user/ws/models/weights/model.bin") == (0, "1000")
    again = run_playbook("train.yml", train_lab, limit=NODES[0], tags="train_assets", extravars=assets)
    assert again.succeeded and again.hosts[NODES[0]].changed == 0, again.hosts[NODES[0]].changed_tasks


def listening_on(node: str, port: int) -> list[str]:
    """The local addresses of the TCP listeners on ``port`` on the node (the containers share its network)."""
    _, listing = node_exec(node, f"ss -ltnH 'sport = :{port}'")
    return sorted(line.split()[3] for line in listing.splitlines())


def serve(inventory: Path, **extravars):
    # The base model unless a test names an adapter (the lab inventory names site.yml's "sft" run).
    return run_playbook(
        "serve.yml",
        inventory,
        limit=NODES[0],
        # No service record unless a test asks for one: the checkout's reports/ is the user's.
        extravars={"serve_adapter_path": "", "serve_record_dir": ""} | extravars,
    )


def test_serve_the_trained_adapter_pass_the_gates_and_benchmark_it(train_lab, reports, tmp_path):
    trained = train(train_lab, reports, limit=NODES[0], **SFT_ONE)  # skipped when done
    assert trained.succeeded, trained.first_failure()
    # LLaMA-Factory's API, the lab's second engine (vLLM is its first), in the training container.
    settings = {"serve_name": "lab-api", "serve_port": 8100, "serve_served_model_name": "tiny-sft",
                "serve_engine": "llamafactory",
                "serve_adapter_path": "/workspace/output/sft-one"}  # fmt: skip
    first = serve(train_lab, **settings)
    assert first.succeeded, first.first_failure()
    # LLaMA-Factory's API too listens on the node's own address (API_HOST), where the gates asked.
    address = node_addresses(train_lab)[NODES[0]]
    assert listening_on(NODES[0], 8100) == [f"{address}:8100"]
    (gate,) = first.module_results("openai_gate")
    assert gate.result["status"] == {"models": 200, "completion": 200}
    _, rendered = node_exec(NODES[0], "cat /home/ma-user/ws/npufleet/serve/lab-api.yaml")
    assert yaml.safe_load(rendered)["adapter_name_or_path"] == "/workspace/output/sft-one"
    again = serve(train_lab, **settings)
    assert again.succeeded and again.hosts[NODES[0]].changed == 0, again.hosts[NODES[0]].changed_tasks
    # bench.yml: the load generator on the controller, over the lab network, against the real server.
    bench = run_playbook("bench.yml", train_lab, extravars=settings | {
        "bench_requests": 6, "bench_concurrency": [1, 2], "bench_input_tokens": 8, "bench_output_tokens": 16,
        "bench_dest": str(tmp_path / "bench")})  # fmt: skip
    assert bench.succeeded, bench.first_failure()
    data = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert data["config"]["url"] == f"http://{address}:8100"
    for run in data["runs"]:
        assert (run["summary"]["completed"], run["summary"]["failed"]) == (6, 0)
        assert run["summary"]["ttft_ms"]["p50"] > 0
    assert (tmp_path / "bench" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    # The same through the CLI (bench.yml when no --url is given): its JSON names the report files.
    cli = run_cli("--json", "bench", "-i", str(train_lab), "--concurrency", "1", "--requests", "3",
                  "--input-tokens", "8", "--output-tokens", "8", "-e", f"bench_dest={tmp_path / 'cli'}",
                  *[f"-e={key}={value}" for key, value in settings.items()])  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert str(tmp_path / "cli" / "bench.json") in json.loads(cli.stdout)["reports"]
    runs = json.loads((tmp_path / "cli" / "bench.json").read_text())["runs"]
    assert [(run["summary"]["completed"], run["summary"]["failed"]) for run in runs] == [(3, 0)]
    node_exec(NODES[0], f"docker exec {CONTAINER} pkill -f 'llamafactory-cli api' ; true")


def test_a_server_that_dies_fails_the_gate_with_its_log(train_lab):
    result = serve(train_lab, serve_name="dying-api", serve_port=8102, serve_engine="llamafactory",
                   serve_template="no_such_template")  # fmt: skip
    assert not result.succeeded
    message = result.first_failure()
    assert "serve-dying-api in npufleet-workload failed: exited with code 1" in message
    assert "no_such_template" in message  # the log's tail says why


# vLLM's CPU build, the lab's serving engine, in the inference container beside the training one.
INFERENCE = "npufleet-inference"
SECRET = "sk-lab-test-7f3a9c"


def vllm_processes() -> str:
    return node_exec(NODES[0], f"docker exec {INFERENCE} pgrep -af vllm.entrypoints ; true")[1]


def test_vllm_serves_the_trained_adapter_behind_an_api_key(train_lab, reports, tmp_path, monkeypatch):
    trained = train(train_lab, reports, limit=NODES[0], **SFT_ONE)  # skipped when done
    assert trained.succeeded, trained.first_failure()
    # The key in a vault, as users keep it (the runner refuses secrets as extra vars).
    inventory, password = vaulted(train_lab, tmp_path / "inventory", {"serve_api_key": SECRET})
    settings = {"serve_name": "vllm-key", "serve_port": 8110,
                "serve_adapter_path": "/workspace/output/sft-one",
                "serve_record_dir": str(tmp_path / "records")}  # fmt: skip
    # Exported as for 'npufleet endpoints': it must not reach the run's kept artifacts either.
    monkeypatch.setenv("NPUFLEET_API_KEY", SECRET)

    def serve_with_key():
        return run_playbook(
            "serve.yml", inventory, limit=NODES[0], extravars=settings, vault_password=password
        )

    first = serve_with_key()
    assert first.succeeded, first.first_failure()
    kept = [path for path in Path(first.artifact_dir).rglob("*") if path.is_file()]
    assert kept and not [path for path in kept if SECRET in path.read_text(errors="replace")]
    address = node_addresses(train_lab)[NODES[0]]
    # serve_host by default: the node's own address, not every interface; the gates asked there.
    assert listening_on(NODES[0], 8110) == [f"{address}:8110"]
    (gate,) = first.module_results("openai_gate")
    assert gate.result["status"] == {"models": 200, "completion": 200}
    assert node_exec(NODES[0], "curl -s -o /dev/null http://127.0.0.1:8110/health")[0] == 7  # refused
    models = json.loads(
        node_exec(NODES[0], f"curl -s -H 'Authorization: Bearer {SECRET}' http://{address}:8110/v1/models")[1]
    )
    # The base model and the adapter, both served by vLLM.
    assert {(item["id"], item["owned_by"]) for item in models["data"]} == {
        ("tiny-qwen2", "vllm"), ("tiny-qwen2-sft", "vllm")}  # fmt: skip
    # Without the key: refused; /health and /metrics stay open.
    probe = f"curl -s -o /dev/null -w '%{{http_code}} ' http://{address}:8110"
    codes = node_exec(NODES[0], f"for path in v1/models health metrics; do {probe}/$path; done")[1]
    assert codes.split() == ["401", "200", "200"]
    # The key is on no command line, in no record, no log and no output.
    _, processes = node_exec(NODES[0], "ps -eo args; docker exec npufleet-inference ps -eo args")
    assert "vllm.entrypoints.openai.api_server" in processes and SECRET not in processes
    _, leftovers = node_exec(
        NODES[0], f"grep -rl {SECRET} /var/lib/npufleet /home/ma-user/ws/npufleet ; true"
    )
    assert leftovers == ""
    assert SECRET not in first.output_tail
    assert SECRET not in "".join(path.read_text() for path in (tmp_path / "records").glob("*.json"))
    record = json.loads((tmp_path / "records" / f"vllm-key-{NODES[0]}.json").read_text())
    assert (record["engine"], record["model"], record["url"]) == (
        "vllm",
        "tiny-qwen2-sft",
        f"http://{address}:8110/v1",
    )
    assert record["api_key_required"] is True
    again = serve_with_key()
    assert again.succeeded and again.hosts[NODES[0]].changed == 0, again.hosts[NODES[0]].changed_tasks
    # npufleet bench sends the key from the environment; without it, every request is refused.
    bench = ["--json", "bench", "--url", f"http://{address}:8110", "--model", "tiny-qwen2-sft",
             "--concurrency", "1", "--requests", "2", "--input-tokens", "8", "--output-tokens", "4",
             "--out", str(tmp_path / "bench")]  # fmt: skip
    sent = run_cli(*bench)
    assert sent.returncode == 0, sent.stderr
    assert SECRET not in sent.stdout + sent.stderr + (tmp_path / "bench" / "bench.json").read_text()
    monkeypatch.delenv("NPUFLEET_API_KEY")
    refused = run_cli(*bench)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
    node_exec(NODES[0], f"docker exec {INFERENCE} pkill -f 'port=8110' ; true")


def hold_port(port: int) -> None:
    """A listener on the node (the containers share its network): the serving port is taken."""
    node_exec(NODES[0], f"nohup python3 -m http.server {port} >/dev/null 2>&1 & sleep 1")


@pytest.mark.parametrize(
    ("case", "extravars", "meaning", "hint"),
    [
        # Whether the exit or the log's line is seen first, the reason names the line.
        ("flag", {"serve_num_scheduler_steps": 8},
         "the server rejects a command-line flag: api_server.py: error: unrecognized arguments:"
         " --num-scheduler-steps=8", "remove or fix that flag"),
        # The pre-launch check reads max_position_embeddings too: an extra flag gets past it to vLLM.
        ("maxlen", {"serve_extra_args": ["--enforce-eager", "--max-model-len=1024"]},
         "max-model-len is longer than the model allows: User-specified max_model_len (1024) is greater",
         "the manual's inference FAQ 2: lower --max-model-len (serve_max_model_len)"),
        ("kv", {"serve_env": {"VLLM_CPU_KVCACHE_SPACE": "64", "HF_HUB_OFFLINE": "1"}},
         "the KV cache does not fit in memory", "ask for a smaller KV cache"),
    ],
)  # fmt: skip
def test_vllm_start_up_failures_are_named_with_the_log_and_a_hint(train_lab, case, extravars, meaning, hint):
    port = {"flag": 8111, "maxlen": 8112, "kv": 8114}[case]
    result = serve(train_lab, serve_name=f"vllm-{case}", serve_port=port, **extravars)
    assert not result.succeeded
    message = result.first_failure()
    print(message)  # the gate's message as the user sees it (pytest -s shows it)
    gate = f"The vllm server on {NODES[0]} did not pass the health gates: serve-vllm-{case} in {INFERENCE}"
    assert f"{gate} failed" in message
    assert meaning in message and f"Hint: {hint}" in message and "Log tail (" in message
    assert f"port={port}" not in vllm_processes()


def test_a_serving_port_another_process_holds_is_refused_before_vllm_starts(train_lab):
    """vLLM started, then failed its gate with "Address already in use" in its log (the log's diagnosis
    still names it, tests/data/vllm_cpu/startup-port.log): the serve stage now reads the port first."""
    hold_port(8113)
    try:
        result = serve(train_lab, serve_name="vllm-port", serve_port=8113)
    finally:
        node_exec(NODES[0], "pkill -f 'http.server 8113' ; true")
    assert not result.succeeded
    assert (
        f"serve on {NODES[0]}: serve_port 8113 is already taken on the node by pid" in result.first_failure()
    )
    assert "(python3 -m http.server 8113), which is not npufleet's" in result.first_failure()
    assert node_exec(NODES[0], "test -e /home/ma-user/ws/npufleet/logs/serve-vllm-port.log")[0] == 1


def test_a_model_without_tokenizer_files_is_refused_before_vllm_starts(train_lab):
    node_exec(NODES[0], "mkdir -p /home/ma-user/ws/models/no-tokenizer && cd /home/ma-user/ws/models &&"
                        " cp tiny-qwen2/config.json tiny-qwen2/model.safetensors no-tokenizer/")  # fmt: skip
    result = serve(
        train_lab, serve_name="vllm-notok", serve_port=8115, serve_model_path="/workspace/models/no-tokenizer"
    )
    assert not result.succeeded
    assert "the model dir has no tokenizer files" in result.first_failure()
    assert node_exec(NODES[0], "test -e /home/ma-user/ws/npufleet/logs/serve-vllm-notok.log")[0] == 1


def test_a_server_not_ready_in_time_fails_and_is_left_stopped(train_lab):
    # vLLM needs 20 s or more to start here: 3 s is too short.
    result = serve(train_lab, serve_name="vllm-slow", serve_port=8116, serve_start_timeout=3)
    assert not result.succeeded
    message = result.first_failure()
    address = node_addresses(train_lab)[NODES[0]]
    assert f"not ready after 3 s (http://{address}:8116/health" in message and "(stopped it)" in message
    assert "port=8116" not in vllm_processes()


def test_the_two_containers_never_map_the_same_npu_unless_told(train_lab):
    overlap = {"npu_inference_container_npus": [3, 4, 5, 6, 7]}
    refused = run_playbook("container.yml", train_lab, limit=NODES[0], extravars=overlap)
    assert not refused.succeeded
    assert (
        "device(s) already in use: /dev/davinci3 held by container npufleet-workload"
        in refused.first_failure()
    )
    shared = run_playbook("container.yml", train_lab, limit=NODES[0], check=True,
                          extravars=overlap | {"npu_inference_container_shares_npus": True})  # fmt: skip
    assert shared.succeeded, shared.first_failure()
    # Nothing was changed by either: the inference container still maps NPUs 4-7.
    _, devices = node_exec(NODES[0], f"docker inspect -f '{{{{.HostConfig.Devices}}}}' {INFERENCE}")
    assert "/dev/davinci3 " not in devices and "/dev/davinci4" in devices


def test_the_manuals_multimodal_request_to_vllm(train_lab):
    """An image as base64 in the chat message: a vision-language model answers it, and the text model
    refuses it with vLLM's own error, which the gate shows."""
    picture = "/home/ma-user/ws/data/images/lab.png"  # on the node, where the gate runs
    vision = serve(train_lab, serve_name="vllm-vision", serve_port=8117, serve_gate_image=picture,
                   serve_model_path="/workspace/models/tiny-idefics3",
                   serve_served_model_name="tiny-idefics3",
                   serve_extra_args=["--enforce-eager", '--limit-mm-per-prompt={"image":1}'])  # fmt: skip
    assert vision.succeeded, vision.first_failure()
    (gate,) = vision.module_results("openai_gate")
    assert gate.result["status"] == {"models": 200, "completion": 200}
    assert gate.result["models"] == ["tiny-idefics3"] and gate.result["completion_tokens"] > 0
    node_exec(NODES[0], f"docker exec {INFERENCE} pkill -f 'port=8117' ; true")
    text = serve(train_lab, serve_name="vllm-text-image", serve_port=8118, serve_gate_image=picture)
    assert not text.succeeded
    assert "the chat completion failed (HTTP 400)" in text.first_failure()
    assert "is not a multimodal model" in text.first_failure()
    node_exec(NODES[0], f"docker exec {INFERENCE} pkill -f 'port=8118' ; true")


def test_mindie_across_two_nodes_gets_its_rank_table_from_the_gate(train_lab):
    """MindIE is not in the lab: its daemon cannot start. Everything before it is real: the gate
    across both nodes, then config.json and rank_table_file.json rendered from what it read."""
    mindie = {
        "serve_engine": "mindie",
        "serve_name": "mindie-lab",
        "serve_mindie_model_name": "DeepSeek-V3",
        "serve_mindie_npu_device_ids": [4, 5, 6, 7],
        "serve_port": 8120,
        "serve_start_timeout": 30,
        "serve_adapter_path": "",
        "serve_record_dir": "",
        # MindIE's max_model_len is their sum: it must fit the lab model's 512 positions.
        "serve_mindie_max_input_token_len": 256,
        "serve_mindie_max_iter_times": 256,
    }
    # The model comes with the training assets; copying them again changes nothing after the other tests.
    assets = run_playbook("train.yml", train_lab, tags="train_assets")
    assert assets.succeeded, assets.first_failure()
    result = run_playbook("serve.yml", train_lab, extravars=mindie)
    assert not result.succeeded  # no mindieservice_daemon in the lab
    # It fails where MindIE would start, after the gate passed and the files were rendered.
    assert "mindie-service/conf/config.json" in result.first_failure(), result.first_failure()
    inventory = yaml.safe_load(train_lab.read_text())["all"]["children"]["npu_nodes"]["hosts"]
    addresses = [inventory[name]["npufleet_node_address"] for name in NODES]
    expected = [
        (str(npu), f"192.168.{100 + npu}.{101 + node}", str(4 * node + npu - 4))
        for node in range(2)
        for npu in range(4, 8)
    ]
    for name in NODES:
        table = json.loads(node_exec(name, "cat /home/ma-user/ws/npufleet/serve/rank_table_file.json")[1])
        print(name, json.dumps(table))
        assert (table["version"], table["server_count"], table["status"]) == ("1.0", "2", "completed")
        assert [server["server_id"] for server in table["server_list"]] == addresses
        devices = [
            (d["device_id"], d["device_ip"], d["rank_id"]) for s in table["server_list"] for d in s["device"]
        ]
        assert devices == expected
        # The manual: config.json's ipAddress is the master's address, the rank table's first server_id.
        config = json.loads(node_exec(name, "cat /home/ma-user/ws/npufleet/serve/config.json")[1])
        assert config["ServerConfig"]["ipAddress"] == addresses[0]


def read_diagnosis(folder: Path) -> dict:
    return json.loads((folder / "diagnosis.json").read_text())


def test_a_taken_master_port_is_diagnosed_on_its_node_from_every_nodes_evidence(train_lab, tmp_path):
    """Through the CLI, as a user meets it: the gate is off, so the ranks start; the failure line
    names the diagnosis, and the evidence of both nodes is on the controller."""
    faults.fault(LAB, NODES[0], "port", 0, "29500")
    try:
        done = run_cli(
            "train", "-i", str(train_lab), "-e", "train_gate=false", "-e", "train_name=portfail",
            "-e", "train_force=true", "-e", f"npufleet_report_dir={tmp_path}",
        )  # fmt: skip
    finally:
        faults.fault(LAB, NODES[0], "clear")
    print(done.stderr[-3000:])
    assert done.returncode == 1
    failure = " ".join(done.stderr.split())
    assert f"npufleet: diagnosis: master_port_in_use on {NODES[0]} rank 0 at " in failure
    assert "fix: stop the process on that port" in failure
    (evidence,) = (tmp_path / "train").iterdir()
    assert f"evidence and diagnosis: {evidence}" in failure
    for rank, name in enumerate(NODES):
        node = evidence / "nodes" / name
        assert (node / "logs" / f"portfail-rank{rank}.log").is_file()
        assert (node / "containers" / CONTAINER / "inspect.json").is_file()
        assert "link status: UP" in (node / "commands" / "hccn_tool.txt").read_text()
        manifest = json.loads((node / "MANIFEST.json").read_text())
        assert {entry["name"] for entry in manifest["files"]} >= {"commands/npu-smi-info.txt"}
    first = read_diagnosis(evidence)["first"]
    assert (first["id"], first["node"], first["rank"]) == ("master_port_in_use", NODES[0], 0)
    assert first["file"] == f"nodes/{NODES[0]}/logs/portfail-rank0.log"
    assert "EADDRINUSE" in first["line"]
    assert "## First failure" in (evidence / "diagnosis.md").read_text()


def test_a_killed_rank_is_named_as_the_cause_and_the_survivors_errors_as_consequences(train_lab, tmp_path):
    def kill_rank1(_cli):
        # The worker (torchrun starts it as "python -u launcher.py"), as the OOM killer would take it.
        worker = "-u /opt/llamafactory/lib/python3.11/site-packages/llamafactory/launcher.py"
        node_exec(NODES[1], f"docker exec {CONTAINER} pkill -9 -f -- '{worker}'")

    code, _, err, took = cli_train_then_interrupt(train_lab, "killed", tmp_path, kill_rank1)
    print(err[-3000:])
    # Reported, not crashed: the ranks' lines hold text in brackets (gloo's "[/__w/pytorch/...]", a
    # command's "['torchrun', ...]"), which rich took for markup (MarkupError); the report now ends
    # with where its evidence is.
    assert code == 1 and "rich.errors" not in err, err[-3000:]
    assert err.rstrip().splitlines()[-1].startswith("evidence and diagnosis: "), err[-3000:]
    assert f"npufleet: diagnosis: rank_killed on {NODES[1]} rank 1" in " ".join(err.split())
    print(f"killed rank: the CLI ended {took:.1f} s after the kill")
    (evidence,) = (tmp_path / "train").iterdir()
    found = read_diagnosis(evidence)
    print(json.dumps(found["first"], indent=2))
    assert (found["first"]["id"], found["first"]["node"]) == ("rank_killed", NODES[1])
    survivors = [match for match in found["consequences"] if match["node"] == NODES[0]]
    assert survivors and all(match["symptom"] for match in survivors)


def test_ctrl_c_stops_every_rank_on_every_node_and_a_rerun_repairs(train_lab, reports, tmp_path):
    code, out, err, took = cli_train_then_interrupt(
        train_lab, "ctrl-c", tmp_path, lambda cli: cli.send_signal(signal.SIGINT)
    )
    stopped = [line for line in err.splitlines() if "stopped what the run started" in line]
    print("\n".join(stopped))
    print(f"Ctrl-C: the CLI exited {took:.1f} s later with code {code}")
    assert code == 130, err[-3000:]
    result = json.loads(out)
    assert result["status"] == "canceled" and result["stop"]["status"] == "successful"
    for node in NODES:
        summary = result["stop"]["nodes"][node]
        # The wrapper (bash), llamafactory-cli, torchrun's agent (pt_elastic) and its worker (python3).
        assert summary.startswith("stopped ") and f"in {CONTAINER}: bash, llamafactory-cl" in summary
        assert node_exec(node, f"docker exec {CONTAINER} pgrep -f 'llamafactory|torchrun'")[0] == 1
    assert run_processes.processes_of_run(result["run_id"]) == []
    assert took < 90
    # A re-run repairs: the stopped ranks are started again, and this time run to the end.
    again = train(train_lab, reports, train_name="ctrl-c", train_epochs=1, train_force=True)
    assert again.succeeded, again.first_failure()


@pytest.fixture
def node2_container(train_lab, request):
    """Starts node 2's NPU containers with other settings for a test, and as the lab has them after it
    when a later test needs them so (each start sets every setting: a later user of this fixture does not)."""

    def start(**extravars):
        result = run_playbook("container.yml", train_lab, limit=NODES[1], extravars=extravars)
        assert result.succeeded, result.first_failure()

    yield start
    items = request.session.items
    later = items[items.index(request.node) + 1 :]
    if os.environ.get("NPUFLEET_KEEP_LAB") or any(
        "train_lab" in item.fixturenames and "node2_container" not in item.fixturenames for item in later
    ):
        start()


def failed_train(inventory: Path, tmp_path: Path, name: str, *extra: str) -> tuple[str, Path, dict]:
    """A two-node training run through the CLI, as a user meets it, that fails: its failure line (on one
    line), its evidence folder, and the diagnosis found there."""
    done = run_cli(
        "train", "-i", str(inventory), "-e", f"train_name={name}", "-e", "train_force=true",
        "-e", f"npufleet_report_dir={tmp_path}", *extra,
    )  # fmt: skip
    print(done.stderr[-3000:])
    assert done.returncode == 1
    (evidence,) = (tmp_path / "train").iterdir()
    found = read_diagnosis(evidence)
    print(json.dumps(found["first"], indent=2))
    return " ".join(done.stderr.split()), evidence, found


def container_defaults() -> dict:
    return yaml.safe_load((Path(__file__).parents[2] / "roles/npu_container/defaults/main.yml").read_text())


def test_a_wrong_rank_table_path_is_diagnosed_on_its_node_from_hccls_plog(train_lab, tmp_path):
    """The rank table was put on node 1 only: HCCL on node 2 writes its error to the plog alone (the lab's
    stand-in writes it where CANN does), and the evidence brings that plog back."""
    table = "/home/ma-user/ws/rank_table.json"
    assert node_exec(NODES[0], f'echo \'{{"version": "1.0"}}\' > {table} && chown 1000:1000 {table}')[0] == 0
    for node in NODES:
        assert node_exec(node, f"docker exec {CONTAINER} rm -rf /home/ma-user/ascend/log")[0] == 0
    try:
        failure, _, found = failed_train(
            train_lab,
            tmp_path,
            "ranktable",
            "-e",
            'train_env={"RANK_TABLE_FILE": "/workspace/rank_table.json"}',
        )
    finally:
        node_exec(NODES[0], f"rm -f {table}")
    assert f"npufleet: diagnosis: hccl_rank_table_missing on {NODES[1]}" in failure
    first = found["first"]
    assert (first["id"], first["node"], first["rank"]) == ("hccl_rank_table_missing", NODES[1], 1)
    assert first["file"].startswith(f"nodes/{NODES[1]}/containers/{CONTAINER}/")
    assert "plog-" in first["file"]
    assert "get file[/workspace/rank_table.json] real path error" in first["line"]
    assert not [match for match in found["matches"] if match["node"] == NODES[0] and not match["symptom"]]


def test_a_taken_serving_port_is_diagnosed_through_the_cli_with_the_servers_evidence(train_lab, tmp_path):
    """A failed serve stage gathers the evidence as a failed training run does: the server's log, the
    readings from before it started, the inference container; and the diagnosis names the port. The
    port is held in the serving container itself (a leftover of an earlier server there): the checks
    before launch leave npufleet's own containers' listeners alone, so the server starts and fails."""
    port = 8115
    node_exec(NODES[0], f"docker exec -d {INFERENCE} python3 -m http.server {port}; sleep 2")
    try:
        done = run_cli(
            "serve", "-i", str(train_lab), "--limit", NODES[0], "-e", "serve_name=portserve",
            "-e", f"serve_port={port}", "-e", "serve_adapter_path=", "-e", "serve_record_dir=",
            "-e", f"npufleet_report_dir={tmp_path}",
        )  # fmt: skip
    finally:
        node_exec(NODES[0], f"docker exec {INFERENCE} pkill -f 'http.server {port}' ; true")
    print(done.stderr[-3000:])
    assert done.returncode == 1
    failure = " ".join(done.stderr.split())
    assert f"npufleet: diagnosis: serving_port_in_use on {NODES[0]}" in failure
    (evidence,) = (tmp_path / "serve").iterdir()
    assert f"evidence and diagnosis: {evidence}" in failure
    node = evidence / "nodes" / NODES[0]
    assert "Address already in use" in (node / "logs" / "serve-portserve.log").read_text()
    before = (node / "logs" / "serve-portserve-before.log").read_text()
    assert before.startswith(f"== readings on {NODES[0]} before server serve-portserve started, at 20")
    assert "910B3" in before
    assert (node / "containers" / INFERENCE / "inspect.json").is_file()
    first = read_diagnosis(evidence)["first"]
    assert (first["id"], first["node"], first["file"]) == (
        "serving_port_in_use", NODES[0], f"nodes/{NODES[0]}/logs/serve-portserve.log"
    )  # fmt: skip


def test_a_failed_benchmark_gathers_the_evidence_too(train_lab, tmp_path):
    """Nothing serves on the port the benchmark is given: it fails, and the evidence is gathered (with
    the readings from before it) even where no known fault explains it."""
    done = run_cli(
        "bench", "-i", str(train_lab), "--concurrency", "1", "--requests", "2",
        "-e", "serve_port=8199", "-e", f"npufleet_report_dir={tmp_path}",
    )  # fmt: skip
    print(done.stderr[-3000:])
    assert done.returncode == 1
    # bench/ also holds the benchmark's own report folder (bench/api): the evidence is the one with nodes/.
    (evidence,) = [folder for folder in (tmp_path / "bench").iterdir() if (folder / "nodes").is_dir()]
    before = (evidence / "nodes" / NODES[0] / "logs" / "bench-api-before.log").read_text()
    assert before.startswith(f"== readings on {NODES[0]} before benchmark api started, at 20")
    # An earlier stage's logs (the serving test's, seconds before) are not this run's evidence.
    found = read_diagnosis(evidence)
    assert not [match for match in found["matches"] if "/logs/serve-" in match["file"]], found["matches"]
    assert not list((evidence / "nodes" / NODES[0] / "logs").glob("serve-*"))


def test_a_container_without_the_driver_mount_is_diagnosed_on_its_node(train_lab, tmp_path, node2_container):
    """The lab's training image loads the driver's libascend_hal.so when torch starts, as torch_npu does
    (files/npufleet_lab_npu.py): a container started without /usr/local/Ascend/driver fails as on a server."""
    mounts = [
        mount
        for mount in container_defaults()["npu_container_driver_mounts"]
        if mount["dest"] != "/usr/local/Ascend/driver"
    ]
    node2_container(npu_container_driver_mounts=mounts, npu_container_verify=False)
    failure, evidence, found = failed_train(train_lab, tmp_path, "nodriver")
    assert f"npufleet: diagnosis: driver_not_mounted on {NODES[1]}" in failure
    assert "fix: start the container with the driver mounts" in failure
    first = found["first"]
    assert (first["id"], first["node"]) == ("driver_not_mounted", NODES[1])
    assert first["file"] == f"nodes/{NODES[1]}/logs/nodriver-rank1.log"
    assert "libascend_hal.so: cannot open shared object file" in first["line"]
    # Node 1 has its driver: none of its matches is a cause.
    assert all(match["symptom"] for match in found["consequences"] if match["node"] == NODES[0])
    # Beside the readings after the failure, what the gate and npu-smi read before the launch.
    before = (evidence / "nodes" / NODES[1] / "logs" / "nodriver-before.log").read_text()
    assert before.startswith(f"== readings on {NODES[1]} before run nodriver started, at 20")
    assert f"\n{NODES[1]}:\n  NPU  link  health " in before  # the gate's table
    assert "\n== npu-smi info\n" in before and "910B3" in before and "(exit 0)" in before
    assert "== hccn_tool -i 0 -link -g\nlink status: UP" in before
    after = (evidence / "nodes" / NODES[1] / "commands" / "npu-smi-info.txt").read_text()
    assert "910B3" in after


def test_a_too_small_shm_is_diagnosed_on_its_node(train_lab, tmp_path, node2_container):
    """Data loader workers hand their batches over in /dev/shm: with 64 KiB of it on node 2 (room for
    the loader's semaphores, not for the batches) they fail."""
    node2_container(npu_container_shm_size="64k")
    failure, evidence, found = failed_train(
        train_lab, tmp_path, "smallshm",
        "-e", 'train_extra_config={"dataloader_num_workers": 2, "dataloader_prefetch_factor": 4}',
    )  # fmt: skip
    assert f"npufleet: diagnosis: shm_too_small on {NODES[1]}" in failure
    first = found["first"]
    assert (first["id"], first["node"]) == ("shm_too_small", NODES[1])
    assert first["file"].startswith(f"nodes/{NODES[1]}/")
    assert (evidence / "nodes" / NODES[1] / "logs" / "smallshm-before.log").is_file()


# MindSpeed-LLM end to end, up to the launch: only an NPU runs its scripts (torch_npu), so the lab
# inventory sets train_mindspeed_render_only. Stand-ins for the manual's third-party repositories are
# made on the node (nothing reaches an outside host); the model is the lab's real tiny Qwen2.
MINDSPEED_RUN = "ms-tiny"
MINDSPEED_SCRIPTS = [
    f"{MINDSPEED_RUN}-install.sh",
    f"{MINDSPEED_RUN}-convert.sh",
    f"{MINDSPEED_RUN}-preprocess.sh",
    f"{MINDSPEED_RUN}.sh",
]
ASCENDSPEED = "llm_train/AscendSpeed"
COMMIT = "git -c user.email=t@lab -c user.name=t commit -q"


def mindspeed_stand_ins(node: str) -> dict[str, str]:
    """Bare repositories on the node standing in for MindSpeed, Megatron-LM and ModelLink: a pinned
    first commit (tagged v1), then a second one on branch main that must not be taken."""
    files = {
        "MindSpeed": ["mindspeed/__init__.py"],
        "Megatron-LM": ["megatron/__init__.py"],
        "ModelLink": ["tools/checkpoint/convert_ckpt.py", "preprocess_data.py", "pretrain_gpt.py"],
    }
    pins = {}
    for name, paths in files.items():
        work, bare = f"/tmp/ms-{name}", f"/srv/mirrors/{name}.git"
        steps = ["set -e", f"rm -rf {work} {bare}", f"git init -q -b main {work}", f"cd {work}"]
        steps += [f"mkdir -p $(dirname {path}) && touch {path}" for path in paths]
        steps += ["echo v1 > VERSION", "git add -A", f"{COMMIT} -m v1", "git tag v1", "git rev-parse HEAD"]
        steps += ["echo v2 > VERSION", f"{COMMIT} -am v2", f"git clone -q --bare {work} {bare}"]
        code, output = node_exec(node, "; ".join(steps))
        assert code == 0, output
        pins[name] = output.splitlines()[-1]
    return pins


def mindspeed_vars(pins: dict[str, str], **changes) -> dict:
    version = "import transformers; print(transformers.__version__)"
    _, installed = node_exec(NODES[0], f"docker exec {CONTAINER} python3 -c {shlex.quote(version)}")
    # A tag, and commits: the pins the inventory must give (the manual names none).
    versions = {"MindSpeed": "v1", "Megatron-LM": pins["Megatron-LM"], "ModelLink": pins["ModelLink"]}
    code = [
        {
            "name": name,
            "git": f"file:///srv/mirrors/{name}.git",
            "version": pin,
            "dest": f"{ASCENDSPEED}/{name}",
        }
        for name, pin in versions.items()
    ]
    return {
        "train_framework": "mindspeed",
        "train_name": MINDSPEED_RUN,
        "train_mindspeed_code": code,
        # install.sh's transformers pin, at the version the lab image has (no index to install another).
        "train_mindspeed_pip_requirements": [f"transformers=={installed}"],
        "train_pip_extra_args": ["--no-index"],
        "train_mindspeed_hf_model_path": "/workspace/models/tiny-qwen2",
        "train_mindspeed_data_input": "/workspace/data/lab/lab_sft.json",
        "train_npus_per_node": 4,
        "train_tp": 2,
        "train_pp": 2,
        "train_global_batch_size": 8,
        "train_seq_length": 128,
    } | changes


def test_mindspeed_prepared_up_to_the_launch(train_lab, reports):
    setup_node = run_playbook("node.yml", train_lab, limit=NODES[0], tags="git_lfs")
    assert setup_node.succeeded, setup_node.first_failure()
    pins = mindspeed_stand_ins(NODES[0])
    work = "/home/ma-user/ws"
    node_exec(NODES[0], f"rm -rf {work}/llm_train {work}/npufleet/{MINDSPEED_RUN}*")

    def refused(what: str, extravars: dict, expected: list[str], absent: str) -> None:
        """The run fails with each of ``expected`` in its message, and ``absent`` was not made."""
        result = train(train_lab, reports, limit=NODES[0], **extravars)
        assert not result.succeeded
        print(f"\nrefused ({what}): {result.first_failure()}")
        for words in expected:
            assert words in result.first_failure()
        assert node_exec(NODES[0], f"test -e {absent}")[0] != 0

    # The role's own repositories carry no version (the manual names none): refused until pinned.
    unpinned = {key: value for key, value in mindspeed_vars(pins).items() if key != "train_mindspeed_code"}
    refused("no pins", unpinned, [
        "Bad train_mindspeed_code: train_mindspeed_code[0] (MindSpeed) clones https://gitee.com/ascend/MindSpeed.git"
        " without version: pin the commit (or tag)",
        "The manual names no revision of MindSpeed, Megatron-LM or ModelLink",
    ], f"{work}/llm_train")  # fmt: skip

    # A version that names a branch moves: refused before anything is cloned.
    branch = mindspeed_vars(pins)
    branch["train_mindspeed_code"][1]["version"] = "main"
    refused("branch", branch, [
        "train_mindspeed_code[1] (Megatron-LM) version 'main' is a branch of file:///srv/mirrors/Megatron-LM.git"
        " (now at ",
        "which moves: pin it to a commit",
    ], f"{work}/llm_train")  # fmt: skip

    # TP 3 does not divide the tiny Qwen2's 4 heads: refused from its config.json, before converting.
    refused("TP", mindspeed_vars(pins, train_tp=3, train_pp=1, train_npus_per_node=3), [
        "the model's 4 attention heads (/workspace/models/tiny-qwen2/config.json: num_attention_heads) do"
        " not divide by TP=3 (train_tp, or the manual's plan): set train_tp to a divisor of 4 (1, 2, 4);"
        " nothing was converted",
    ], f"{work}/npufleet/{MINDSPEED_RUN}-convert.sh")  # fmt: skip

    # TP 2 x PP 2: the code cloned at its pins, the scripts rendered, none run.
    said = []

    def listen(event):
        data = event.get("event_data", {})
        if (
            event.get("event") == "runner_on_ok"
            and data.get("task") == "Say that the scripts were only rendered"
        ):
            said.extend(data["res"]["msg"])

    extravars = {"train_report_dir": str(reports)} | mindspeed_vars(pins)
    ok = run_playbook("train.yml", train_lab, limit=NODES[0], on_event=listen, extravars=extravars)
    assert ok.succeeded, ok.first_failure()
    print("\n".join(str(line) for line in said))
    assert said[0].startswith("train_mindspeed_render_only: the scripts below were rendered on")
    assert said[2] == "conversion: would run (TP 2, PP 2)"
    for name in ("MindSpeed", "Megatron-LM", "ModelLink"):
        assert node_exec(NODES[0], f"cat {work}/{ASCENDSPEED}/{name}/VERSION") == (0, "v1"), name
    scripts = {}
    for name in MINDSPEED_SCRIPTS:
        code, text = node_exec(NODES[0], f"cat {work}/npufleet/{name}")
        assert code == 0, text
        scripts[name] = text
        print(f"\n===== {work}/npufleet/{name} =====\n{text}")
    convert = scripts[f"{MINDSPEED_RUN}-convert.sh"]
    assert "--target-tensor-parallel-size 2 \\\n  --target-pipeline-parallel-size 2" in convert
    assert '"tp": 2, "pp": 2, "source": "/workspace/models/tiny-qwen2"' in convert
    preprocess = scripts[f"{MINDSPEED_RUN}-preprocess.sh"]
    assert "--output-prefix /workspace/data/mindspeed/ms-tiny" in preprocess
    assert "--tokenizer-name-or-path /workspace/models/tiny-qwen2 \\\n" in preprocess
    launch = scripts[f"{MINDSPEED_RUN}.sh"]
    # The shape of the tiny Qwen2's config.json (4 heads, 2 kv heads, 2 layers, vocab 326, 512 positions),
    # the plan's TP and PP, and what the conversion and the preprocessing write.
    wanted = [
        "--num-layers 2", "--hidden-size 128", "--num-attention-heads 4", "--group-query-attention",
        "--num-query-groups 2", "--ffn-hidden-size 256", "--padded-vocab-size 326",
        "--max-position-embeddings 512", "--tensor-model-parallel-size 2", "--pipeline-model-parallel-size 2",
        "--data-path /workspace/data/mindspeed/ms-tiny_text_document",
        "--load /workspace/model_weights/ms-tiny", "--tokenizer-name-or-path /workspace/models/tiny-qwen2",
    ]  # fmt: skip
    for line in wanted:
        assert f"  {line} \\\n" in launch, line
    # Nothing ran: no converted weights, no preprocessed data, no rank, no report.
    assert node_exec(NODES[0], f"ls {work}/model_weights/{MINDSPEED_RUN} {work}/data/mindspeed")[0] != 0
    assert not (reports / MINDSPEED_RUN).exists()

    again = run_playbook("train.yml", train_lab, limit=NODES[0], extravars=extravars)
    assert again.succeeded and again.hosts[NODES[0]].changed == 0, again.hosts[NODES[0]].changed_tasks
