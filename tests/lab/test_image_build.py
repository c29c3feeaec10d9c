"""The image stage's Dockerfile route (the manual's "build a new image on top of the base image, push it
to SWR") on the shared two-node lab: a derived image built on one node FROM the lab's workload image,
with a package pip installs from the lab's own wheel index behind a password, pushed to the lab
registry's authenticated endpoint, fanned out to both nodes, and run as the NPU container."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import threading
import time
from pathlib import Path

import docker
import pytest
import yaml

from npufleet.api import run_playbook
from npufleet.lab import registry
from npufleet.lab.containers import exec_in, put_file
from tests.lab.conftest import LAB, node_exec, vaulted
from tests.lab.test_fresh_engine import _wheel

pytestmark = pytest.mark.lab
NODES = [f"{LAB}-node1", f"{LAB}-node2"]
INDEX_PORT = 8700
INDEX_UNIT = "npufleet-test-wheel-index"
INDEX_ROOT = "/srv/npufleet-test-index"
BUILT_REPOSITORY = "npufleet/workload-extra"

# A PEP 503 simple index of the folder it is given, behind HTTP basic auth (the user and password read
# from a file, not from the command line). Runs in the lab's registry container, which has python3.
_INDEX_SERVER = """
import base64, http.server, os, sys
root, port, login_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(login_file) as handle:
    expected = "Basic " + base64.b64encode(handle.read().strip().encode()).decode()
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=root, **kwargs)
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="wheels"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
"""

# pip reads the index login from ~/.netrc, which the build mounts for this one RUN: the password is
# in no layer and no history line. The index URL (no secret) comes as a build arg.
_DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG PIP_INDEX_URL
ARG PIP_TRUSTED_HOST
# python3-venv from the apt cache the lab's images carry: no network needed but the index's.
RUN apt-get install -qq -y --no-install-recommends python3-venv >/dev/null && python3 -m venv /opt/extra
RUN --mount=type=secret,id=netrc,target=/root/.netrc,required=true \\
    /opt/extra/bin/pip install -q --no-cache-dir --disable-pip-version-check npufleet-extra==1.0.0
COPY marker.txt /opt/extra/marker.txt
"""


def registry_container():
    return docker.from_env().containers.get(registry.registry_name(LAB))


@pytest.fixture
def wheel_index(tmp_path):
    """The lab's own wheel index, on the registry container, behind a password: (url, user, password)."""
    container = registry_container()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = _wheel(wheels, "npufleet_extra", "1.0.0")
    user, password = "wheels", "pip-" + secrets.token_hex(12)
    exec_in(container, ["mkdir", "-p", f"{INDEX_ROOT}/simple/npufleet-extra"])
    put_file(container, f"{INDEX_ROOT}/simple/npufleet-extra/{wheel.name}", wheel.read_bytes())
    page = f'<html><body><a href="{wheel.name}">{wheel.name}</a></body></html>\n'
    put_file(container, f"{INDEX_ROOT}/simple/npufleet-extra/index.html", page.encode())
    put_file(container, "/root/npufleet-test-index.py", _INDEX_SERVER.encode())
    put_file(container, "/root/npufleet-test-index.login", f"{user}:{password}".encode(), mode=0o600)
    # A unit left by an interrupted run of this test.
    exec_in(container, ["systemctl", "stop", INDEX_UNIT], check=False)
    exec_in(container, ["systemctl", "reset-failed", INDEX_UNIT], check=False)
    code, output = exec_in(
        container,
        ["systemd-run", f"--unit={INDEX_UNIT}", "python3", "/root/npufleet-test-index.py", INDEX_ROOT,
         str(INDEX_PORT), "/root/npufleet-test-index.login"],
    )  # fmt: skip
    assert code == 0, output
    container.reload()
    address = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    # The nodes' nested build containers have no lab DNS: the index is reached by address.
    yield f"{address}:{INDEX_PORT}", user, password
    exec_in(container, ["systemctl", "stop", INDEX_UNIT], check=False)
    exec_in(
        container,
        ["rm", "-rf", INDEX_ROOT, "/root/npufleet-test-index.py", "/root/npufleet-test-index.login"],
    )


