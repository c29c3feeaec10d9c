"""A two-node lab shared by the lab tests; it is removed, and checked to be gone, at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from npufleet.lab import faults, lifecycle

# Another name lets a second checkout run its lab tests beside this one on the same engine.
LAB = os.environ.get("NPUFLEET_TEST_LAB", "npufleet-test")


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
    lifecycle.down(LAB, inventory)


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
