"""A two-node lab shared by the lab tests; it is removed, and checked to be gone, at the end."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import yaml

from npufleet.api import run_playbook
from npufleet.lab import faults, lifecycle

# Another name lets a second checkout run its lab tests beside this one on the same engine.
LAB = os.environ.get("NPUFLEET_TEST_LAB", "npufleet-test")
# The training lab, shared by the training and the security tests (make test runs them together).
TRAIN_LAB = f"{LAB}-train"
TRAIN_NODES = [f"{TRAIN_LAB}-node1", f"{TRAIN_LAB}-node2"]


def engine_answers() -> bool:
    try:
        docker.from_env().ping()
    except docker.errors.DockerException:
        return False
    return True


def pytest_collection_modifyitems(items):
    if engine_answers() and shutil.which("debootstrap"):
        return
    # 'make test' starts the engine first, so this only happens when pytest is run by hand.
    skip = pytest.mark.skip(reason="needs a Docker engine and debootstrap: run 'make setup' first")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_inventory(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("lab") / "hosts.yml"
    # Docker comes with these nodes: the 'held' fault starts a container inside one.
    lifecycle.up(LAB, nodes=2, npus=8, chip="910B3", inventory=inventory, flavour="full")
    yield inventory
    # NPUFLEET_KEEP_LAB=1 keeps it for the next run while working on the tests.
    if not os.environ.get("NPUFLEET_KEEP_LAB"):
        lifecycle.down(LAB, inventory)


@pytest.fixture(scope="session")
def train_lab(tmp_path_factory):
    """Two full nodes with the training workload, set up as site.yml does before it trains: node setup
    (the metadata guard among it), the image and the NPU containers."""
    inventory = tmp_path_factory.mktemp("train-lab") / "hosts.yml"
    lifecycle.up(
        TRAIN_LAB,
        nodes=2,
        npus=8,
        inventory=inventory,
        flavour="full",
        with_registry=False,
        with_training=True,
    )
    try:
        for playbook in ("node.yml", "image.yml", "container.yml"):
            result = run_playbook(playbook, inventory)
            assert result.succeeded, f"{playbook}: {result.first_failure()}"
        yield inventory
    finally:
        # NPUFLEET_KEEP_LAB=1 keeps it for the next run while working on the tests.
        if not os.environ.get("NPUFLEET_KEEP_LAB"):
            lifecycle.down(TRAIN_LAB, inventory)


@pytest.fixture
def clean_faults(lab_inventory):
    """Clears every fault on every node after the test, whatever it did."""
    yield lab_inventory
    for node in lifecycle.status(LAB):
        faults.fault(LAB, node.name, "clear")


def node_exec(name: str, command: str) -> tuple[int, str]:
    """Run a shell command in a lab node (a container): its exit code and output."""
    result = docker.from_env().containers.get(name).exec_run(["sh", "-c", command])
    return result.exit_code, result.output.decode(errors="replace").strip()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed npufleet command, from the same virtualenv as this pytest."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "npufleet"), *args], capture_output=True, text=True, check=False
    )


def vaulted(inventory: Path, folder: Path, values: dict) -> tuple[Path, str]:
    """A copy of ``inventory`` whose group_vars/all/vault.yml holds ``values``, encrypted; and the
    vault's password."""
    (folder / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(inventory, folder / "hosts.yml")
    vault_file = folder / "group_vars" / "all" / "vault.yml"
    vault_file.write_text(yaml.safe_dump(values))
    password = secrets.token_hex(16)
    password_file = folder.parent / f"{folder.name}.pass"
    password_file.write_text(password)
    encrypt = [Path(sys.executable).parent / "ansible-vault", "encrypt",
               "--vault-password-file", str(password_file), str(vault_file)]  # fmt: skip
    subprocess.run(encrypt, check=True, capture_output=True)
    password_file.unlink()
    return folder / "hosts.yml", password
