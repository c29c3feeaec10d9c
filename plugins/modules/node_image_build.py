#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_image_build
short_description: Build a container image from a Dockerfile with BuildKit, unless it is already built
description:
  - Builds O(name):O(tag) from O(dockerfile) and the build context O(context) with the Docker engine on
    the host it runs on, through BuildKit (C(DOCKER_BUILDKIT=1 docker build)), and labels the image
    with the digest of what it was built from (C(io.npufleet.build-digest)).
  - Does nothing when the image of that name already carries the same digest, that is the same
    Dockerfile, the same context files, the same build args, target and secret ids.
  - Secrets (a pip index password, a token) reach the build as BuildKit secrets, which a Dockerfile
    mounts for one C(RUN) (C(RUN --mount=type=secret,id=ID,target=/root/.netrc ...)); they are in no
    layer, no history entry, no command line and no output. Each is written for the build into a 0600
    file in a 0700 folder, removed when the build ends, whatever happened.
  - Build args are for what is not secret, since they are recorded in the image's history.
  - C(docker buildx) is not needed (Debian's C(docker.io) has no buildx plugin); the classic CLI's
    BuildKit takes C(--secret) since Docker 18.09. C(RUN --mount) needs no C(# syntax=) line on
    Docker 20.10 and later (a syntax line would pull the frontend image from Docker Hub).
version_added: "0.3.0"
author:
  - npufleet contributors
options:
  name:
    description: Repository of the image to build, with the registry host it is pushed to.
    type: str
    required: true
  tag:
    description: Tag of the image to build.
    type: str
    default: latest
  context:
    description: Folder on this host that is the build context.
    type: path
    required: true
  dockerfile:
    description: The Dockerfile on this host (default C(Dockerfile) in O(context)).
    type: path
  build_args:
    description: C(--build-arg) values. Recorded in the image's history, so never a secret.
    type: dict
    default: {}
  target:
    description: Stage of a multi-stage Dockerfile to build (empty, the last).
    type: str
    default: ""
  secrets:
    description:
      - BuildKit secrets, each mounted by a C(RUN --mount=type=secret,id=ID) of the Dockerfile.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: The secret's id in the Dockerfile.
        type: str
        required: true
      value:
        description: The secret's content (a netrc, a pip.conf, a token). Never logged.
        type: str
        required: true
        no_log: true
  docker_config:
    description:
      - Docker client config folder for the build (C(docker --config)), holding the registry login
        the base image is pulled with; empty, the client's default.
    type: path
    default: ""
  secrets_dir:
    description:
      - Private folder (mode 0700, the role's staging folder) in which the secrets' files are written for
        the length of the build. A run killed during the build leaves them there, so whatever removes
        that folder removes them; empty, beside O(docker_config), else in the system's temporary folder.
    type: path
    default: ""
  pull:
    description:
      - Pull the base images even when the engine holds them, so a newer base under the same tag is
        built on. Either way the engine pulls them (C(docker pull), with the login of O(docker_config)),
        not BuildKit, which in Docker 20.10 reaches a registry over HTTPS only.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Computes the digest and reads the image's label; reports whether it would build.
  diff_mode:
    support: none
    description: RV(build_digest) and RV(previous_digest) say what changed.
requirements:
  - C(docker) CLI and engine 18.09 or later with BuildKit (Debian's C(docker.io) 20.10 has it).
notes:
  - A base image named by tag is used as the engine holds it unless O(pull) is set; the FROM lines' images
    (with the ARGs before the first FROM filled in) are pulled by the engine first when it lacks them.
  - Pulling a changed base does not change RV(build_digest); a build on a newer base needs a change in the
    Dockerfile, the context or the build args (a tag or digest in FROM, say).
"""

EXAMPLES = r"""
- name: Build the training image on top of the base image, with the pip index login as a secret
  npufleet.ascend.node_image_build:
    name: swr.cn-southwest-2.myhuaweicloud.com/org/mindspeed-llm
    tag: "1.0"
    context: /var/tmp/build/context
    build_args:
      PIP_INDEX_URL: https://pypi.example.com/simple/
    secrets:
      - id: netrc
        value: "machine pypi.example.com login ci password {{ vault_pip_password }}"
  no_log: true
"""

RETURN = r"""
ref:
  description: The image built (or found).
  returned: always
  type: str
action:
  description: C(build) or C(none).
  returned: always
  type: str
build_digest:
  description: Digest of the Dockerfile, the context and the build's settings (the image's label).
  returned: always
  type: str
previous_digest:
  description: The digest the image of that name carried before (empty, none or no image).
  returned: always
  type: str
image_id:
  description: Id of the image (after the build, or as found).
  returned: when the image is present
  type: str
log_tail:
  description: The build's last output lines (secrets masked).
  returned: when the image was built or the build failed
  type: str
msg:
  description: What was or would be done.
  returned: always
  type: str
"""

import json
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.container_image import (
    BUILD_LABEL,
    base_images,
    build_digest,
    check_reference,
    classify_failure,
    failure_message,
    registry_host,
)

_SECRET_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class ImageBuilder:
    """Probe the image's label, decide, then build (or, in check mode, say that it would)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = params = module.params
        self.ref = f"{params['name']}:{params['tag']}"
        self.dockerfile = params["dockerfile"] or os.path.join(params["context"], "Dockerfile")
        self.docker = module.get_bin_path("docker", required=True)
        self.result = {"changed": False, "ref": self.ref, "action": "none", "previous_digest": ""}

    def check(self) -> None:
        params = self.params
        problems = check_reference(params["name"], params["tag"], "")
        if not os.path.isdir(params["context"]):
            problems.append(f"the build context {params['context']} is not a folder on this host")
        if not os.path.isfile(self.dockerfile):
            problems.append(f"no Dockerfile at {self.dockerfile} on this host")
        ids = [secret["id"] for secret in params["secrets"]]
        for secret_id in ids:
            # "." and ".." are file names of their own: the secret's file is named by its id.
            if not secret_id.strip(".") or not set(secret_id) <= _SECRET_ID_CHARS:
                problems.append(
                    f"secret id {secret_id!r} must be letters, digits, '.', '_' or '-', not only dots"
                )
        if len(set(ids)) != len(ids):
            problems.append("secret ids must be unique")
        if problems:
            self.module.fail_json(msg="; ".join(problems), **self.result)

    def labelled_digest(self):
        """The build digest the image of that name carries: None when there is no such image."""
        rc, out, _ = self.module.run_command([self.docker, "image", "inspect", self.ref])
        if rc != 0:
            return None, ""
        found = json.loads(out)[0]
        labels = (found.get("Config") or {}).get("Labels") or {}
        return labels.get(BUILD_LABEL, ""), found["Id"]

    def run(self) -> None:
        self.check()
        params, module, result = self.params, self.module, self.result
        wanted = build_digest(
            params["context"],
            self.dockerfile,
            params["build_args"],
            params["target"],
            [secret["id"] for secret in params["secrets"]],
        )
        result["build_digest"] = wanted
        found, image_id = self.labelled_digest()
        result["previous_digest"] = found or ""
        if found == wanted:
            module.exit_json(
                **result, image_id=image_id, msg=f"{self.ref} is built from this Dockerfile and context"
            )
        result.update(changed=True, action="build")
        why = "not on this host" if found is None else "built from something else"
        if module.check_mode:
            module.exit_json(**result, msg=f"would build {self.ref} ({why})")
        self.pull_bases()
        log = self.build(wanted)
        _, image_id = self.labelled_digest()
        module.exit_json(**result, image_id=image_id, log_tail=log, msg=f"built {self.ref} ({why})")

    def client(self) -> list:
        argv = [self.docker]
        if self.params["docker_config"]:
            argv += ["--config", self.params["docker_config"]]
        return argv

    def pull_bases(self) -> None:
        """Pull the FROM images the engine lacks (all of them with O(pull)) through the engine's own pull,
        with the build's login. BuildKit would use them as the engine holds them; left to itself, Docker
        20.10's BuildKit reaches a registry over HTTPS only, whatever the engine's insecure-registries."""
        with open(self.dockerfile) as handle:
            bases = base_images(handle.read(), self.params["build_args"])
        for base in bases:
            rc, _, _ = self.module.run_command([self.docker, "image", "inspect", base])
            if rc == 0 and not self.params["pull"]:
                continue
            rc, out, err = self.module.run_command([*self.client(), "pull", "--quiet", base])
            if rc != 0:
                detail = (err or out).strip()
                self.module.fail_json(
                    msg="the base image of the build: "
                    + failure_message(classify_failure(detail), base, detail, registry_host(base), "docker"),
                    **self.result,
                )

    def build(self, digest: str) -> str:
        params = self.params
        # The secrets' folder: in the role's private staging folder, which a stopped run's clean-up removes.
        folder = tempfile.mkdtemp(
            prefix="npufleet-build-secrets.", dir=params["secrets_dir"] or params["docker_config"] or None
        )
        try:
            argv = [
                *self.client(),
                "build",
                "--progress",
                "plain",
                "--file",
                self.dockerfile,
                "--tag",
                self.ref,
            ]
            argv += ["--label", f"{BUILD_LABEL}={digest}"]
            if params["target"]:
                argv += ["--target", params["target"]]
            for key in sorted(params["build_args"]):
                argv += ["--build-arg", f"{key}={params['build_args'][key]}"]
            for secret in params["secrets"]:
                path = os.path.join(folder, secret["id"])
                # 0600 from the start (no window with wider modes); only its path goes on the command line.
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(handle, "w") as secret_file:
                    secret_file.write(secret["value"])
                argv += ["--secret", f"id={secret['id']},src={path}"]
            argv.append(params["context"])
            rc, out, err = self.module.run_command(
                argv, environ_update={"DOCKER_BUILDKIT": "1", "LC_ALL": "C"}
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        # BuildKit writes its progress to stderr. AnsibleModule masks the secrets' values in what it returns.
        tail = "\n".join((err + out).strip().splitlines()[-40:])
        if rc != 0:
            self.module.fail_json(
                msg=f"building {self.ref} from {self.dockerfile} failed (docker build exit {rc}): "
                "the build's last lines (log_tail) show the step that failed",
                rc=rc,
                log_tail=tail,
                **self.result,
            )
        return tail


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "tag": {"type": "str", "default": "latest"},
            "context": {"type": "path", "required": True},
            "dockerfile": {"type": "path"},
            "build_args": {"type": "dict", "default": {}},
            "target": {"type": "str", "default": ""},
            "secrets": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "id": {"type": "str", "required": True},
                    "value": {"type": "str", "required": True, "no_log": True},
                },
            },
            "docker_config": {"type": "path", "default": ""},
            "secrets_dir": {"type": "path", "default": ""},
            "pull": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    ImageBuilder(module).run()


if __name__ == "__main__":
    main()
