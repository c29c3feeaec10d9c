"""The lab's image registry, and the workload image it serves.

No outside registry can be reached from the lab, so the lab runs its own: a systemd container with
Debian's ``docker-registry`` (distribution 2.8), serving one storage on two ports: 5000 open, 5001
behind htpasswd basic auth. The host pushes to it through a port published on 127.0.0.1 (which
Docker trusts over plain HTTP); nodes pull from ``<lab>-registry:5000`` or ``:5001`` on the lab
network. The access log in the journal says how many bytes it served.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from dataclasses import dataclass

import docker
import docker.errors

from npufleet.lab import node_base_image
from npufleet.lab.containers import LABEL, LabError, exec_in, put_file, run_systemd_container, wait_booted

log = logging.getLogger(__name__)

ROLE_LABEL = "npufleet.lab.registry"
OPEN_PORT = 5000
AUTH_PORT = 5001
WORKLOAD_REPOSITORY = "npufleet/workload"
CONFIG_DIR = "/etc/docker/registry"
STORAGE = "/var/lib/docker-registry"
AUTH_UNIT = "npufleet-registry-auth.service"
UNITS = ("docker-registry.service", AUTH_UNIT)


def _config(port: int, auth: bool) -> str:
    text = f"""version: 0.1
log:
  level: info
  fields:
    service: registry-{port}
storage:
  filesystem:
    rootdirectory: {STORAGE}
  delete:
    enabled: true
http:
  addr: :{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""
    if auth:
        text += f"""auth:
  htpasswd:
    realm: npufleet-lab
    path: {CONFIG_DIR}/htpasswd
"""
    return text


_AUTH_UNIT_TEXT = f"""[Unit]
Description=npufleet lab registry, htpasswd endpoint
After=network.target

[Service]
User=docker-registry
ExecStart=/usr/bin/docker-registry serve {CONFIG_DIR}/config-auth.yml
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

# A registry refuses to start with an empty htpasswd file; this user exists until the lab's user
# sets its own, and its password is random and never kept.
_PLACEHOLDER_USER = "npufleet-placeholder"


@dataclass
class Registry:
    name: str
    address: str | None
    host_port: int

    @property
    def open_endpoint(self) -> str:
        return f"{self.name}:{OPEN_PORT}"

    @property
    def auth_endpoint(self) -> str:
        return f"{self.name}:{AUTH_PORT}"

    @property
    def push_endpoint(self) -> str:
        return f"127.0.0.1:{self.host_port}"

    @property
    def insecure_endpoints(self) -> list[str]:
        """The endpoints a node's container engine must reach over plain HTTP (both of them)."""
        return [self.open_endpoint, self.auth_endpoint]


def registry_name(lab: str) -> str:
    return f"{lab}-registry"


def find(client: docker.DockerClient, lab: str):
    found = client.containers.list(all=True, filters={"label": [f"{LABEL}={lab}", ROLE_LABEL]})
    return found[0] if found else None


def _describe(container, network: str) -> Registry:
    container.reload()
    ports = container.attrs["NetworkSettings"]["Ports"].get(f"{OPEN_PORT}/tcp") or []
    address = container.attrs["NetworkSettings"]["Networks"].get(network, {}).get("IPAddress") or None
    if not ports:
        raise LabError(f"{container.name} publishes no port for pushes: run 'npufleet lab down' and up again")
    return Registry(container.name, address, int(ports[0]["HostPort"]))


def ensure(client: docker.DockerClient, lab: str, network: str) -> Registry:
    """Start the lab's registry (building its image once), or return the one that runs."""
    container = find(client, lab)
    if container is not None:
        if container.status != "running":
            container.start()
            wait_booted(container)
        _wait_healthy(container)
        return _describe(container, network)
    name = registry_name(lab)
    tag, _ = node_base_image.build(client, node_base_image.Recipe(flavour="registry"))
    container = run_systemd_container(
        client,
        tag,
        name,
        network=network,
        labels={LABEL: lab, ROLE_LABEL: "1"},
        ports={f"{OPEN_PORT}/tcp": ("127.0.0.1", None)},
    )
    wait_booted(container)
    put_file(container, f"{CONFIG_DIR}/config.yml", _config(OPEN_PORT, auth=False).encode())
    put_file(container, f"{CONFIG_DIR}/config-auth.yml", _config(AUTH_PORT, auth=True).encode())
    put_file(container, f"/etc/systemd/system/{AUTH_UNIT}", _AUTH_UNIT_TEXT.encode())
    set_credentials(container, _PLACEHOLDER_USER, hashlib.sha256(str(time.time_ns()).encode()).hexdigest())
    exec_in(container, ["systemctl", "daemon-reload"])
    exec_in(container, ["systemctl", "enable", "--now", AUTH_UNIT])
    exec_in(container, ["systemctl", "restart", "docker-registry.service"])
    _wait_healthy(container)
    return _describe(container, network)


def _wait_healthy(container) -> None:
    for port in (OPEN_PORT, AUTH_PORT):
        # /v2/ answers 200 when open and 401 behind auth: either means the registry serves.
        probe = f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/v2/"
        deadline = time.monotonic() + 30
        while True:
            _, output = exec_in(container, ["sh", "-c", probe], check=False)
            if output.strip() in ("200", "401"):
                break
            if time.monotonic() > deadline:
                raise LabError(f"{container.name}: the registry on port {port} does not answer ({output!r})")
            time.sleep(0.3)


def set_credentials(container, user: str, password: str) -> None:
    """Make ``user``/``password`` the only login of the authenticated endpoint.

    The password goes through a file that is removed at once, never through a command line.
    """
    # Not under /run: a tmpfs there hides files put into the container from outside.
    secret = f"{CONFIG_DIR}/.password-{time.time_ns()}"
    put_file(container, secret, password.encode() + b"\n", mode=0o600)
    exec_in(
        container,
        [
            "sh",
            "-c",
            f"htpasswd -iBc {CONFIG_DIR}/htpasswd '{user}' < {secret}; rc=$?; rm -f {secret}; "
            f"chown docker-registry {CONFIG_DIR}/htpasswd; exit $rc",
        ],
    )
    # The registry reads htpasswd at start only.
    exec_in(container, ["sh", "-c", f"systemctl try-restart {AUTH_UNIT}"], check=False)


# One access-log line per request, in the combined log format:
#   192.168.64.3 - - [27/Nov/2026:23:50:01 +0000] "GET /v2/.../blobs/sha256:... HTTP/1.1" 200 52428
#   "" "docker/20.10"
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<size>\d+|-)')


