"""node_image_build run in-process against a stand-in ``docker`` CLI that records each call and, on
``build``, what it found in the secrets' files: the secret reaches the build in a 0600 file, never on
the command line, and the file is gone afterwards; a missing base image is pulled by the engine first;
the digest label decides whether to build; check mode builds nothing. The real engine (BuildKit in
Debian's docker.io) runs all of this in the lab's image build test."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import node_image_build

# `image inspect REF` answers from images.json; `pull` adds the image; `build` records its argv, the
# environment's DOCKER_BUILDKIT and, for each --secret, the file's mode and whether it holds the value,
# then adds the image with the --label it was given.
FAKE_DOCKER = f"""#!{sys.executable}
import json, os, stat, sys
from pathlib import Path

here = Path(__file__).resolve().parent
args = sys.argv[1:]
record = {{"argv": args, "buildkit": os.environ.get("DOCKER_BUILDKIT", "")}}
if args[:1] == ["--config"]:
    record["config"] = args[1]
    args = args[2:]
images = json.loads((here / "images.json").read_text()) if (here / "images.json").exists() else {{}}
if args[:1] == ["build"]:
    record["secrets"] = []
    for index, word in enumerate(args):
        if word == "--secret":
            spec = dict(part.split("=", 1) for part in args[index + 1].split(","))
            info, folder = os.stat(spec["src"]), os.stat(os.path.dirname(spec["src"]))
            record["secrets"].append({{"id": spec["id"], "src": spec["src"],
                                       "mode": stat.S_IMODE(info.st_mode),
                                       "folder_mode": stat.S_IMODE(folder.st_mode),
                                       "content": Path(spec["src"]).read_text()}})
with open(here / "calls.jsonl", "a", encoding="utf-8") as log:
    log.write(json.dumps(record) + "\\n")
if args[:2] == ["image", "inspect"]:
    if args[2] not in images:
        print("Error: No such image: " + args[2], file=sys.stderr)
        sys.exit(1)
    print(json.dumps([images[args[2]]]))
elif args[:1] == ["pull"]:
    images[args[-1]] = {{"Id": "sha256:" + "b" * 64, "Config": {{"Labels": {{}}}}}}
    (here / "images.json").write_text(json.dumps(images))
elif args[:1] == ["build"]:
    ref = args[args.index("--tag") + 1]
    label = args[args.index("--label") + 1].split("=", 1)
    images[ref] = {{"Id": "sha256:" + str(len(images)) * 64, "Config": {{"Labels": {{label[0]: label[1]}}}}}}
    (here / "images.json").write_text(json.dumps(images))
    print("#1 DONE 0.1s", file=sys.stderr)
else:
    sys.exit(2)
