"""node_image run in-process against a stand-in ``docker``: an image already there changes nothing,
a missing one is pulled (and tagged when pulled by digest), and check mode only says it would pull."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.npufleet.ascend.plugins.modules import node_image

# `docker image inspect REF` answers from images.json (a ref -> inspect entry map); `pull` adds the
# ref it pulls, `tag` copies one; every call is logged.
FAKE_DOCKER = f"""#!{sys.executable}
import json, sys
from pathlib import Path

here = Path(__file__).resolve().parent
args = sys.argv[1:]
with open(here / "calls.jsonl", "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
images = json.loads((here / "images.json").read_text()) if (here / "images.json").exists() else {{}}
if "--config" in args:
    args = args[:args.index("--config")] + args[args.index("--config") + 2:]
if args[:2] == ["info", "--format"]:
    print(here)
elif args[:2] == ["image", "inspect"]:
    if args[2] not in images:
        print("Error: No such image: " + args[2], file=sys.stderr)
        sys.exit(1)
    print(json.dumps([images[args[2]]]))
elif args[0] == "pull":
    ref = args[-1]
    name = ref.split("@")[0]
    digests = [ref if "@" in ref else name + "@sha256:" + "2" * 64]
    images[ref] = {{"Id": "sha256:" + "1" * 64, "RepoDigests": digests}}
    (here / "images.json").write_text(json.dumps(images))
elif args[0] == "tag":
    images[args[2]] = images[args[1]]
    (here / "images.json").write_text(json.dumps(images))
else:
    sys.exit(2)
"""


@pytest.fixture
def docker(stand_in):
    return stand_in("docker", FAKE_DOCKER)


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
    assert not [call for call in calls(docker) if "pull" in call]


def test_pull_then_a_rerun_changes_nothing(docker, capsys):
    first = run_module(capsys)
    assert (first["changed"], first["action"], first["attempts"]) == (True, "pull", 1)
    assert first["image_id"] == "sha256:" + "1" * 64
    pulls = [call for call in calls(docker) if "pull" in call]
    assert len(pulls) == 1 and pulls[0][-3:] == ["pull", "--quiet", "registry.example.com/ai/vllm-ascend:v1"]
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