def bytes_served(log_text: str) -> dict[str, int]:
    """Bytes of blobs and manifests the registry answered GET requests with, from its access log."""
    total = {"blob_bytes": 0, "manifest_bytes": 0, "blob_requests": 0}
    for match in _ACCESS.finditer(log_text):
        if match["method"] != "GET" or match["size"] == "-" or not match["status"].startswith("2"):
            continue
        size = int(match["size"])
        if "/blobs/" in match["path"]:
            total["blob_bytes"] += size
            total["blob_requests"] += 1
        elif "/manifests/" in match["path"]:
            total["manifest_bytes"] += size
    return total


def access_log(container, since: float | None = None) -> str:
    cmd = ["journalctl", "--no-pager", "-o", "cat"]
    for unit in UNITS:
        cmd += ["-u", unit]
    if since is not None:
        cmd += ["--since", f"@{since:.6f}"]
    return exec_in(container, cmd)[1]


_WORKLOAD_DOCKERFILE = """FROM {base}
# ModelArts images run as ma-user (uid 1000) in ma-group; the lab's workload does the same.
RUN groupadd -g 1000 ma-group && useradd -u 1000 -g ma-group -d /home/ma-user -s /bin/bash ma-user \\
    && chown ma-user:ma-group /home/ma-user
# ModelArts images carry CANN's toolkit; the lab's carries its version file only, the one the nodes'
# emulated toolkit has by default (files/npu_sim.py), so the version gate reads a real file.
RUN d=/usr/local/Ascend/ascend-toolkit/8.0.RC3/$(uname -m)-linux && mkdir -p $d \\
    && printf 'package_name=%s\\nversion=8.0.RC3\\ninnerversion=%s\\narch=%s\\nos=linux\\n' \\
       Ascend-cann-toolkit V100R001C19B001 "$(uname -m)" >$d/ascend_toolkit_install.info \\
    && ln -s 8.0.RC3 /usr/local/Ascend/ascend-toolkit/latest
LABEL npufleet.lab.workload="{base}"
CMD ["/bin/bash"]
"""


def build_workload(client: docker.DockerClient, extra_dockerfile: str = "") -> str:
    """The lab's workload image, built from the node base image; the tag is a hash of its recipe."""
    base, _ = node_base_image.build(client, node_base_image.Recipe(flavour="bare"))
    dockerfile = _WORKLOAD_DOCKERFILE.format(base=base) + extra_dockerfile
    version = "lab-" + hashlib.sha256(dockerfile.encode()).hexdigest()[:12]
    tag = f"npufleet-lab/workload:{version}"
    if not node_base_image.image_exists(client, tag):
        log.info("building the workload image %s", tag)
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True)
        _remove_stale_workloads(client, base)
    return tag


def _remove_stale_workloads(client: docker.DockerClient, base: str) -> None:
    """Workload images built on an older node base, then that base itself (they kept it alive)."""
    for old in client.images.list(filters={"label": "npufleet.lab.workload"}):
        if old.labels.get("npufleet.lab.workload") != base:
            try:
                client.images.remove(old.id, force=True)
            except docker.errors.APIError as error:
                log.info("kept old workload image %s: %s", old.tags, error.explanation)
    node_base_image.remove_stale(client, keep=base)


def push(client: docker.DockerClient, registry: Registry, local_tag: str, repository: str) -> tuple[str, str]:
    """Push ``local_tag`` as ``repository`` into the lab registry; returns (version, manifest digest)."""
    version = local_tag.partition(":")[2]
    target = f"{registry.push_endpoint}/{repository}"
    client.images.get(local_tag).tag(target, version)
    digest = ""
    for line in client.images.push(target, version, stream=True, decode=True):
        if "error" in line:
            raise LabError(f"pushing {local_tag} to the lab registry failed: {line['error']}")
        digest = line.get("aux", {}).get("Digest", digest)
    client.images.remove(f"{target}:{version}")
    return version, digest


def limit_egress(container, mbit: int) -> None:
    """Cap what the registry sends (0 lifts the cap), as a remote registry's bandwidth caps a real
    pull; node-to-node traffic stays uncapped, as inside a cluster."""
    exec_in(container, ["sh", "-c", "tc qdisc del dev eth0 root 2>/dev/null; true"])
    if mbit > 0:
        exec_in(container, ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", f"{mbit}mbit",
                            "burst", "1mb", "latency", "100ms"])  # fmt: skip