"""

BASE = "registry.example.com/atelier/pytorch_2_3_ascend:cann8"
SECRET = "machine pypi.example.com login ci password pw-unit-77d1\n"


@pytest.fixture
def docker(stand_in):
    return stand_in("docker", FAKE_DOCKER)


@pytest.fixture
def context(tmp_path):
    folder = tmp_path / "context"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\n"
        "RUN --mount=type=secret,id=netrc,target=/root/.netrc pip install npufleet-extra\n"
    )
    (folder / "requirements.txt").write_text("npufleet-extra==1.0.0\n")
    return folder


def calls(docker: Path) -> list[dict]:
    path = docker / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_module(capsys, context: Path, check_mode: bool = False, **args) -> dict:
    args = {
        "name": "registry.example.com/org/train",
        "tag": "1",
        "context": str(context),
        "build_args": {"BASE": BASE, "PIP_INDEX_URL": "https://pypi.example.com/simple/"},
        "secrets": [{"id": "netrc", "value": SECRET}],
        **args,
    }
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        node_image_build.main()
    return json.loads(capsys.readouterr().out)


def test_check_mode_says_it_would_build_and_builds_nothing(docker, context, capsys):
    result = run_module(capsys, context, check_mode=True)
    assert (result["changed"], result["action"]) == (True, "build")
    assert result["msg"] == "would build registry.example.com/org/train:1 (not on this host)"
    assert [call["argv"][:2] for call in calls(docker)] == [["image", "inspect"]]


def test_the_secret_reaches_the_build_in_a_0600_file_removed_after(docker, context, capsys, tmp_path):
    config = tmp_path / "docker-config"
    config.mkdir(mode=0o700)
    result = run_module(capsys, context, docker_config=str(config))
    assert (result["changed"], result["action"]) == (True, "build")
    assert result["msg"] == "built registry.example.com/org/train:1 (not on this host)"
    done = calls(docker)
    # The base, missing, was pulled by the engine with the build's login first.
    assert ["--config", str(config), "pull", "--quiet", BASE] in [call["argv"] for call in done]
    (build,) = [call for call in done if "build" in call["argv"]]
    assert build["buildkit"] == "1" and build["config"] == str(config)
    (secret,) = build["secrets"]
    assert (secret["id"], secret["mode"], secret["folder_mode"], secret["content"]) == (
        "netrc",
        0o600,
        0o700,
        SECRET,
    )
    # Only the file's path is on the command line, the file lay in the login's folder, and it is gone.
    assert not any("pw-unit-77d1" in word for call in done for word in call["argv"])
    assert Path(secret["src"]).parent.parent == config and not Path(secret["src"]).parent.exists()
    assert list(config.iterdir()) == []
    assert (
        "--build-arg" in build["argv"] and "PIP_INDEX_URL=https://pypi.example.com/simple/" in build["argv"]
    )
    # What Ansible returns has the secret's value masked.
    assert "pw-unit-77d1" not in json.dumps(result)


def test_without_a_login_the_secret_lies_in_the_staging_folder_given(docker, context, capsys, tmp_path):
    # No login, so no client config: the secrets' files go in secrets_dir (the role's staging folder, which
    # a stopped run's clean-up removes), not in the system's temporary folder.
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    run_module(capsys, context, secrets_dir=str(staging))
    (build,) = [call for call in calls(docker) if "build" in call["argv"]]
    (secret,) = build["secrets"]
    assert Path(secret["src"]).parent.parent == staging and "config" not in build
    assert list(staging.iterdir()) == []


def test_an_unchanged_context_builds_nothing_and_a_changed_one_builds_again(docker, context, capsys):
    first = run_module(capsys, context)
    again = run_module(capsys, context)
    assert (again["changed"], again["action"]) == (False, "none")
    assert again["build_digest"] == first["build_digest"] == again["previous_digest"]
    assert run_module(capsys, context, check_mode=True)["changed"] is False
    builds = len([call for call in calls(docker) if "build" in call["argv"]])
    (context / "requirements.txt").write_text("npufleet-extra==1.0.1\n")
    changed = run_module(capsys, context)
    assert changed["msg"] == "built registry.example.com/org/train:1 (built from something else)"
    assert changed["previous_digest"] == first["build_digest"] != changed["build_digest"]
    assert len([call for call in calls(docker) if "build" in call["argv"]]) == builds + 1


def test_a_missing_dockerfile_and_a_bad_secret_id_are_refused_before_anything(docker, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_module(capsys, empty, secrets=[{"id": "net rc", "value": SECRET}])
    assert result["failed"] is True
    assert f"no Dockerfile at {empty}/Dockerfile on this host" in result["msg"]
    assert "secret id 'net rc' must be letters, digits" in result["msg"]
    assert calls(docker) == []
    assert stat.S_ISDIR(empty.stat().st_mode)


def test_a_secret_id_of_dots_is_refused_not_a_traceback(docker, context, capsys):
    # The secret's file is named by its id: ".." would be the folder above, and os.open fails.
    result = run_module(capsys, context, secrets=[{"id": "..", "value": SECRET}])
    assert result["failed"] is True
    assert "secret id '..' must be letters, digits, '.', '_' or '-', not only dots" in result["msg"]
    assert calls(docker) == []
