"""The image and npu_container roles on the shared two-node lab, against the lab's own registry."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
import yaml

from npufleet.api import run_playbook
from npufleet.lab import faults, registry
from tests.lab import node_state
from tests.lab.conftest import LAB, node_exec

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
NODES = [f"{LAB}-node1", f"{LAB}-node2"]
BIN = Path(sys.executable).parent


def lab_vars(inventory: Path) -> dict:
    return yaml.safe_load(inventory.read_text())["all"]["vars"]


def workload_ref(inventory: Path) -> str:
    found = lab_vars(inventory)
    return f"{found['image_name']}:{found['image_tag']}"


def forget_images(*names: str) -> None:
    """Remove the workload image (and any container using it) from the nodes' engines."""
    for name in names or NODES:
        node_exec(name, "docker rm -f npufleet-workload second-workload >/dev/null 2>&1; true")
        node_exec(name, "docker images -q 'npufleet*/*' | sort -u | xargs -r docker rmi -f >/dev/null")
        node_exec(name, "docker images -q '*/npufleet/*' | sort -u | xargs -r docker rmi -f >/dev/null")
        node_exec(name, "ctr -n k8s.io images ls -q | xargs -r ctr -n k8s.io images rm >/dev/null")


def image_id(name: str, ref: str) -> str:
    code, output = node_exec(name, f"docker image inspect --format '{{{{.Id}}}}' {ref}")
    return output if code == 0 else ""


def registry_container():
    return docker.from_env().containers.get(registry.registry_name(LAB))


def test_pull_from_the_lab_registry_then_nothing_to_do(lab_inventory):
    forget_images()
    first = run_playbook("image.yml", lab_inventory)
    assert first.succeeded, first.first_failure()
    assert all(first.hosts[name].changed == 1 for name in NODES)
    ref = workload_ref(lab_inventory)
    ids = {image_id(name, ref) for name in NODES}
    assert len(ids) == 1 and "" not in ids
    # Pulled by digest, so the digest is recorded too.
    digest = lab_vars(lab_inventory)["image_digest"]
    assert digest in node_exec(NODES[0], f"docker image inspect --format '{{{{.RepoDigests}}}}' {ref}")[1]
    again = run_playbook("image.yml", lab_inventory)
    assert again.succeeded and all(again.hosts[name].changed == 0 for name in NODES)


def _vault_vars(tmp_path: Path, values: dict) -> tuple[Path, Path]:
    """A vars file encrypted with Ansible Vault, as users keep registry passwords."""
    secret = tmp_path / "vault-password"
    secret.write_text(secrets.token_hex(16))
    vars_file = tmp_path / "registry.yml"
    vars_file.write_text(yaml.safe_dump(values))
    subprocess.run(
        [BIN / "ansible-vault", "encrypt", "--vault-password-file", str(secret), str(vars_file)],
        check=True,
        capture_output=True,
    )
    return vars_file, secret


