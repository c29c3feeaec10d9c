"""Image references, ctr listings and pull failures, from the engines' real messages."""

from __future__ import annotations

import pytest
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
    repository_path,
)

# Messages as docker 20.10.24 and ctr 1.6 printed them in the lab (the first of each kind recorded
# there against the lab registry), then forms from the engines' sources and issue threads.
MESSAGES = {
    "credentials": [
        'Error response from daemon: Head "http://probe-registry:5001/v2/npufleet/workload/manifests/'
        'lab-4c5f2914e48f": no basic auth credentials',
        'ctr: failed to resolve reference "probe-registry:5001/npufleet/workload:lab-4c5f2914e48f": pulling '
        "from host probe-registry:5001 failed with status code [manifests lab-4c5f2914e48f]: "
        "401 Unauthorized",
        'Error response from daemon: Get "http://lab-registry:5001/v2/": unauthorized: '
        "authentication required",
        "Error response from daemon: login attempt to http://lab-registry:5001/v2/ failed with status: "
        "401 Unauthorized",
        "Error response from daemon: pull access denied for x/y, repository does not exist or may require "
        "'docker login': denied: requested access to the resource is denied",
        'ctr: failed to resolve reference "lab-registry:5001/npufleet/workload:1": failed to authorize: '
        "failed to fetch anonymous token: unexpected status: 401 Unauthorized",
    ],
    "unknown_image": [
        "Error response from daemon: manifest for probe-registry:5000/npufleet/nope:1 not found: "
        "manifest unknown: manifest unknown",
        'ctr: failed to resolve reference "probe-registry:5000/npufleet/nope:1": '
        "probe-registry:5000/npufleet/nope:1: not found",
        "Error response from daemon: manifest for lab-registry:5000/npufleet/workload:nope not found: "
        "manifest unknown: manifest unknown",
        'ctr: failed to resolve reference "lab-registry:5000/npufleet/nope:1": '
        "lab-registry:5000/npufleet/nope:1: not found",
    ],
    "unreachable": [
        'Error response from daemon: Get "https://probe-registry:5999/v2/": dial tcp 192.168.128.3:5999: '
        "connect: connection refused",
        'ctr: failed to resolve reference "probe-registry:5999/npufleet/nope:1": failed to do request: Head '
        '"http://probe-registry:5999/v2/npufleet/nope/manifests/1": dial tcp 192.168.128.3:5999: connect: '
        "connection refused",
        'Error response from daemon: Get "http://nowhere:5000/v2/": dial tcp: lookup nowhere on '
        "127.0.0.11:53: no such host",
        'Error response from daemon: Get "http://10.0.0.9:5000/v2/": dial tcp 10.0.0.9:5000: connect: '
        "connection refused",
        'Error response from daemon: Get "https://swr.example.com/v2/": net/http: TLS handshake timeout',
        "http://node1:8765/x/image.tar: <urlopen error [Errno 111] Connection refused>",
    ],
    "plain_http": [
        'Error response from daemon: Get "https://lab-registry:5000/v2/": http: server gave HTTP response '
        "to HTTPS client",
    ],
    "disk": [
        "write /var/lib/docker/tmp/GetImageBlob123: no space left on device",
    ],
}


@pytest.mark.parametrize(
    ("kind", "message"), [(kind, message) for kind, messages in MESSAGES.items() for message in messages]
)
def test_each_engine_message_gets_its_kind(kind, message):
    assert classify_failure(message) == kind


def test_only_network_failures_are_retried():
    assert is_retryable("unreachable")
    assert not any(
        is_retryable(kind) for kind in ("credentials", "unknown_image", "plain_http", "disk", "other")
    )
    assert classify_failure("something new went wrong") == "other"


