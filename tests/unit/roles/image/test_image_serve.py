"""The fan-out server (roles/image/files/npufleet-image-serve.py), on loopback, with a stand-in export."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[4] / "roles/image/files/npufleet-image-serve.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(peers: int, export: str) -> str:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(SERVER), "--bind", "127.0.0.1", "--port", str(port),
             "--path", "/t0k3n/image.tar", "--peers", str(peers), "--gather", "5", "--", "sh", "-c", export],
            cwd=tmp_path, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}"
            time.sleep(0.05)
        raise AssertionError("the server did not start")

    yield start
    for process in started:
        process.terminate()
        process.wait()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_peers_asking_together_share_one_export(serve, tmp_path):
    payload = tmp_path / "image.tar"
    payload.write_bytes(bytes(range(256)) * 40000)  # 10 MB, several chunks
    base = serve(3, "echo run >> runs; cat image.tar")
    with ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(fetch, [f"{base}/t0k3n/image.tar"] * 3))
    assert all(body == payload.read_bytes() for body in bodies)
    assert (tmp_path / "runs").read_text() == "run\n"
    # A peer asking after the shared export gets one of its own.
    assert fetch(f"{base}/t0k3n/image.tar") == payload.read_bytes()
    assert (tmp_path / "runs").read_text() == "run\nrun\n"


def test_only_the_secret_path_is_served(serve):
    base = serve(1, "echo secret")
    for path in ("/", "/image.tar", "/t0k3n/", "/../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(base + path)
        assert refused.value.code == 404


def test_a_failed_export_sends_a_short_archive(serve):
    base = serve(1, "printf partial; exit 3")
    assert fetch(f"{base}/t0k3n/image.tar") == b"partial"
