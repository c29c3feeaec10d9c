"""What an image build is made from (the digest node_image_build labels an image with) and which base
images a Dockerfile names; the lab's image build test runs both against a real engine."""

from __future__ import annotations

import os

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.container_image import base_images, build_digest


@pytest.fixture
def context(tmp_path):
    folder = tmp_path / "context"
    (folder / "scripts").mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM base\nCOPY . /app\n")
    (folder / "scripts" / "install.sh").write_text("pip install -r requirements.txt\n")
    (folder / "requirements.txt").write_text("transformers==4.45.0\n")
    return folder


def digest_of(folder, **changes):
    settings = {
        "build_args": {"PIP_INDEX_URL": "https://pypi.example.com/simple/"},
        "target": "",
        "secret_ids": [],
    }
    settings.update(changes)
    return build_digest(
        str(folder),
        str(folder / "Dockerfile"),
        settings["build_args"],
        settings["target"],
        settings["secret_ids"],
    )


def test_the_same_inputs_give_the_same_digest(context, tmp_path):
    first = digest_of(context)
    assert first.startswith("sha256:") and len(first) == 71
    assert digest_of(context) == first
    # The same files elsewhere (a new staging folder each run) and written in another order: the same.
    other = tmp_path / "elsewhere"
    (other / "scripts").mkdir(parents=True)
    (other / "requirements.txt").write_text("transformers==4.45.0\n")
    (other / "scripts" / "install.sh").write_text("pip install -r requirements.txt\n")
    (other / "Dockerfile").write_text("FROM base\nCOPY . /app\n")
    assert digest_of(other) == first


@pytest.mark.parametrize(
    "change",
    [
        lambda c: (c / "requirements.txt").write_text("transformers==4.44.2\n"),
        lambda c: (c / "Dockerfile").write_text("FROM base\nCOPY . /opt/app\n"),
        lambda c: (c / "scripts" / "install.sh").chmod(0o755),
        lambda c: (c / "scripts" / "new.sh").write_text(""),
        lambda c: (c / "requirements.txt").rename(c / "requirements-train.txt"),
        lambda c: (c / "empty").mkdir(),
        lambda c: os.symlink("requirements.txt", c / "link.txt"),
    ],
    ids=["content", "dockerfile", "mode", "new file", "rename", "empty folder", "link"],
)
def test_any_change_to_the_dockerfile_or_context_changes_the_digest(context, change):
    before = digest_of(context)
    change(context)
    assert digest_of(context) != before


def test_build_settings_count_but_secret_values_cannot(context):
    before = digest_of(context)
    assert digest_of(context, build_args={"PIP_INDEX_URL": "https://mirror.example.com/simple/"}) != before
    assert digest_of(context, target="runtime") != before
    assert digest_of(context, secret_ids=["netrc"]) != before
    # build_digest is never given the secrets' values: only their ids, whatever order they come in.
    assert digest_of(context, secret_ids=["a", "b"]) == digest_of(context, secret_ids=["b", "a"])


# The manual's route: FROM its base image; then forms Dockerfiles use for the base (an ARG before the
# first FROM, with a default or a build arg), multi-stage builds and scratch.
MANUAL_BASE = (
    "swr.cn-southwest-2.myhuaweicloud.com/atelier/pytorch_2_3_ascend:"
    "pytorch_2.3.1-cann_8.0.rc3-py_3.10-hce_2.0.2409-aarch64-snt9b-20241213131522-aafe527"
)


@pytest.mark.parametrize(
    ("dockerfile", "build_args", "expected"),
    [
        (f"FROM {MANUAL_BASE}\nRUN pip install transformers==4.45.0\n", {}, [MANUAL_BASE]),
        (
            "ARG BASE\nFROM ${BASE}\nARG PIP_INDEX_URL\nRUN pip install x\n",
            {"BASE": MANUAL_BASE},
            [MANUAL_BASE],
        ),
        ("ARG BASE=registry.example.com/base:1\nFROM $BASE\n", {}, ["registry.example.com/base:1"]),
        ("ARG TAG=1\nFROM registry.example.com/base:${TAG}\n", {"TAG": "2"}, ["registry.example.com/base:2"]),
        (
            "# syntax comment\nFROM --platform=linux/arm64 registry.example.com/build:1 AS build\n"
            "RUN make\nFROM registry.example.com/run:1\nCOPY --from=build /out /out\n"
            "FROM build AS again\nFROM scratch\n",
            {},
            ["registry.example.com/build:1", "registry.example.com/run:1"],
        ),
        (
            "FROM \\\n  registry.example.com/base:1 \\\n  AS base\nFROM base\n",
            {},
            ["registry.example.com/base:1"],
        ),
    ],
    ids=["manual", "arg", "arg default", "arg in tag", "multi-stage", "continued line"],
)
def test_base_images_are_the_from_lines_with_their_args(dockerfile, build_args, expected):
    assert base_images(dockerfile, build_args) == expected