def test_failure_message_names_problem_fix_and_detail():
    text = failure_message(
        "credentials", "r:5001/a:1", "unauthorized: authentication required", "r:5001", "docker"
    )
    assert text.startswith("the registry refused the login (credentials) while getting r:5001/a:1")
    assert "check the username and password given for r:5001" in text
    assert text.endswith("docker said: unauthorized: authentication required")


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("swr.cn-southwest-2.myhuaweicloud.com/ai/image", "swr.cn-southwest-2.myhuaweicloud.com"),
        ("npufleet-lab-registry:5000/npufleet/workload", "npufleet-lab-registry:5000"),
        ("localhost/x", "localhost"),
        ("ubuntu", "docker.io"),
        ("library/ubuntu", "docker.io"),
    ],
)
def test_registry_host(name, host):
    assert registry_host(name) == host


def test_references_are_checked():
    assert check_reference("lab-registry:5000/npufleet/workload", "lab-1a2b", "") == []
    assert check_reference("registry.example.com/ai/x", "v1", "sha256:" + "a" * 64) == []
    problems = check_reference("Registry.example.com/AI/X:v1", "bad tag", "sha256:short")
    assert len(problems) == 4
    assert "carries a tag or digest" in problems[1]
    assert "not a valid tag" in problems[2]
    assert "sha256:<64 hex digits>" in problems[3]


# 'ctr -n k8s.io images ls' (containerd 1.6) after a pull from the lab registry.
CTR_LISTING = (
    "REF                                                                     TYPE                  "
    "                               DIGEST                                                                  "
    "SIZE      PLATFORMS   LABELS                          \n"
    "probe-registry:5000/npufleet/workload:lab-4c5f2914e48f                  application/vnd.docker.dis"
    "tribution.manifest.v2+json sha256:49cc926443afe52db7953dffd2684961b8c3e43bc6623c8d5519ae7df161b1f8 229"
    ".0 MiB linux/amd64 io.cri-containerd.image=managed \n"
    "sha256:251907f579da2ceb2afb50ed7780e25dd662776215e05161fb586e32a9f1a786 application/vnd.docker.dis"
    "tribution.manifest.v2+json sha256:49cc926443afe52db7953dffd2684961b8c3e43bc6623c8d5519ae7df161b1f8 229"
    ".0 MiB linux/amd64 io.cri-containerd.image=managed \n"
)


def test_ctr_listing_and_normalized_refs():
    images = parse_ctr_images(CTR_LISTING)
    digest = "sha256:49cc926443afe52db7953dffd2684961b8c3e43bc6623c8d5519ae7df161b1f8"
    assert images["probe-registry:5000/npufleet/workload:lab-4c5f2914e48f"] == {
        "type": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": digest,
    }
    assert len(images) == 2
    assert normalize_ref("busybox:1") == "docker.io/library/busybox:1"
    assert (
        normalize_ref("lab-registry:5000/npufleet/workload:lab-1")
        == "lab-registry:5000/npufleet/workload:lab-1"
    )
    assert normalize_ref("org/x:1") == "docker.io/org/x:1"
    assert parse_ctr_images("") == {}


def test_relay_names_and_the_digest_they_keep():
    name = "npufleet-lab-registry:5000/npufleet/workload"
    digest = "sha256:" + "4" * 64
    assert repository_path(name) == "npufleet/workload"
    assert repository_path("ubuntu") == "library/ubuntu"
    assert relay_name(name, 8765) == "127.0.0.1:8765/npufleet/workload"
    # RepoDigests as Docker lists them after a pull from the registry, and after one through the relay.
    assert holds_digest([f"{name}@{digest}"], name, digest)
    assert holds_digest([f"127.0.0.1:8765/npufleet/workload@{digest}"], name, digest)
    assert not holds_digest([f"127.0.0.1:8765/npufleet/workload@sha256:{'5' * 64}"], name, digest)
    # The same digest under another repository, or another host than the loopback relay, is not it.
    assert not holds_digest([f"127.0.0.1:8765/other/workload@{digest}"], name, digest)
    assert not holds_digest([f"elsewhere:5000/npufleet/workload@{digest}"], name, digest)
    assert not holds_digest([], name, digest)