@pytest.fixture
def forget_built():
    """After the test, what the builds left goes from the nodes: the container started from the image, the
    images (the first build's too, untagged by the second) and BuildKit's cache, which keeps the base
    image's layers. The other image tests count the bytes each node pulls, from nothing."""
    yield
    for node in NODES:
        node_exec(node, "docker rm -f npufleet-workload >/dev/null 2>&1; true")
        node_exec(node, "docker images -q '*/npufleet/*' | sort -u | xargs -r docker rmi -f >/dev/null; true")
        node_exec(
            node, "docker images -q --filter label=io.npufleet.build-digest | xargs -r docker rmi -f; true"
        )
        node_exec(node, "docker builder prune --all --force >/dev/null; true")


def _layers_holding(text: str, node: str, ref: str) -> list[str]:
    """The members of every layer of ``ref`` (a `docker save` of it on ``node``) whose bytes hold ``text``,
    and the save's own files (config, manifest) that do."""
    saved = docker.from_env().containers.get(node).exec_run(["docker", "save", ref], stream=False)
    assert saved.exit_code == 0, saved.output[-500:]
    found = []
    needle = text.encode()
    with tarfile.open(fileobj=io.BytesIO(saved.output)) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            data = archive.extractfile(member).read()
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for item in layer.getmembers():
                        if item.isfile() and needle in layer.extractfile(item).read():
                            found.append(f"{member.name}:{item.name}")
            elif needle in data:
                found.append(member.name)
    return found


def _stdout(result) -> str:
    """What ansible-playbook printed (ansible-runner keeps it in the run's artifacts), its lines as the
    YAML callback wraps them joined again."""
    return " ".join((Path(result.artifact_dir) / "stdout").read_text(errors="replace").split())


def _files_holding(folder: Path, text: str) -> list[str]:
    return [str(path) for path in folder.rglob("*") if path.is_file() and text.encode() in path.read_bytes()]


def _registry_login(lab_inventory: Path) -> tuple[dict, str, str]:
    """The lab inventory's variables, the registry's authenticated endpoint, and a new password for the
    user "builder" there."""
    found = yaml.safe_load(lab_inventory.read_text())["all"]["vars"]
    password = "reg-" + secrets.token_hex(12)
    registry.set_credentials(registry_container(), "builder", password)
    return found, found["npufleet_lab_registry_auth"], password


