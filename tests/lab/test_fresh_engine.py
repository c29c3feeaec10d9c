"""The lab's image builds on an engine unlike the developer's: a second dockerd started here, whose
default bridge is one it made itself (so its metadata has no Gateway, as on a new machine) or is
switched off. Nothing is mocked: the engine, the build and the image are real."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import docker
import pytest

from npufleet.lab import build, registry

BRIDGE = "npftest0"


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A real, minimal pure-Python wheel (PEP 427), made here so no index is needed."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VERSION = "{version}"\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: npufleet-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


@contextlib.contextmanager
def second_engine(bridge_args: list[str]):
    """A dockerd with its own data root, exec root, pid file and socket, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="npf-e2.", dir="/var/tmp"))
    socket = root / "docker.sock"
    process = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "pid"), "-H", f"unix://{socket}", *bridge_args],
        stdout=(root / "log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = None
    try:
        deadline = time.monotonic() + 60
        while client is None:
            try:
                client = docker.DockerClient(base_url=f"unix://{socket}", timeout=600)
            except docker.errors.DockerException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((root / "log").read_text()[-2000:]) from None
                time.sleep(0.5)
        yield client
    finally:
        if client is not None:
            client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for mount in sorted((line.split()[1] for line in mounts if f" {root}/" in line), reverse=True):
                subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_bridge():
    """A new bridge interface with no address: dockerd -b takes it as its default bridge, gives it an
    address from a free pool and, as for a docker0 it creates on a new machine, records no Gateway."""
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("ip"):
        pytest.skip("needs root, dockerd and ip: run 'make setup' first")
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
    yield BRIDGE
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)


def _no_wheelhouse() -> Path:
    raise AssertionError("the image exists: no wheelhouse should be asked for")


def _copy_image(source: docker.DockerClient, target: docker.DockerClient, tag: str) -> None:
    """docker save | docker load, streamed between the two engines."""
    stream = source.images.get(tag).save(named=tag)  # the tag asked for, not whichever came first
    target.images.load(b"".join(stream))


def test_the_workload_venv_builds_on_an_engine_whose_default_bridge_has_no_gateway(own_bridge, tmp_path):
    main = docker.from_env(timeout=600)
    workload = registry.build_workload(main)  # built on the main engine (cached after the first lab)
    with second_engine(["--bridge", own_bridge]) as client:
        ipam = client.networks.get("bridge").attrs.get("IPAM", {}).get("Config") or []
        # What a new machine's engine shows (../shared/LAB.md): a subnet, and no Gateway key.
        assert not any(config.get("Gateway") for config in ipam), ipam
        assert client.images.list() == []
        _copy_image(main, client, workload)

        wheels = tmp_path / "wheels"
        wheels.mkdir()
        _wheel(wheels, "npufleet_probe", "1.2.3")
        # The same code path as the lab's training image, with a one-wheel wheelhouse.
        recipe = {"requirements": ("npufleet_probe==1.2.3",), "venv": "/opt/probe",
                  "label": "npufleet.test", "what": "the probe image"}  # fmt: skip
        tag = build.venv_image(client, workload, "npufleet-test/venv", wheelhouse=lambda: wheels, **recipe)
        # Built once: a second call finds it by its tag and needs no wheelhouse.
        assert (
            build.venv_image(client, workload, "npufleet-test/venv", wheelhouse=_no_wheelhouse, **recipe)
            == tag
        )

        built = client.images.get(tag)
        assert built.labels["npufleet.test"] == "npufleet_probe==1.2.3"
        assert built.attrs["Config"]["Cmd"] == ["/bin/bash"]  # the base's, not the build script
        assert built.attrs["Config"]["Env"][-1].startswith("PATH=/opt/probe/bin:")
        probe = ["python", "-c", "import npufleet_probe; print(npufleet_probe.VERSION)"]
        out = client.containers.run(tag, probe, network_mode="none", remove=True)
        assert out.decode().strip() == "1.2.3"
        # The wheelhouse was a mount: it is in no layer of the image.
        listing = client.containers.run(tag, ["sh", "-c", "ls /wheels 2>&1; find / -name '*.whl' -xdev"],
                                        network_mode="none", remove=True).decode()  # fmt: skip
        assert "npufleet_probe-1.2.3-py3-none-any.whl" not in listing


def test_a_failing_build_says_what_failed_and_leaves_no_image_or_container(own_bridge):
    main = docker.from_env(timeout=600)
    workload = registry.build_workload(main)
    with second_engine(["--bridge", own_bridge]) as client:
        _copy_image(main, client, workload)
        expected = r"the probe image \(npufleet-test/venv:broken\) failed with exit code 3:\n.*no such wheel"
        with pytest.raises(build.LabError, match=expected):
            build.commit_build(client, workload, "npufleet-test/venv:broken",
                               "echo 'no such wheel' >&2; exit 3", what="the probe image")  # fmt: skip
        assert client.containers.list(all=True) == []
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("npufleet-test/venv:broken")
