"""The engine-API pull's pure parts: how a reference becomes fromImage and tag, the login header, and
where the engine's socket is. The pull itself runs against real engines in the lab's image tests."""

from __future__ import annotations

import base64
import json

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.docker_api import (
    DEFAULT_SOCKET,
    engine_socket,
    registry_auth_header,
    split_reference,
)

SWR = "swr.cn-southwest-2.myhuaweicloud.com"
DIGEST = "sha256:f68668b089ad0f0cfad50e824e61b3a3c797fb188bc80e89950e2a58f6eeed0f"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (f"{SWR}/ei/pytorch:2.1.0", (f"{SWR}/ei/pytorch", "2.1.0")),
        ("lab-registry:5000/npufleet/workload:lab-c2c7", ("lab-registry:5000/npufleet/workload", "lab-c2c7")),
        ("lab-registry:5000/npufleet/workload", ("lab-registry:5000/npufleet/workload", "latest")),
        (f"lab-registry:5000/npufleet/workload@{DIGEST}", ("lab-registry:5000/npufleet/workload", DIGEST)),
        ("ubuntu", ("ubuntu", "latest")),
    ],
)  # fmt: skip
def test_a_reference_becomes_from_image_and_tag(reference, expected):
    assert split_reference(reference) == expected


def test_the_login_header_is_the_engine_s_json_in_url_safe_base64():
    header = registry_auth_header("trainer", "p@ss/word+?", "lab-registry:5001")
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "username": "trainer",
        "password": "p@ss/word+?",
        "serveraddress": "lab-registry:5001",
    }


def test_the_socket_follows_docker_host_only_when_it_is_a_unix_socket():
    assert engine_socket({}) == DEFAULT_SOCKET
    assert engine_socket({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}) == "/run/user/1000/docker.sock"
    assert engine_socket({"DOCKER_HOST": "tcp://10.0.0.2:2375"}) == DEFAULT_SOCKET