def _play_verbose(inventory: Path, tmp_path: Path, vars_file: Path, secret: Path, *extra: str):
    log = tmp_path / "ansible.log"
    result = subprocess.run(
        [
            BIN / "ansible-playbook",
            "-vvv",
            "-i",
            str(inventory),
            "-e",
            f"@{vars_file}",
            "--vault-password-file",
            str(secret),
            *extra,
            str(ROOT / "playbooks/image.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=os.environ | {"ANSIBLE_LOG_PATH": str(log), "ANSIBLE_NOCOLOR": "1"},
    )
    return result, log.read_text(errors="replace") if log.exists() else ""


def _nodes_files_with(text: str) -> list[str]:
    """Files on the nodes that hold ``text``: client configs, temp files, logs."""
    found = []
    for name in NODES:
        _, output = node_exec(
            name,
            f"grep -rlsF -- '{text}' /root /tmp /var/tmp /etc/docker /var/log /run/containerd 2>/dev/null; "
            f"journalctl -q --no-pager 2>/dev/null | grep -cF -- '{text}'",
        )
        lines = output.splitlines()
        found += [f"{name}:{line}" for line in lines[:-1]]
        if lines and lines[-1] != "0":
            found.append(f"{name}:journal")
    return found


def _login_play(inventory: Path, tmp_path: Path, user: str, password: str, *extra: str, **image_vars):
    """image.yml at -vvv from the authenticated registry endpoint, the login in an Ansible Vault file."""
    found = lab_vars(inventory)
    vars_file, secret = _vault_vars(
        tmp_path,
        {
            "image_name": f"{found['npufleet_lab_registry_auth']}/{registry.WORKLOAD_REPOSITORY}",
            "image_digest": "",
            "image_registry_username": user,
            "image_registry_password": password,
        }
        | image_vars,
    )
    return _play_verbose(inventory, tmp_path, vars_file, secret, *extra)


def _assert_hidden(password: str, result: subprocess.CompletedProcess, log: str) -> None:
    for where, text in (("stdout", result.stdout), ("stderr", result.stderr), ("log", log)):
        assert password not in text, f"the password appears in the play's {where}"
    assert _nodes_files_with(password) == []


def test_login_pull_never_shows_the_password(lab_inventory, tmp_path):
    password = "pw-" + secrets.token_hex(12)
    registry.set_credentials(registry_container(), "trainer", password)
    found = lab_vars(lab_inventory)
    forget_images()
    result, log = _login_play(lab_inventory, tmp_path, "trainer", password)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "changed=1" in result.stdout
    _assert_hidden(password, result, log)
    # Docker kept no login: ~/.docker/config.json has no entry for the registry.
    config = node_exec(NODES[0], "cat /root/.docker/config.json 2>/dev/null")[1]
    assert found["npufleet_lab_registry_auth"] not in config

    # A wrong password: its own message, and still not shown.
    wrong = "wrong-" + secrets.token_hex(12)
    forget_images(NODES[0])
    result, log = _login_play(lab_inventory, tmp_path, "trainer", wrong, "--limit", NODES[0])
    assert result.returncode == 2
    assert "the registry refused the login (credentials)" in result.stdout
    _assert_hidden(wrong, result, log)


def _fails_with(inventory: Path, extravars: dict, expected: str) -> str:
    result = run_playbook("image.yml", inventory, extravars=extravars, limit=NODES[0])
    assert not result.succeeded
    message = result.first_failure()
    assert expected in message, message
    return message


def test_each_pull_failure_has_its_own_message(lab_inventory):
    found = lab_vars(lab_inventory)
    forget_images(NODES[0])
    repository = f"{found['npufleet_lab_registry']}/{registry.WORKLOAD_REPOSITORY}"
    _fails_with(
        lab_inventory,
        {"image_name": repository, "image_tag": "no-such-tag", "image_digest": ""},
        "the registry has no such image (unknown_image)",
    )
    # A port of the lab registry where nothing listens: refused, retried with backoff, then reported.
    message = _fails_with(
        lab_inventory,
        {
            "image_name": f"{registry.registry_name(LAB)}:5999/npufleet/workload",
            "image_digest": "",
            "image_pull_retries": 2,
            "image_pull_backoff": 0.2,
        },
        "the registry cannot be reached (unreachable)",
    )
    assert "connection refused" in message
    _fails_with(
        lab_inventory,
        {"image_name": repository, "image_min_free_gib": 100000},
        "too little disk (disk)",
    )
    _fails_with(
        lab_inventory,
        {"image_name": "Not A Name", "image_digest": ""},
        "is not a repository name",
    )
    _fails_with(
        lab_inventory,
        {"image_source": "archive"},
        "image_source archive needs image_archive_path",
    )
    assert image_id(NODES[0], workload_ref(lab_inventory)) == ""


def test_a_registry_that_stops_answering_fails_the_pull_within_the_stall_timeout(lab_inventory):
    """The registry frozen (paused: its connections stay open, nothing comes back): the attempt is given
    up after image_pull_stall_timeout seconds without progress, not after the engine's own minutes."""
    forget_images(NODES[0])
    frozen = registry_container()
    frozen.pause()
    try:
        started = time.monotonic()
        message = _fails_with(
            lab_inventory, {"image_pull_stall_timeout": 8, "image_pull_retries": 0},
            "the registry cannot be reached (unreachable)",
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        frozen.unpause()
    print(f"frozen registry: failed after {took:.1f} s: {message}")
    assert "the engine sent nothing for 8 s" in message
    assert took < 40
    # The connection closed, the engine dropped the pull: a new one works at once.
    again = run_playbook("image.yml", lab_inventory, limit=NODES[0])
    assert again.succeeded, again.first_failure()


def test_offline_load_from_a_tarball_on_the_controller(lab_inventory, tmp_path):
    client = docker.from_env()
    local = registry.build_workload(client)
    archive = tmp_path / "workload.tar"
    with archive.open("wb") as out:
        for chunk in client.images.get(local).save(named=local):
            out.write(chunk)
    forget_images()
    name, _, tag = local.partition(":")
    extravars = {
        "image_source": "archive",
        "image_name": name,
        "image_tag": tag,
        "image_digest": "",
        "image_archive_src": str(archive),
        "image_archive_path": "/var/tmp/workload.tar",
    }
    result = run_playbook("image.yml", lab_inventory, extravars=extravars)
    assert result.succeeded, result.first_failure()
    assert {image_id(node, local) for node in NODES} == {client.images.get(local).id}
    again = run_playbook("image.yml", lab_inventory, extravars=extravars)
    assert again.succeeded and all(again.hosts[node].changed == 0 for node in NODES)


def test_containerd_pull_into_k8s_io_with_and_without_login(lab_inventory, tmp_path):
    found = lab_vars(lab_inventory)
    forget_images()
    ref = workload_ref(lab_inventory)
    result = run_playbook(
        "image.yml", lab_inventory, extravars={"image_engine": "containerd"}, limit=NODES[0]
    )
    assert result.succeeded, result.first_failure()
    listing = node_exec(NODES[0], "ctr -n k8s.io images ls -q")[1].splitlines()
    assert ref in listing
    # Not in Docker's store, nor in containerd's default namespace: the kubelet would not see those.
    assert image_id(NODES[0], ref) == ""
    assert ref not in node_exec(NODES[0], "ctr -n default images ls -q")[1].splitlines()

    password = "ctr-" + secrets.token_hex(12)
    registry.set_credentials(registry_container(), "k8s", password)
    auth_name = f"{found['npufleet_lab_registry_auth']}/{registry.WORKLOAD_REPOSITORY}"
    vars_file, secret = _vault_vars(
        tmp_path,
        {
            "image_engine": "containerd",
            "image_name": auth_name,
            "image_registry_username": "k8s",
            "image_registry_password": password,
        },
    )
    result, log = _play_verbose(lab_inventory, tmp_path, vars_file, secret, "--limit", NODES[1])
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{auth_name}:{found['image_tag']}" in node_exec(NODES[1], "ctr -n k8s.io images ls -q")[1]
    assert password not in result.stdout + result.stderr + log
    assert _nodes_files_with(password) == []


@pytest.mark.parametrize("method", ["relay", "stream"])
def test_fanout_serves_one_copy_from_the_registry(lab_inventory, method):
    fanout = {"image_fanout": True, "image_fanout_method": method}
    forget_images()
    since = float(node_exec(registry.registry_name(LAB), "date +%s.%N")[1])
    result = run_playbook("image.yml", lab_inventory, extravars=fanout)
    assert result.succeeded, result.first_failure()
    ref = workload_ref(lab_inventory)
    ids = {image_id(node, ref) for node in NODES}
    assert len(ids) == 1 and "" not in ids
    time.sleep(1)  # the journal may lag the last response by a moment
    log = registry.access_log(registry_container(), since)
    served = registry.bytes_served(log)
    size = int(node_exec(NODES[0], f"docker image inspect --format '{{{{.Size}}}}' {ref}")[1])
    # One compressed copy of the layers: far less than the unpacked size, and far from two copies.
    assert 0 < served["blob_bytes"] < size
    single = served["blob_bytes"]
    # Each blob was fetched from one node only: the seed.
    blob_gets = [line for line in log.splitlines() if '"GET /v2/' in line and "/blobs/" in line]
    assert len({line.split()[0] for line in blob_gets}) == 1
    if method == "relay":
        # Every node pulled through its loopback, so each keeps the digest under the relay's name.
        digest = lab_vars(lab_inventory)["image_digest"]
        for node in NODES:
            digests = node_exec(node, f"docker image inspect --format '{{{{json .RepoDigests}}}}' {ref}")[1]
            assert f'"127.0.0.1:8765/{registry.WORKLOAD_REPOSITORY}@{digest}"' in digests
    # The seed's server is gone, with its folder (the relay's blobs and login file with it).
    units = "'npufleet-image-fanout-*' 'npufleet-image-relay-*'"
    assert node_exec(NODES[0], f"systemctl list-units --all --no-legend {units}")[1] == ""
    assert node_exec(NODES[0], "ls /var/tmp/npufleet-image-fanout 2>&1")[0] != 0

    since = float(node_exec(registry.registry_name(LAB), "date +%s.%N")[1])
    again = run_playbook("image.yml", lab_inventory, extravars=fanout)
    assert again.succeeded and all(again.hosts[node].changed == 0 for node in NODES)
    time.sleep(1)
    assert registry.bytes_served(registry.access_log(registry_container(), since))["blob_bytes"] == 0

    # Each node pulling itself costs the registry one copy per node.
    forget_images()
    since = float(node_exec(registry.registry_name(LAB), "date +%s.%N")[1])
    assert run_playbook("image.yml", lab_inventory).succeeded
    time.sleep(1)
    every = registry.bytes_served(registry.access_log(registry_container(), since))["blob_bytes"]
    assert every == pytest.approx(2 * single, rel=0.02)


def test_fanout_relay_logs_in_without_showing_the_password(lab_inventory, tmp_path):
    password = "relay-" + secrets.token_hex(12)
    registry.set_credentials(registry_container(), "fleet", password)
    found = lab_vars(lab_inventory)
    forget_images()
    result, log = _login_play(lab_inventory, tmp_path, "fleet", password, image_fanout=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "changed=" in result.stdout
    # Not in the play's output or log, nor in any file or journal line on the nodes; no login file left.
    _assert_hidden(password, result, log)
    ref = f"{found['npufleet_lab_registry_auth']}/{registry.WORKLOAD_REPOSITORY}:{found['image_tag']}"
    assert all(image_id(node, ref) for node in NODES)


def test_fanout_into_containerd(lab_inventory):
    forget_images()
    since = float(node_exec(registry.registry_name(LAB), "date +%s.%N")[1])
    containerd = {"image_fanout": True, "image_engine": "containerd"}
    result = run_playbook("image.yml", lab_inventory, extravars=containerd)
    assert result.succeeded, result.first_failure()
    ref = workload_ref(lab_inventory)
    assert all(ref in node_exec(node, "ctr -n k8s.io images ls -q")[1].splitlines() for node in NODES)
    time.sleep(1)
    served = registry.bytes_served(registry.access_log(registry_container(), since))
    assert served["blob_requests"] > 0
    # Each blob was fetched by the seed alone.
    log = registry.access_log(registry_container(), since)
    blob_gets = [line for line in log.splitlines() if '"GET /v2/' in line and "/blobs/" in line]
    assert len({line.split()[0] for line in blob_gets}) == 1
    again = run_playbook("image.yml", lab_inventory, extravars=containerd)
    assert again.succeeded and all(again.hosts[node].changed == 0 for node in NODES)


def container_state(name: str, container: str = "npufleet-workload") -> dict | None:
    code, output = node_exec(name, f"docker inspect {container}")
    return json.loads(output)[0] if code == 0 else None


@pytest.fixture
def image_on_nodes(lab_inventory):
    result = run_playbook("image.yml", lab_inventory)
    assert result.succeeded, result.first_failure()
    yield lab_inventory
    for name in NODES:
        node_exec(name, "docker rm -f npufleet-workload second-workload >/dev/null 2>&1; true")


def test_npu_container_maps_devices_and_is_idempotent(image_on_nodes):
    inventory = image_on_nodes
    node_exec(NODES[0], "rm -rf /home/ma-user/ws")
    result = run_playbook("container.yml", inventory)
    assert result.succeeded, result.first_failure()
    state = container_state(NODES[0])
    assert state["State"]["Running"]
    host = state["HostConfig"]
    assert host["NetworkMode"] == "host" and host["ShmSize"] == 200 * 2**30
    devices = sorted(d["PathOnHost"] for d in host["Devices"])
    assert devices == sorted([f"/dev/davinci{i}" for i in range(8)] + nodes_manager_devices())
    mounts = {m["Destination"]: m["Source"] for m in state["Mounts"]}
    for path in (
        "/usr/local/Ascend/driver",
        "/usr/local/dcmi",
        "/usr/local/sbin/npu-smi",
        "/etc/ascend_install.info",
    ):
        assert mounts[path] == path
    assert mounts["/usr/slog"] == "/var/log/npu"
    assert mounts["/workspace"] == "/home/ma-user/ws"
    # Checked from inside: npu-smi sees 8 NPUs, the work dir the role made belongs to ma-user (the
    # folder above it, which the node had, stays root's).
    code, output = node_exec(NODES[0], "docker exec npufleet-workload npu-smi info -l")
    assert code == 0 and "Total Count                    : 8" in output
    owner = node_exec(NODES[0], "docker exec npufleet-workload stat -c '%u:%g %U' /workspace")[1]
    assert owner == "1000:1000 ma-user"
    assert node_exec(NODES[0], "stat -c '%u:%g' /home/ma-user") == (0, "0:0")

    again = run_playbook("container.yml", inventory)
    assert again.succeeded and all(again.hosts[name].changed == 0 for name in NODES)
    assert container_state(NODES[0])["Id"] == state["Id"]

    # Other NPUs and a smaller shm: the container is recreated, sees exactly those NPUs, and the
    # small shm is allowed with a warning.
    events: list[dict] = []
    subset = run_playbook(
        "container.yml",
        inventory,
        extravars={"npu_container_npus": [2, 5], "npu_container_shm_size": "1g"},
        limit=NODES[0],
        on_event=events.append,
    )
    assert subset.succeeded, subset.first_failure()
    assert container_state(NODES[0])["Id"] != state["Id"]
    assert container_state(NODES[0])["HostConfig"]["ShmSize"] == 2**30
    assert any(
        "WARNING: npu_container_shm_size 1g is below 200g" in event.get("stdout", "") for event in events
    )
    listing = node_exec(NODES[0], "docker exec npufleet-workload npu-smi info")[1]
    assert "| 2     910B3" in listing and "| 5     910B3" in listing and "| 0     910B3" not in listing


def owners(name: str, *paths: str) -> list[str]:
    return node_exec(name, f"stat -c '%u:%g %a' {' '.join(paths)}")[1].splitlines()


def test_npu_container_gives_away_only_the_work_dir_it_made_or_is_named(image_on_nodes):
    """A missing work dir is made ma-user's (the folders above it root's); an existing one keeps its
    owner, with a WARNING, until npu_container_chown_work_dir names it."""
    node = NODES[0]
    node_exec(node, "rm -rf /data/npufleet-made /data/npufleet-kept")
    made = {"npu_container_host_work_dir": "/data/npufleet-made/ws"}
    result = run_playbook("container.yml", image_on_nodes, extravars=made, limit=node)
    assert result.succeeded, result.first_failure()
    assert owners(node, "/data/npufleet-made", "/data/npufleet-made/ws") == ["0:0 755", "1000:1000 755"]

    kept_dir = "/data/npufleet-kept"
    node_exec(node, f"mkdir -p {kept_dir}/code && touch {kept_dir}/code/train.py && chmod 700 {kept_dir}")
    kept = {"npu_container_host_work_dir": kept_dir}
    events: list[dict] = []
    result = run_playbook("container.yml", image_on_nodes, extravars=kept, limit=node, on_event=events.append)
    assert result.succeeded, result.first_failure()
    assert owners(node, kept_dir, f"{kept_dir}/code/train.py") == ["0:0 700", "0:0 644"]
    warning = (
        f"WARNING: npu_container_host_work_dir {kept_dir} was there already, so it was left as it is, though"
        f" {kept_dir} is not 1000:1000's"
    )
    said = [str(event.get("event_data", {}).get("res", {}).get("msg", "")) for event in events]
    hint = f"set npu_container_chown_work_dir: {kept_dir}"
    assert any(warning in msg and msg.endswith(hint) for msg in said)

    named = kept | {"npu_container_chown_work_dir": f"{kept_dir}/"}
    result = run_playbook("container.yml", image_on_nodes, extravars=named, limit=node)
    assert result.succeeded, result.first_failure()
    assert owners(node, kept_dir, f"{kept_dir}/code/train.py") == ["1000:1000 700", "1000:1000 644"]
    assert "Give the work dir and everything in it" in " ".join(result.hosts[node].changed_tasks)
    again = run_playbook("container.yml", image_on_nodes, extravars=named, limit=node)
    assert again.succeeded and again.hosts[node].changed == 0
    node_exec(node, "docker rm -f npufleet-workload; rm -rf /data/npufleet-made /data/npufleet-kept")


def test_host_paths_that_would_hand_the_system_away_are_refused_in_check_mode(image_on_nodes):
    """The bad-input suite's host paths (tests/playbooks/bad_input/host_paths.yml: /, /usr/local, /etc, ws,
    '..', symlinks into /usr, a file, an extra volume from /etc, and the train, serve and teardown work
    dirs), here in check mode, which once let / through: each refused with its message, and the node's
    state read after each case the same. The suite runs them for real (test_bad_input_suite.py)."""
    playbook = str(ROOT / "tests/playbooks/bad_input/host_paths.yml")
    result = run_playbook(playbook, image_on_nodes, limit=NODES[0], check=True,
                          extravars={"bad_input_watch": node_state.STATE_SCRIPT})  # fmt: skip
    assert result.succeeded, result.first_failure()


def nodes_manager_devices() -> list[str]:
    return ["/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]


def test_npu_smi_is_found_where_the_node_has_it(image_on_nodes):
    """The manual's servers have npu-smi in /usr/local/sbin (so do the lab's nodes); others have it in
    /usr/local/bin. Either is mounted where the manual and the images expect it; none is refused."""
    moved = "mv /usr/local/sbin/npu-smi /usr/local/bin/npu-smi"
    restore = "mv /usr/local/bin/npu-smi /usr/local/sbin/npu-smi"
    second = {"npu_container_name": "second-workload", "npu_container_npus": [6]}
    node_exec(NODES[1], moved)
    try:
        result = run_playbook("container.yml", image_on_nodes, extravars=second, limit=NODES[1])
        assert result.succeeded, result.first_failure()
        started = container_state(NODES[1], "second-workload")
        mounts = {m["Destination"]: m["Source"] for m in started["Mounts"]}
        assert mounts["/usr/local/sbin/npu-smi"] == "/usr/local/bin/npu-smi"
        node_exec(NODES[1], "docker rm -f second-workload")
        node_exec(NODES[1], "mv /usr/local/bin/npu-smi /tmp/npu-smi")
        refused = run_playbook("container.yml", image_on_nodes, extravars=second, limit=NODES[1])
        assert not refused.succeeded
        assert (
            "npu-smi is not on the node at /usr/local/sbin/npu-smi or /usr/local/bin/npu-smi"
            in refused.first_failure()
        )
        assert container_state(NODES[1], "second-workload") is None
    finally:
        node_exec(NODES[1], f"{restore} 2>/dev/null || mv /tmp/npu-smi /usr/local/sbin/npu-smi")
        node_exec(NODES[1], "docker rm -f second-workload >/dev/null 2>&1; true")
    assert node_exec(NODES[1], "test -e /usr/local/sbin/npu-smi")[0] == 0


def test_npu_container_refuses_a_device_another_container_holds(image_on_nodes, clean_faults):
    faults.fault(LAB, NODES[1], "held", npu=3)
    result = run_playbook("container.yml", image_on_nodes, limit=NODES[1])
    assert not result.succeeded
    assert "/dev/davinci3 held by container npufleet-lab-holder-davinci3" in result.first_failure()
    assert "one NPU must never be bound to two containers" in result.first_failure()
    assert container_state(NODES[1]) is None
    # Asking for NPUs the holder does not use works.
    other = run_playbook(
        "container.yml", image_on_nodes, extravars={"npu_container_npus": [0, 1]}, limit=NODES[1]
    )
    assert other.succeeded, other.first_failure()