def test_build_push_fan_out_and_run_a_derived_image_with_a_secret_pip_index(
    lab_inventory, tmp_path, wheel_index, forget_built
):
    index, index_user, index_password = wheel_index
    found, auth, registry_password = _registry_login(lab_inventory)

    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(_DOCKERFILE)
    (context / "marker.txt").write_text("built by npufleet\n")
    # The passwords are in the inventory's Ansible Vault, as users keep them.
    inventory, vault_password = vaulted(
        lab_inventory,
        tmp_path / "inventory",
        {
            "image_registry_username": "builder",
            "image_registry_password": registry_password,
            "image_build_secrets": [
                {
                    "id": "netrc",
                    "value": f"machine {index.split(':')[0]} login {index_user} password {index_password}\n",
                }
            ],
        },
    )
    settings = {
        "image_name": f"{auth}/{BUILT_REPOSITORY}",
        "image_tag": "1",
        "image_digest": "",
        "image_build_context": str(context),
        "image_build_args": {
            "BASE": f"{auth}/{registry.WORKLOAD_REPOSITORY}:{found['image_tag']}",
            "PIP_INDEX_URL": f"http://{index}/simple/",
            "PIP_TRUSTED_HOST": index.split(":")[0],
        },
        "image_fanout": True,
    }
    ref = f"{settings['image_name']}:1"
    for node in NODES:
        node_exec(
            node, f"docker rm -f npufleet-workload >/dev/null 2>&1; docker rmi -f {ref} >/dev/null 2>&1; true"
        )
    secrets_to_hide = (index_password, registry_password)

    # Check mode: what would be built, and nothing built.
    checked = run_playbook(
        "image.yml", inventory, extravars=settings, check=True, vault_password=vault_password
    )
    assert checked.succeeded, checked.first_failure()
    assert f"would build {ref} (not on this host)" in _stdout(checked)
    assert node_exec(NODES[0], f"docker image inspect {ref}")[0] != 0

    artifacts = tmp_path / "artifacts"
    built = run_playbook(
        "image.yml", inventory, extravars=settings, vault_password=vault_password, artifacts=artifacts,
        env={"ANSIBLE_VERBOSITY": "3"},
    )  # fmt: skip
    assert built.succeeded, built.first_failure()
    assert f"built {ref} (not on this host)" in _stdout(built)
    ids = {node_exec(node, f"docker image inspect --format '{{{{.Id}}}}' {ref}")[1] for node in NODES}
    assert len(ids) == 1 and all(i.startswith("sha256:") for i in ids), ids
    # Both nodes hold the pushed manifest: the build host by its push, the other through the relay.
    pushed = node_exec(NODES[0], f"docker image inspect --format '{{{{json .RepoDigests}}}}' {ref}")[1]
    digest = json.loads(pushed)[0].partition("@")[2]
    relayed = node_exec(NODES[1], f"docker image inspect --format '{{{{json .RepoDigests}}}}' {ref}")[1]
    assert digest and digest in relayed

    # The secret is in no history line, no layer's files, no config; nor in the run's output or records.
    history = node_exec(NODES[0], f"docker history --no-trunc --format '{{{{.CreatedBy}}}}' {ref}")[1]
    print(f"docker history --no-trunc {ref} (newest first):", *history.splitlines()[:4], sep="\n  ")
    # History keeps each RUN with the build args it saw (why a secret must never be one), not its mounts.
    assert f"PIP_INDEX_URL=http://{index}/simple/" in history and "pip install" in history
    assert index_password not in history and index_user not in history
    for secret in secrets_to_hide:
        assert _layers_holding(secret, NODES[0], ref) == []
        assert secret not in _stdout(built) + _stdout(checked)
        assert _files_holding(artifacts, secret) == []
    print(f"layers of {ref} holding a password: 0 (every file of every layer of a docker save searched)")
    # The build's staging folder (context copy, login, secrets' files) is gone; no login stayed.
    for node in NODES:
        assert node_exec(node, "ls -A /var/tmp/npufleet-image-build 2>/dev/null")[1] == ""
        code, config = node_exec(node, "cat /root/.docker/config.json")
        assert auth not in config
        for secret in secrets_to_hide:
            code, output = node_exec(
                node, f"grep -rlsF -- '{secret}' /root /tmp /var/tmp /etc /var/log; true"
            )
            assert output == "", output

    # The package imports in the NPU container started from the built image.
    started = run_playbook("container.yml", inventory, extravars=settings, vault_password=vault_password)
    assert started.succeeded, started.first_failure()
    for node in NODES:
        code, output = node_exec(
            node,
            "docker exec npufleet-workload /opt/extra/bin/python -c "
            "'import npufleet_extra; print(npufleet_extra.VERSION)'",
        )
        assert (code, output) == (0, "1.0.0"), output

    # Unchanged Dockerfile and context: nothing built, pushed or fetched.
    again = run_playbook("image.yml", inventory, extravars=settings, vault_password=vault_password)
    assert again.succeeded, again.first_failure()
    assert all(again.hosts[node].changed == 0 for node in NODES), {n: again.hosts[n].changed for n in NODES}
    assert f"{ref} is built from this Dockerfile and context" in _stdout(again)

    # A changed file of the context builds again, and both nodes get the new image by its digest.
    (context / "marker.txt").write_text("built again\n")
    changed = run_playbook("image.yml", inventory, extravars=settings, vault_password=vault_password)
    assert changed.succeeded, changed.first_failure()
    assert f"built {ref} (built from something else)" in _stdout(changed)
    for node in NODES:
        assert (
            node_exec(node, f"docker run --rm --entrypoint cat {ref} /opt/extra/marker.txt")[1]
            == "built again"
        )
        node_exec(node, "docker rm -f npufleet-workload >/dev/null 2>&1; true")


