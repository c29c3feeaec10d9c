"""The fan-out relay (roles/image/files/npufleet-image-relay.py), on loopback, in front of a small
registry that asks for a bearer token and can send a blob with the wrong bytes: the faults a real
registry does not make on demand. tests/lab/test_image_container.py runs it with Docker and the lab's
registry."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

RELAY = Path(__file__).resolve().parents[4] / "roles/image/files/npufleet-image-relay.py"
TOKEN = "t0k3nfortests"
GOOD = b"layer bytes " * 50_000
GOOD_DIGEST = "sha256:" + hashlib.sha256(GOOD).hexdigest()
# Served under this digest, but its bytes are another blob's: the relay must not pass them on whole.
BAD_DIGEST = "sha256:" + hashlib.sha256(b"what the manifest promised").hexdigest()
# Redirected to "object storage" on another path, which refuses a request that carries the registry's
# login (as S3 and OBS refuse a second authorization beside their signed URL).
STORED = b"stored elsewhere " * 10_000
STORED_DIGEST = "sha256:" + hashlib.sha256(STORED).hexdigest()
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST = json.dumps({"schemaVersion": 2, "layers": [{"digest": GOOD_DIGEST}]}).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Registry(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.token_requests: list[str] = []
        super().__init__(("127.0.0.1", 0), RegistryHandler)


class RegistryHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Registry

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        if self.path == "/storage/signed":
            self.server.requests.append(self.path)
            if self.headers.get("Authorization"):
                self.reply(400, b"only one auth mechanism allowed")
            else:
                self.reply(200, STORED)
            return
        if self.path.startswith("/token?"):
            self.server.token_requests.append(self.path)
            # The login the relay was given, as Docker sends it to a token realm.
            if self.headers.get("Authorization") != "Basic dXNlcjpzM2NyM3Q=":
                self.reply(401, b"{}")
                return
            self.reply(200, json.dumps({"token": "granted"}).encode())
            return
        if self.headers.get("Authorization") != "Bearer granted":
            challenge = (
                f'Bearer realm="http://127.0.0.1:{port}/token",service="test",scope="repository:org/app:pull"'
            )
            self.reply(401, b"{}", {"WWW-Authenticate": challenge})
            return
        self.server.requests.append(self.path)
        if self.path == "/v2/org/app/manifests/v1":
            self.reply(200, MANIFEST, {"Content-Type": MANIFEST_TYPE})
        elif self.path == f"/v2/org/app/blobs/{GOOD_DIGEST}":
            time.sleep(0.3)  # the engines ask while the relay is still fetching
            self.reply(200, GOOD)
        elif self.path == f"/v2/org/app/blobs/{BAD_DIGEST}":
            self.reply(200, GOOD)
        elif self.path == f"/v2/org/app/blobs/{STORED_DIGEST}":
            self.reply(307, b"", {"Location": f"http://127.0.0.1:{port}/storage/signed"})
        else:
            self.reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')


@pytest.fixture
def relay(tmp_path):
    registry = Registry()
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"token": TOKEN, "username": "user", "password": "s3cr3t"}))
    secrets.chmod(0o600)
    (tmp_path / "blobs").mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(RELAY), "--bind", "127.0.0.1", "--port", str(port), "--plain-http",
         "--image", f"127.0.0.1:{registry.server_address[1]}/org/app", "--secrets", str(secrets),
         "--folder", str(tmp_path / "blobs")],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield {"port": port, "registry": registry, "secrets": secrets, "process": process}
    process.kill()
    process.wait()
    registry.shutdown()


def ask(port: int, path: str, token: str = TOKEN) -> tuple[int, bytes]:
    """One GET through the relay, opened with the token line as node_image's forwarder does.
    Returns (status, body); status 0 when the relay closed the connection without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(f"NPUFLEET-RELAY {token}\n".encode())
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(1 << 16):
            data += chunk
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_each_blob_is_fetched_once_for_every_engine_and_the_login_file_is_gone(relay):
    assert not relay["secrets"].exists()
    port = relay["port"]
    assert ask(port, "/v2/")[0] == 200
    status, manifest = ask(port, "/v2/org/app/manifests/v1")
    assert (status, manifest) == (200, MANIFEST)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: ask(port, f"/v2/org/app/blobs/{GOOD_DIGEST}"), range(4)))
    assert answers == [(200, GOOD)] * 4
    asked = relay["registry"].requests
    assert asked.count(f"/v2/org/app/blobs/{GOOD_DIGEST}") == 1
    assert asked.count("/v2/org/app/manifests/v1") == 1
    # Logged in once, with the user and password from the removed file.
    assert len(relay["registry"].token_requests) == 1
    assert "scope=repository%3Aorg%2Fapp%3Apull" in relay["registry"].token_requests[0]


def test_a_redirected_blob_is_fetched_without_the_registry_login(relay):
    assert ask(relay["port"], f"/v2/org/app/blobs/{STORED_DIGEST}") == (200, STORED)
    assert relay["registry"].requests[-1] == "/storage/signed"


def test_a_blob_that_does_not_match_its_digest_is_cut_off(relay):
    status, body = ask(relay["port"], f"/v2/org/app/blobs/{BAD_DIGEST}")
    # Headers may have gone out, but never the whole blob: the engine sees a short read and fails.
    assert status in (0, 200, 502)
    assert len(body) < len(GOOD)


def test_only_the_token_and_the_one_repository_are_answered(relay):
    port = relay["port"]
    assert ask(port, "/v2/", token="wrong") == (0, b"")
    status, body = ask(port, "/v2/other/app/manifests/v1")
    assert status == 404 and b"NAME_UNKNOWN" in body
    assert ask(port, "/v2/org/app/manifests/missing")[0] == 404
    assert relay["registry"].requests.count("/v2/org/app/manifests/missing") == 1
