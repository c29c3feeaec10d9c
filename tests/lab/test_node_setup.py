"""site.yml (preflight, then node setup) on fresh lab nodes without Docker: check mode first,
then a real run from scratch, a no-op re-run, and a reboot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest

from npufleet.api import run_playbook
from npufleet.lab import lifecycle
from tests.lab.conftest import node_exec

pytestmark = pytest.mark.lab
LAB = "npufleet-test-setup"
PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("setup") / "hosts.yml"
    lifecycle.up(LAB, nodes=2, inventory=inventory, flavour="bare")
    yield inventory
    lifecycle.down(LAB, inventory)


def fingerprint(name: str) -> str:
    """What node setup would change, read without changing it."""
    return node_exec(
        name,
        "command -v docker; ls /etc/docker /etc/sysctl.d /usr/local/sbin 2>&1;"
        " cat /proc/sys/net/ipv4/ip_forward; iptables -S 2>&1 | sort;"
        " command -v git-lfs; cat /etc/gitconfig 2>&1",
    )[1]


def test_check_diff_on_fresh_nodes_lists_changes_and_changes_nothing(fresh_lab):
    names = [f"{LAB}-node1", f"{LAB}-node2"]
    before = {name: fingerprint(name) for name in names}
    events: list[dict] = []
    result = run_playbook("site.yml", fresh_lab, check=True, diff=True, on_event=events.append)
    assert result.succeeded, result.first_failure()
    assert all(host.changed >= 5 for host in result.hosts.values())
    for host in result.hosts.values():
        assert {
            "Install the Docker packages",
            "Write the daemon configuration, keeping keys set by others",
            "Turn on IPv4 forwarding, persistent and applied",
            "Keep containers off the metadata endpoint now",
            "Install the packages",
        } <= set(host.changed_tasks)
    diffs = [e for e in events if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("diff")]
    assert any('"live-restore": true' in str(e["event_data"]["res"]["diff"]) for e in diffs)
    assert {name: fingerprint(name) for name in names} == before


def test_site_converges_from_scratch(fresh_lab):
    first = run_playbook("site.yml", fresh_lab)
    assert first.succeeded, first.first_failure()
    assert all(host.changed > 0 for host in first.hosts.values())


def test_the_installed_collection_runs_site_again_and_changes_nothing(fresh_lab, tmp_path):
    """The second run of site.yml on the converged nodes, from the tarball installed offline into an
    empty collections path in another folder (no ansible.cfg there): the same content as the checkout,
    so nothing changes, which is the idempotence check of the converge above. It runs right after it,
    before the tests below change the nodes on purpose."""
    bin_dir = Path(sys.executable).parent
    root = Path(__file__).resolve().parents[2]
    galaxy = str(bin_dir / "ansible-galaxy")
    build = subprocess.run([galaxy, "collection", "build", "--output-path", str(tmp_path)],
                           cwd=root, capture_output=True, text=True, check=False)  # fmt: skip
    assert build.returncode == 0, build.stderr
    (tarball,) = tmp_path.glob("npufleet-ascend-*.tar.gz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_COLLECTIONS_PATH": str(elsewhere / "collections"), "ANSIBLE_HOST_KEY_CHECKING": "False"}
    install = subprocess.run([galaxy, "collection", "install", "--offline", "-p",
                              str(elsewhere / "collections"), str(tarball)],
                             cwd=elsewhere, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert install.returncode == 0, install.stderr
    # Reports are written beside the playbooks by default (npufleet_report_dir), which for an installed
    # collection is inside it: point them at the checkout's, where the first runs wrote theirs.
    run = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(fresh_lab), "npufleet.ascend.site",
                          "-e", f"npufleet_report_dir={root / 'reports'}"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    recap = run.stdout[run.stdout.rindex("PLAY RECAP") :]
    for name in (f"{LAB}-node1", f"{LAB}-node2"):
        assert re.search(rf"{name}\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", recap), recap


def test_a_rerun_through_mitogen_changes_nothing(fresh_lab):
    """site.yml again with --mitogen's strategy: it must be Mitogen that runs on the node (its
    interpreter shows in the node's process list as "mitogen:..."), and it must change nothing."""
    seen = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not seen.is_set():
            if "(mitogen:" in node_exec(f"{LAB}-node1", "ps -eo args")[1]:
                seen.set()
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run_playbook("site.yml", fresh_lab, mitogen=True)
    finally:
        done.set()
        watcher.join()
    assert result.succeeded, result.first_failure()
    assert {name: host.changed for name, host in result.hosts.items()} == {
        f"{LAB}-node1": 0,
        f"{LAB}-node2": 0,
    }
    assert seen.is_set(), (
        "no mitogen interpreter ran on node 1: the strategy did not take over the connection"
    )


def test_settings_survive_a_reboot(fresh_lab):
    name = f"{LAB}-node2"
    docker.from_env().containers.get(name).restart()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if node_exec(name, "systemctl is-active npufleet-metadata-guard")[0] == 0:
            break
        time.sleep(1)
    assert node_exec(name, "iptables -C DOCKER-USER -d 169.254.169.254/32 -j DROP")[0] == 0
    assert node_exec(name, "cat /proc/sys/net/ipv4/ip_forward")[1] == "1"
    assert node_exec(name, "docker info --format '{{.LiveRestoreEnabled}}'")[1] == "true"


def test_a_daemon_setting_docker_cannot_start_with_is_undone(fresh_lab):
    """A data root Docker cannot create: the restart fails, the previous daemon.json comes back, Docker
    runs again, the play names dockerd's own error, and a corrected re-run works at once (systemd's
    start limit was cleared)."""
    name = f"{LAB}-node1"
    _, before = node_exec(name, "cat /etc/docker/daemon.json")
    bad = run_playbook("node.yml", fresh_lab, limit=name, tags="docker",
                       extravars={"docker_data_root": "/proc/npufleet-docker"})  # fmt: skip
    assert not bad.succeeded
    message = bad.first_failure()
    print(message)
    assert "the engine did not start with the new /etc/docker/daemon.json" in message
    assert "It said: mkdir /proc/npufleet-docker: no such file or directory" in message
    assert "was put back and Docker runs with it again" in message
    assert node_exec(name, "cat /etc/docker/daemon.json")[1] == before
    assert node_exec(name, "docker info --format '{{.DockerRootDir}}'")[1] == "/var/lib/docker"
    again = run_playbook("node.yml", fresh_lab, limit=name, tags="docker")
    assert again.succeeded and again.hosts[name].changed == 0, again.first_failure()


def test_a_daemon_key_the_role_no_longer_sets_is_removed(fresh_lab):
    name = f"{LAB}-node1"
    with_shm = run_playbook("node.yml", fresh_lab, limit=name, tags="docker",
                            extravars={"docker_default_shm_size": "256m"})  # fmt: skip
    assert with_shm.succeeded, with_shm.first_failure()
    assert '"default-shm-size": "256m"' in node_exec(name, "cat /etc/docker/daemon.json")[1]
    without = run_playbook("node.yml", fresh_lab, limit=name, tags="docker")
    assert without.succeeded, without.first_failure()
    assert "default-shm-size" not in node_exec(name, "cat /etc/docker/daemon.json")[1]


def test_platform_choices_for_systems_without_a_lab_image(fresh_lab):
    result = run_playbook(str(PLAYBOOKS / "platform_choices.yml"), fresh_lab, limit=f"{LAB}-node1")
    assert result.succeeded, result.first_failure()
