"""node_image run in-process against a stand-in ``docker`` CLI and a stand-in engine socket (the pull
goes through the engine's API): an image already there changes nothing, a missing one is pulled (and
tagged when pulled by digest), check mode only says it would pull, a login travels in the request's
header only, and an engine that goes silent is given up after the stall timeout. The real engine runs
all of this in the lab's image tests."""

from __future__ import annotations

import base64
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import node_image

# `docker image inspect REF` answers from images.json (a ref -> inspect entry map), which the engine's
# pull below adds to; `tag` copies one; every call is logged.
FAKE_DOCKER = f"""#!{sys.executable}
import json, sys
from pathlib import Path

here = Path(__file__).resolve().parent
args = sys.argv[1:]
with open(here / "calls.jsonl", "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
images = json.loads((here / "images.json").read_text()) if (here / "images.json").exists() else {{}}
if args[:2] == ["info", "--format"]:
    print(here)
elif args[:2] == ["image", "inspect"]:
    if args[2] not in images:
        print("Error: No such image: " + args[2], file=sys.stderr)
        sys.exit(1)
    print(json.dumps([images[args[2]]]))
elif args[0] == "tag":
    images[args[2]] = images[args[1]]
    (here / "images.json").write_text(json.dumps(images))
else:
    sys.exit(2)
"""


class EngineHandler(BaseHTTPRequestHandler):
    """POST /images/create as Docker's engine answers it: progress lines, then the image is there."""

    def do_POST(self):
        here = self.server.folder
        query = {key: values[0] for key, values in parse_qs(urlparse(self.path).query).items()}
        with open(here / "calls.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(["api", self.path, self.headers.get("X-Registry-Auth", "")]) + "\n")
        if (here / "silent").exists():  # a registry that stopped answering: nothing comes back
            time.sleep(30)
            return
        name, tag = query["fromImage"], query["tag"]
        ref = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
        images = json.loads((here / "images.json").read_text()) if (here / "images.json").exists() else {}
        digests = [ref if "@" in ref else name + "@sha256:" + "2" * 64]
        images[ref] = {"Id": "sha256:" + "1" * 64, "RepoDigests": digests}
        (here / "images.json").write_text(json.dumps(images))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        for line in ({"status": f"Pulling from {name}"}, {"status": f"Digest: {digests[0]}"}):
            self.wfile.write(json.dumps(line).encode() + b"\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def docker(stand_in, monkeypatch):
    folder = stand_in("docker", FAKE_DOCKER)
    server = socketserver.ThreadingUnixStreamServer(str(folder / "engine.sock"), EngineHandler)
    server.folder = folder
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{folder / 'engine.sock'}")
    yield folder
    server.shutdown()
    server.server_close()


def calls(docker: Path) -> list[list[str]]:
    path = docker / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_module(capsys, check_mode: bool = False, **args) -> dict:
    args = {"name": "registry.example.com/ai/vllm-ascend", "tag": "v1", "retries": 0, **args}
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        node_image.main()
    return json.loads(capsys.readouterr().out)


def test_check_mode_says_it_would_pull_and_pulls_nothing(docker, capsys):
    result = run_module(capsys, check_mode=True)
    assert (result["changed"], result["action"], result["attempts"]) == (True, "pull", 0)
    assert result["msg"] == "would pull registry.example.com/ai/vllm-ascend:v1"
    assert not [call for call in calls(docker) if call[0] == "api"]


def test_pull_then_a_rerun_changes_nothing(docker, capsys):
    first = run_module(capsys)
    assert (first["changed"], first["action"], first["attempts"]) == (True, "pull", 1)
    assert first["image_id"] == "sha256:" + "1" * 64
    pulls = [call for call in calls(docker) if call[0] == "api"]
    assert [call[1] for call in pulls] == [
        "/images/create?fromImage=registry.example.com%2Fai%2Fvllm-ascend&tag=v1"
    ]
    assert pulls[0][2] == ""  # no login asked for, none sent
    again = run_module(capsys)
    assert (again["changed"], again["action"]) == (False, "none")
    checked = run_module(capsys, check_mode=True)
    assert checked["changed"] is False


def test_pull_by_digest_is_tagged(docker, capsys):
    digest = "sha256:" + "3" * 64
    result = run_module(capsys, digest=digest)
    assert (result["changed"], result["digest"]) == (True, digest)
    assert [
        "tag",
        f"registry.example.com/ai/vllm-ascend@{digest}",
        "registry.example.com/ai/vllm-ascend:v1",
    ] in calls(docker)


def test_a_login_goes_in_the_request_header_only(docker, capsys):
    result = run_module(capsys, username="trainer", password="pw-unit-5c1e")
    assert result["changed"] is True
    (pull,) = [call for call in calls(docker) if call[0] == "api"]
    login = json.loads(base64.urlsafe_b64decode(pull[2]))
    assert login == {
        "username": "trainer",
        "password": "pw-unit-5c1e",
        "serveraddress": "registry.example.com",
    }
    # Nothing else ever saw it: no docker login, no file.
    assert not [call for call in calls(docker) if call[0] != "api" and "login" in call]
    assert "pw-unit-5c1e" not in json.dumps(result)
    assert not [path for path in docker.rglob("*") if path.is_file() and b"pw-unit-5c1e" in path.read_bytes()]


def test_an_engine_that_goes_silent_is_given_up_after_the_stall_timeout(docker, capsys):
    (docker / "silent").write_text("")
    started = time.monotonic()
    result = run_module(capsys, stall_timeout=1)
    assert time.monotonic() - started < 10
    assert result["failed"] is True
    assert "the engine sent nothing for 1 s" in result["msg"]
    assert "(unreachable)" in result["msg"]


def test_a_stall_timeout_of_zero_is_refused(docker, capsys):
    result = run_module(capsys, stall_timeout=0)
    assert result["failed"] is True
    assert "stall_timeout must be a number of seconds above 0 (got 0)" in result["msg"]
