#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_image
short_description: Make a container image present in a node's Docker or containerd image store
description:
  - Gets one image onto the node it runs on, from a registry (C(docker pull), or
    C(ctr -n k8s.io images pull) on Kubernetes nodes), from an archive on the node
    (C(docker load), C(ctr images import)), streamed from a URL (fan-out from another node), or
    pulled through a fan-out relay on another node (O(source=relay)).
  - Does nothing when the wanted image is already there, recognised by digest when O(digest) is
    given, by image id when O(image_id) is given, else by name and tag.
  - Registry credentials never reach a command line, a log or a file on the node. Docker gets them
    in the X-Registry-Auth header of the pull request on its API socket, so a run killed during the
    pull leaves no login behind; ctr reads the password from a pseudo-terminal, as it would from a
    person.
  - Network failures are retried with exponential backoff; bad credentials, an unknown image, a
    registry that speaks plain HTTP and too little disk fail at once, each with its own message.
version_added: "0.2.0"
author:
  - npufleet contributors
options:
  name:
    description:
      - Repository, with the registry host (for example C(swr.cn-southwest-2.myhuaweicloud.com/org/image)).
    type: str
    required: true
  tag:
    description:
      - Tag. With O(digest), the image is pulled by digest and then tagged with this tag, so
        containers can name it the same way on every node.
    type: str
    default: latest
  digest:
    description: Manifest digest (C(sha256:...)) to pull by, and to recognise the image by.
    type: str
    default: ""
  image_id:
    description:
      - Image id (Docker's C(sha256:...) config digest) the node must end up with; an image of that
        name with another id is replaced. Used by fan-out, where loaded images carry no registry digest.
    type: str
    default: ""
  engine:
    description: Which image store; C(containerd) uses C(ctr) in O(namespace).
    type: str
    choices: [docker, containerd]
    default: docker
  namespace:
    description: containerd namespace; the kubelet only sees images in C(k8s.io).
    type: str
    default: k8s.io
  source:
    description: Where the image comes from when it is missing.
    type: str
    choices: [registry, archive, url, relay]
    default: registry
  path:
    description: With O(source=archive), the archive on the node (a C(docker save) or OCI tarball).
    type: path
  url:
    description: With O(source=url), an HTTP URL of an archive, streamed into the engine (no copy on disk).
    type: str
  relay:
    description:
      - With O(source=relay), C(host:port) of the fan-out relay (C(npufleet-image-relay.py) of the image
        role), which fetches each blob of O(name) from its registry once for every node.
      - The engine pulls from C(127.0.0.1:port) on this node, forwarded to the relay for the length of the
        pull, so Docker needs no C(insecure-registries) entry. The port must be free on the loopback.
      - Pulled by digest, the image keeps that loopback name with the digest (C(docker images --digests)),
        which is how a later run recognises it.
    type: str
  relay_token:
    description: With O(source=relay), the transfer's token; the relay answers no connection without it.
    type: str
    default: ""
  username:
    description: Registry user; with O(password), log in before pulling.
    type: str
    default: ""
  password:
    description: Registry password or token. Never logged.
    type: str
    default: ""
  plain_http:
    description:
      - containerd only; the registry speaks HTTP.
      - Docker reads this from its C(insecure-registries) instead.
    type: bool
    default: false
  retries:
    description: Further attempts after a network failure.
    type: int
    default: 3
  backoff:
    description: Seconds before the first retry; each later wait doubles.
    type: float
    default: 2.0
  min_free_gib:
    description: Fail before getting the image when the engine's storage has less free space than this.
    type: float
    default: 0
  stall_timeout:
    description:
      - Docker only; seconds a pull may go without a progress line from the engine before the attempt
        is given up (as a network failure, so retried). A registry that stops answering mid-pull
        otherwise holds the pull for as long as the engine's own connection lasts.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description:
      - Looks at the image store as usual and reports whether the image would be fetched (RV(changed)
        and RV(action) as they would be, with a message); fetches nothing.
  diff_mode:
    support: none
    description: It writes no file; RV(image_id) and RV(digest) say what the node holds.
requirements:
  - C(docker) CLI (engine=docker) or C(ctr) (engine=containerd) on the node.
notes:
  - Docker must list a plain-HTTP registry in C(insecure-registries) (the docker role's
    C(docker_insecure_registries)); containerd needs O(plain_http=true).
  - Archives loaded with C(docker load) carry no registry digest, so fan-out recognises them by O(image_id).
"""

EXAMPLES = r"""
- name: Pull the training image after logging in (credentials from Ansible Vault)
  npufleet.ascend.node_image:
    name: swr.cn-southwest-2.myhuaweicloud.com/ai/mindspeed-llm
    tag: 2.0.0-cann8.0.rc3
    username: "{{ vault_swr_user }}"
    password: "{{ vault_swr_token }}"
    min_free_gib: 50
  no_log: true

- name: Pull into containerd's k8s.io namespace by digest
  npufleet.ascend.node_image:
    name: registry.example.com/ai/vllm-ascend
    tag: v0.9.1
    digest: sha256:4f3c...
    engine: containerd

- name: Load an image from a tarball already on the node
  npufleet.ascend.node_image:
    name: registry.example.com/ai/vllm-ascend
    tag: v0.9.1
    source: archive
    path: /data/images/vllm-ascend.tar
"""

RETURN = r"""
ref:
  description: The name and tag containers should use.
  returned: always
  type: str
  sample: registry.example.com/ai/vllm-ascend:v0.9.1
image_id:
  description: Docker image id, or the manifest digest containerd lists for the image.
  returned: when the image is present
  type: str
digest:
  description: Registry digest of the image when the engine knows it.
  returned: when the image is present
  type: str
engine_ref:
  description: The reference as the engine stores it (containerd's is fully qualified).
  returned: always
  type: str
  sample: docker.io/library/busybox:1
action:
  description: What was done, C(none), C(pull), C(load), C(stream) or C(relay).
  returned: always
  type: str
attempts:
  description: Attempts made (more than one after network failures).
  returned: always
  type: int
msg:
  description: In check mode, what would be done.
  returned: in check mode, when the image would be fetched
  type: str
  sample: would pull registry.example.com/ai/vllm-ascend:v0.9.1
"""

import contextlib
import json
import os
import pty
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils import docker_api
from ansible_collections.npufleet.ascend.plugins.module_utils.container_image import (
    check_reference,
    classify_failure,
    failure_message,
    holds_digest,
    is_retryable,
    normalize_ref,
    parse_ctr_images,
    registry_host,
    relay_name,
)


class ImageFailure(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class LoopbackRelay:
    """127.0.0.1:port on this node, forwarded to the seed's relay: each connection opens with the
    transfer's token, then the engine's bytes go both ways unchanged."""

    def __init__(self, relay: str, port: int, token: str) -> None:
        host, _, relay_port = relay.rpartition(":")
        self.target = (host.strip("[]"), int(relay_port))
        self.preamble = f"NPUFLEET-RELAY {token}\n".encode()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind(("127.0.0.1", port))
        except OSError as error:
            self.listener.close()
            raise ImageFailure(
                "other",
                f"port {port} on the node's loopback is taken ({error}): choose another image_fanout_port",
            ) from error
        self.listener.listen(32)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                engine_side, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self.connect, args=(engine_side,), daemon=True).start()

    def connect(self, engine_side) -> None:
        try:
            relay_side = socket.create_connection(self.target, timeout=30)
        except OSError:
            engine_side.close()
            return
        relay_side.settimeout(None)
        relay_side.sendall(self.preamble)
        threading.Thread(target=pipe, args=(relay_side, engine_side), daemon=True).start()
        pipe(engine_side, relay_side)

    def close(self) -> None:
        self.listener.close()


def pipe(source, sink) -> None:
    """Copy until the source ends, then end the sink's writing side."""
    try:
        while True:
            data = source.recv(1 << 20)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Engine:
    """Common steps; the docker and containerd engines fill in the commands."""

    storage = "/"

    def __init__(self, module: AnsibleModule):
        self.module = module
        self.params = module.params

    def run(self, argv, data=None, env=None):
        rc, out, err = self.module.run_command(argv, data=data, environ_update=env or {})
        if rc != 0:
            detail = (err or out or "").strip()
            raise ImageFailure(classify_failure(detail), detail)
        return out

    def free_gib(self) -> float:
        path = self.storage
        while not os.path.exists(path):
            path = os.path.dirname(path)
        stats = os.statvfs(path)
        return stats.f_bavail * stats.f_frsize / 2**30

    def pull_relay(self, ref: str, relayed: str) -> None:
        """Pull ``relayed`` (the loopback name) through the seed's relay, then name it ``ref``."""
        params = self.params
        port = int(params["relay"].rpartition(":")[2])
        forward = LoopbackRelay(params["relay"], port, params["relay_token"])
        try:
            self.pull_plain(relayed)
        finally:
            forward.close()
        self.retag(relayed, ref)

    def stream(self, argv, url: str) -> None:
        """Feed an HTTP download into the engine's stdin, without a copy on disk."""
        try:
            response = urllib.request.urlopen(url, timeout=60)
        except (urllib.error.URLError, OSError) as error:
            raise ImageFailure("unreachable", f"{url}: {error}") from error
        with response, tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
            try:
                shutil.copyfileobj(response, process.stdin, 4 * 2**20)
                process.stdin.close()
            except (OSError, urllib.error.URLError) as error:
                process.kill()
                process.wait()
                raise ImageFailure("unreachable", f"{url}: {error}") from error
            rc = process.wait()
            if rc != 0:
                errors.seek(0)
                detail = errors.read().decode(errors="replace").strip()
                raise ImageFailure(classify_failure(detail), detail)


class Docker(Engine):
    def __init__(self, module):
        super().__init__(module)
        self.docker = engine_binary(module, "docker")
        self.storage = self.run([self.docker, "info", "--format", "{{.DockerRootDir}}"]).strip()

    def inspect(self, ref: str):
        rc, out, _ = self.module.run_command([self.docker, "image", "inspect", ref])
        if rc != 0:
            return None
        found = json.loads(out)[0]
        return {"id": found["Id"], "digests": found.get("RepoDigests") or []}

    def present(self, ref: str, name: str, digest: str, image_id: str):
        found = self.inspect(ref)
        if found is None:
            return None
        if image_id and found["id"] != image_id:
            return None
        if digest and not image_id and not holds_digest(found["digests"], name, digest):
            return None
        return found

    def api_pull(self, reference: str, auth: str | None) -> None:
        """Pull through the engine's API: a login goes in the request's header (``docker login`` would
        write it in a file, left behind if the run is killed), the engine is given up on after
        O(stall_timeout) seconds without a progress line, and a killed module closes the connection,
        which makes the engine drop the pull (a `docker pull` child would go on alone)."""
        try:
            docker_api.pull(reference, auth, docker_api.engine_socket(), timeout=self.params["stall_timeout"])
        except docker_api.EngineError as error:
            raise ImageFailure(classify_failure(str(error)), str(error)) from error

    def pull(self, ref: str, source_ref: str, registry: str) -> None:
        username, password = self.params["username"], self.params["password"]
        login = None
        if username and password:
            login = docker_api.registry_auth_header(username, password, registry)
        self.api_pull(source_ref, login)
        if source_ref != ref:
            self.run([self.docker, "tag", source_ref, ref])

    def pull_plain(self, relayed: str) -> None:
        # No login: the relay logged in to the registry.
        self.api_pull(relayed, None)

    def retag(self, relayed: str, ref: str) -> None:
        self.run([self.docker, "tag", relayed, ref])
        if "@" not in relayed:
            # A tag under the loopback name says nothing a later run needs: only the digest does.
            self.run([self.docker, "image", "rm", relayed])

    def load_archive(self, path: str) -> None:
        self.run([self.docker, "load", "--quiet", "--input", path])

    def load_url(self, url: str) -> None:
        self.stream([self.docker, "load", "--quiet"], url)

    def describe(self, found, name: str):
        digests = [
            d.partition("@")[2] for d in found["digests"] if holds_digest([d], name, d.partition("@")[2])
        ]
        return {"image_id": found["id"], "digest": digests[0] if digests else ""}


class Containerd(Engine):
    storage = "/var/lib/containerd"

    def __init__(self, module):
        super().__init__(module)
        self.ctr = [engine_binary(module, "ctr"), "--namespace", self.params["namespace"]]

    def listing(self):
        return parse_ctr_images(self.run([*self.ctr, "images", "ls"]))

    def present(self, ref: str, name: str, digest: str, image_id: str):
        found = self.listing().get(normalize_ref(ref))
        if found is None:
            return None
        if digest and found["digest"] != digest:
            return None
        if image_id and found["digest"] != image_id:
            return None
        return found

    def pull(self, ref: str, source_ref: str, registry: str) -> None:
        argv = [*self.ctr, "images", "pull"]
        if self.params["plain_http"]:
            argv.append("--plain-http")
        username, password = self.params["username"], self.params["password"]
        if username and password:
            # ctr takes "user:password" on its command line, or prompts on a terminal for the
            # password when given only the user: a pseudo-terminal keeps it out of argv.
            self.run_with_password([*argv, "--user", username, normalize_ref(source_ref)], password)
        else:
            self.run([*argv, normalize_ref(source_ref)])
        if source_ref != ref:
            self.run([*self.ctr, "images", "tag", "--force", normalize_ref(source_ref), normalize_ref(ref)])

    def run_with_password(self, argv, password: str) -> None:
        controller, terminal = pty.openpty()
        try:
            process = subprocess.Popen(
                argv, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            os.close(terminal)
            terminal = None
            os.write(controller, password.encode() + b"\n")
            out, err = process.communicate()
        finally:
            if terminal is not None:
                os.close(terminal)
            os.close(controller)
        if process.returncode != 0:
            detail = (err or out).decode(errors="replace").strip()
            raise ImageFailure(classify_failure(detail), detail)

    def pull_plain(self, relayed: str) -> None:
        self.run([*self.ctr, "images", "pull", "--plain-http", normalize_ref(relayed)])

    def retag(self, relayed: str, ref: str) -> None:
        # containerd keeps the manifest digest on the tag, so the loopback name can go.
        self.run([*self.ctr, "images", "tag", "--force", normalize_ref(relayed), normalize_ref(ref)])
        self.run([*self.ctr, "images", "rm", normalize_ref(relayed)])

    def load_archive(self, path: str) -> None:
        self.run([*self.ctr, "images", "import", path])

    def load_url(self, url: str) -> None:
        self.stream([*self.ctr, "images", "import", "-"], url)

    def describe(self, found, name: str):
        return {"image_id": found["digest"], "digest": found["digest"]}


def engine_binary(module, name: str) -> str:
    path = module.get_bin_path(name)
    if path:
        return path
    if module.check_mode:
        # In a check-mode run of site.yml, node setup has not installed the engine yet.
        module.exit_json(
            changed=True, action="pull", msg=f"{name} is not installed yet: the image would be fetched"
        )
    module.fail_json(
        msg=f"{name} is not installed on the node: install the container engine first, or choose the engine "
        "the node has (option engine)"
    )
    return ""


def with_retries(module, action):
    """Run ``action`` until it succeeds, retrying network failures with exponential backoff."""
    attempts = 0
    delay = module.params["backoff"]
    while True:
        attempts += 1
        try:
            action()
            return attempts
        except ImageFailure as failure:
            if not is_retryable(failure.kind) or attempts > module.params["retries"]:
                failure.attempts = attempts
                raise
            time.sleep(delay)
            delay *= 2


class ImageManager:
    """Probe the image store, decide, then get the image (or, in check mode, say that it would)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = params = module.params
        self.name, self.tag, self.digest = params["name"], params["tag"], params["digest"]
        self.ref = f"{self.name}:{self.tag}"
        by_digest = self.digest and params["source"] in ("registry", "relay")
        self.source_ref = f"{self.name}@{self.digest}" if by_digest else self.ref
        self.registry = registry_host(self.name)
        engine_ref = normalize_ref(self.ref) if params["engine"] == "containerd" else self.ref
        self.result = {
            "changed": False,
            "ref": self.ref,
            "engine_ref": engine_ref,
            "action": "none",
            "attempts": 0,
        }

    def check(self) -> None:
        problems = check_reference(self.name, self.tag, self.digest)
        if self.params["retries"] < 0 or self.params["backoff"] < 0:
            problems.append("retries and backoff must not be negative")
        stall = self.params["stall_timeout"]
        if stall <= 0:
            problems.append(f"stall_timeout must be a number of seconds above 0 (got {stall})")
        relay = self.params["relay"] or ""
        if self.params["source"] == "relay" and not re.match(r"^\[?[\w.:-]+\]?:\d{1,5}$", relay):
            problems.append(f"relay {relay!r} is not host:port")
        if problems:
            self.module.fail_json(msg="; ".join(problems))

    def run(self) -> None:
        self.check()
        try:
            self.ensure()
        except ImageFailure as failure:
            self.result["attempts"] = getattr(failure, "attempts", self.result["attempts"])
            self.module.fail_json(
                msg=failure_message(
                    failure.kind, self.source_ref, failure.detail, self.registry, self.params["engine"]
                ),
                failure=failure.kind,
                **self.result,
            )

    def ensure(self) -> None:
        params, module, result = self.params, self.module, self.result
        engine = Docker(module) if params["engine"] == "docker" else Containerd(module)
        found = engine.present(self.ref, self.name, self.digest, params["image_id"])
        if found is not None:
            module.exit_json(**result, **engine.describe(found, self.name))
        result.update(
            changed=True,
            action={"registry": "pull", "archive": "load", "url": "stream", "relay": "relay"}[
                params["source"]
            ],
        )
        if module.check_mode:
            module.exit_json(**result, msg=f"would {result['action']} {self.ref}")

        free = engine.free_gib()
        if free < params["min_free_gib"]:
            raise ImageFailure(
                "disk",
                f"{free:.1f} GiB free on {engine.storage}, at least {params['min_free_gib']:g} GiB wanted "
                "(image_min_free_gib)",
            )
        if params["source"] == "registry":
            action = lambda: engine.pull(self.ref, self.source_ref, self.registry)  # noqa: E731
        elif params["source"] == "archive":
            if not os.path.isfile(params["path"]):
                module.fail_json(msg=f"no image archive at {params['path']} on the node", **result)
            action = lambda: engine.load_archive(params["path"])  # noqa: E731
        elif params["source"] == "relay":
            port = int(params["relay"].rpartition(":")[2])
            relayed = relay_name(self.name, port) + (f"@{self.digest}" if self.digest else f":{self.tag}")
            action = lambda: engine.pull_relay(self.ref, relayed)  # noqa: E731
        else:
            action = lambda: engine.load_url(params["url"])  # noqa: E731
        result["attempts"] = with_retries(module, action)

        found = engine.present(
            self.ref,
            self.name,
            self.digest if params["source"] in ("registry", "relay") else "",
            params["image_id"],
        )
        if found is None:
            hint = f"the {params['source']} did not hold {self.ref}"
            if params["image_id"]:
                hint += f" with id {params['image_id']}"
            module.fail_json(msg=f"{hint}: check the name and tag against what the archive carries", **result)
        module.exit_json(**result, **engine.describe(found, self.name))


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "tag": {"type": "str", "default": "latest"},
            "digest": {"type": "str", "default": ""},
            "image_id": {"type": "str", "default": ""},
            "engine": {"type": "str", "choices": ["docker", "containerd"], "default": "docker"},
            "namespace": {"type": "str", "default": "k8s.io"},
            "source": {
                "type": "str",
                "choices": ["registry", "archive", "url", "relay"],
                "default": "registry",
            },
            "path": {"type": "path"},
            "url": {"type": "str"},
            "relay": {"type": "str"},
            "relay_token": {"type": "str", "default": "", "no_log": True},
            "username": {"type": "str", "default": ""},
            "password": {"type": "str", "default": "", "no_log": True},
            "plain_http": {"type": "bool", "default": False},
            "retries": {"type": "int", "default": 3},
            "backoff": {"type": "float", "default": 2.0},
            "min_free_gib": {"type": "float", "default": 0},
            "stall_timeout": {"type": "int", "default": 60},
        },
        required_if=[
            ("source", "archive", ["path"]),
            ("source", "url", ["url"]),
            ("source", "relay", ["relay"]),
        ],
        required_together=[("username", "password")],
        supports_check_mode=True,
    )
    ImageManager(module).run()


if __name__ == "__main__":
    main()