def test_a_secret_looking_build_arg_is_refused_before_anything(lab_inventory, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    found = yaml.safe_load(lab_inventory.read_text())["all"]["vars"]
    password = "hunter2-" + secrets.token_hex(4)
    # In the inventory: npufleet refuses secret-looking extra vars before Ansible starts.
    folder = tmp_path / "inventory"
    (folder / "group_vars" / "all").mkdir(parents=True)
    (folder / "hosts.yml").write_text(lab_inventory.read_text())
    build = {
        "image_name": f"{found['npufleet_lab_registry']}/{BUILT_REPOSITORY}",
        "image_digest": "",
        "image_build_context": str(context),
        "image_build_args": {"PIP_PASSWORD": password, "PIP_INDEX_URL": "http://pypi.invalid/simple"},
    }
    (folder / "group_vars" / "all" / "build.yml").write_text(yaml.safe_dump(build))
    result = run_playbook("image.yml", folder / "hosts.yml")
    assert not result.succeeded
    message = result.first_failure()
    assert "image_build_args PIP_PASSWORD look like secrets" in message, message
    assert "image_build_secrets" in message and password not in _stdout(result)
    assert node_exec(NODES[0], "ls -A /var/tmp/npufleet-image-build 2>/dev/null")[1] == ""


def test_a_build_stopped_midway_leaves_no_login_and_no_build_running(lab_inventory, tmp_path, forget_built):
    """Cancelled while BuildKit runs a step: the run's stop (playbooks/stop.yml) ends the build on the node
    and removes its staging folder, which holds the throw-away registry login."""
    found, auth, registry_password = _registry_login(lab_inventory)
    context = tmp_path / "context"
    context.mkdir()
    # A step that outlives the test, unless the stop ends it.
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN sleep 600\n")
    inventory, vault_password = vaulted(
        lab_inventory,
        tmp_path / "inventory",
        {"image_registry_username": "builder", "image_registry_password": registry_password},
    )
    settings = {
        "image_name": f"{auth}/{BUILT_REPOSITORY}",
        "image_tag": "stopped",
        "image_digest": "",
        "image_build_context": str(context),
        "image_build_args": {"BASE": f"{auth}/{registry.WORKLOAD_REPOSITORY}:{found['image_tag']}"},
    }

    building = threading.Event()

    def watch_the_build() -> None:
        # The sleep step runs under BuildKit, and the staging folder holds the login: stop the run then.
        deadline = time.monotonic() + 600
        while not building.is_set() and time.monotonic() < deadline:
            step = node_exec(NODES[0], "pgrep -f '^sleep 600$'")[0] == 0
            login = node_exec(NODES[0], "ls /var/tmp/npufleet-image-build/build.*/docker/config.json")[0] == 0
            if step and login:
                building.set()
            time.sleep(2)

    watcher = threading.Thread(target=watch_the_build, daemon=True)
    watcher.start()
    result = run_playbook(
        "image.yml", inventory, extravars=settings, vault_password=vault_password, cancel=building,
        timeout=900,
    )  # fmt: skip
    building.set()
    watcher.join()
    assert result.status == "canceled", (result.status, result.first_failure())
    assert result.stop is not None and result.stop.status == "successful", result.stop
    assert node_exec(NODES[0], "ls -A /var/tmp/npufleet-image-build")[1] == ""
    assert node_exec(NODES[0], "grep -rlsF -- '" + registry_password + "' /var/tmp /tmp /root; true")[1] == ""
    # Nothing of the build goes on: no client, and BuildKit's step ended with it (within a minute). The
    # brackets keep the pattern from matching the shell that runs pgrep.
    for _ in range(60):
        if node_exec(NODES[0], "pgrep -f '^sleep 600$|[d]ocker build'")[0] != 0:
            break
        time.sleep(1)
    assert node_exec(NODES[0], "pgrep -af '^sleep 600$|[d]ocker build'")[1] == ""
    assert node_exec(NODES[0], f"docker image inspect {settings['image_name']}:stopped")[0] != 0
