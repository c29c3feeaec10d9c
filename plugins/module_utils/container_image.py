# Copyright: npufleet contributors
# Apache License 2.0
"""Pure logic for moving container images onto nodes: image references, reading ``ctr images ls``,
telling apart the ways a pull fails (each gets its own message and fix), and the digest of what an
image build is made from."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat

# What each failure kind means for the user, and whether trying again can help.
FAILURES = {
    "credentials": ("the registry refused the login", False),
    "unknown_image": ("the registry has no such image", False),
    "unreachable": ("the registry cannot be reached", True),
    "plain_http": ("the registry speaks plain HTTP and the engine expects HTTPS", False),
    "disk": ("too little disk", False),
    "other": ("the engine failed", False),
}

# Checked in order: the first kind whose pattern matches the engine's message wins.
_PATTERNS = (
    ("disk", r"no space left on device"),
    (
        "credentials",
        r"unauthorized|authentication required|incorrect username or password|401 unauthorized"
        r"|no basic auth credentials"
        r"|denied: requested access|access to the resource is denied|failed to authorize",
    ),
    (
        "plain_http",
        r"server gave http response to https client|http: server gave http response"
        r"|tls: first record does not look like a tls handshake",
    ),
    (
        "unknown_image",
        r"manifest unknown|not found: manifest|repository does not exist|name unknown"
        r"|no such image|not found$|: not found\b|failed to resolve reference .*: not found",
    ),
    (
        "unreachable",
        r"no such host|connection refused|i/o timeout|network is unreachable|no route to host"
        r"|tls handshake timeout|connection reset by peer|context deadline exceeded"
        r"|temporary failure in name resolution|server misbehaving|eof$|unexpected eof"
        r"|timeout awaiting response headers|remote end closed connection|urlopen error",
    ),
)


def classify_failure(message: str) -> str:
    """The kind of a failed pull, login or load, from the engine's own message."""
    text = (message or "").strip().lower()
    for kind, pattern in _PATTERNS:
        if any(re.search(pattern, line) for line in text.splitlines() or [text]):
            return kind
    return "other"


def is_retryable(kind: str) -> bool:
    return FAILURES.get(kind, FAILURES["other"])[1]


def failure_message(kind: str, ref: str, detail: str, registry: str, engine: str) -> str:
    """One sentence that names the problem and the fix, then the engine's own words."""
    fixes = {
        "credentials": (f"check the username and password given for {registry} (or their vaulted values)"),
        "unknown_image": f"check the name, tag and digest: {ref} is not in {registry}",
        "unreachable": (
            f"check that {registry} resolves and answers from the node (proxy, security group, DNS), "
            "or get the image another way: from an archive, or fanned out from a node that can reach it"
        ),
        "plain_http": (
            f"list {registry} in the Docker engine's insecure-registries (docker), or allow plain HTTP "
            "(option plain_http, containerd)"
        ),
        "disk": (
            f"free space where {engine} keeps images (docker system prune, a bigger data disk, or "
            "the engine's data root on the data disk)"
        ),
        "other": "see the engine's message",
    }
    what = FAILURES.get(kind, FAILURES["other"])[0]
    short = " ".join((detail or "").split())[-600:]
    return f"{what} ({kind}) while getting {ref}: {fixes.get(kind, fixes['other'])}. {engine} said: {short}"


def registry_host(name: str) -> str:
    """The registry part of an image name, as Docker decides it (docker.io when there is none)."""
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def repository_path(name: str) -> str:
    """The repository without its registry host (``library/`` added to Docker Hub's short names)."""
    host = registry_host(name)
    if name.startswith(host + "/"):
        return name[len(host) + 1 :]
    return name if "/" in name else f"library/{name}"


# Fan-out by relay: every node pulls from its own loopback, where node_image forwards to the seed's
# relay. Docker allows plain HTTP to 127.0.0.0/8 without insecure-registries.
RELAY_HOST = "127.0.0.1"


def relay_name(name: str, port: int) -> str:
    """The name an image has when pulled through the relay on this node's loopback."""
    return f"{RELAY_HOST}:{port}/{repository_path(name)}"


def holds_digest(repo_digests: list[str], name: str, digest: str) -> bool:
    """Whether an image's RepoDigests show it is ``name@digest``: pulled from the registry, or through
    a fan-out relay (the same manifest digest, under the relay's loopback name)."""
    path = repository_path(name)
    for entry in repo_digests or []:
        repository, _, found = entry.partition("@")
        if found != digest:
            continue
        if repository == name:
            return True
        host, _, rest = repository.partition("/")
        if host.startswith(RELAY_HOST + ":") and rest == path:
            return True
    return False


_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_reference(name: str, tag: str, digest: str) -> list[str]:
    """Problems with an image name, tag and digest; empty when they are well formed."""
    problems = []
    # Host names may carry upper-case letters only in the registry part; lower-case the rest check.
    host = registry_host(name) if "/" in name else ""
    rest = name[len(host) + 1 :] if host and name.startswith(host + "/") else name
    if not name or (rest and not _NAME.match(rest)):
        problems.append(
            f"image name {name!r} is not a repository name "
            "(a lower-case path like registry.example.com/org/image)"
        )
    if "@" in name or (":" in name.rpartition("/")[2]):
        problems.append(f"image name {name!r} carries a tag or digest: give it as the tag or the digest")
    if not _TAG.match(tag or ""):
        problems.append(f"image tag {tag!r} is not a valid tag (letters, digits, '_', '.', '-', at most 128)")
    if digest and not _DIGEST.match(digest):
        problems.append(f"image digest {digest!r} is not of the form sha256:<64 hex digits>")
    return problems


def parse_ctr_images(text: str) -> dict[str, dict]:
    """``ctr images ls`` as {ref: {"digest", "type", "size", "platforms"}}."""
    images = {}
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines or not lines[0].startswith("REF"):
        return images
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 3:
            continue
        ref, media_type, digest = fields[:3]
        images[ref] = {"type": media_type, "digest": digest}
    return images


def normalize_ref(ref: str) -> str:
    """The fully qualified form containerd stores (docker.io/library/ for short names)."""
    host = registry_host(ref)
    if host != "docker.io" or ref.startswith("docker.io/"):
        return ref
    return (
        f"docker.io/{ref}" if "/" in ref.partition(":")[0].partition("@")[0] else f"docker.io/library/{ref}"
    )


# The label a built image carries: the digest of what it was built from (build_digest), which is how a
# later run sees that the Dockerfile, the context and the build's settings have not changed.
BUILD_LABEL = "io.npufleet.build-digest"


def build_digest(context: str, dockerfile: str, build_args: dict, target: str, secret_ids: list) -> str:
    """sha256 of everything a build is made from: the Dockerfile's text, every file of the context
    (its path, whether it is executable, its bytes; a link's target), the build args, the target stage
    and the secrets' ids. Secret values are left out on purpose: a digest of a password in an image
    label could be checked against guesses. Files ``.dockerignore`` excludes count too, so changing
    one builds again (a needless build, never a missed one)."""
    digest = hashlib.sha256()

    def add(kind: str, *parts: bytes) -> None:
        digest.update(kind.encode())
        for part in parts:
            # Length-prefixed, so no two different inputs run together into the same bytes.
            digest.update(str(len(part)).encode() + b":" + part)

    with open(dockerfile, "rb") as handle:
        add("dockerfile", handle.read())
    for folder, dirs, files in os.walk(context):
        dirs.sort()
        relative_folder = os.path.relpath(folder, context)
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            path = os.path.join(folder, name)
            relative = os.path.normpath(os.path.join(relative_folder, name)).encode()
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                add("link", relative, os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                add("file", relative, b"x" if info.st_mode & 0o111 else b"-")
                file_digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        file_digest.update(block)
                add("bytes", file_digest.digest())
        if not files and not dirs and relative_folder != ".":
            add("empty-dir", relative_folder.encode())
    add("args", json.dumps(build_args or {}, sort_keys=True).encode())
    add("target", (target or "").encode())
    add("secrets", json.dumps(sorted(secret_ids or [])).encode())
    return "sha256:" + digest.hexdigest()


_ARG_REFERENCE = re.compile(r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))")


def base_images(dockerfile_text: str, build_args: dict) -> list:
    """The images a Dockerfile's FROM lines name, with the ARGs before the first FROM (and the build
    args given) filled in: what the engine must hold or pull before BuildKit starts. Stages named
    earlier (``FROM builder``) and ``scratch`` are not images."""
    args = {}
    stages = set()
    images = []
    seen_from = False
    logical = []
    for line in dockerfile_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not logical:
            continue
        if stripped.endswith("\\"):
            logical.append(stripped[:-1])
            continue
        logical.append(stripped)
        instruction = " ".join(part for part in logical if part)
        logical = []
        words = instruction.split()
        if not words:
            continue
        keyword = words[0].upper()
        if keyword == "ARG" and not seen_from and len(words) > 1:
            for declared in words[1:]:
                name, _, default = declared.partition("=")
                args[name] = str(build_args[name]) if name in (build_args or {}) else default.strip("\"'")
        elif keyword == "FROM":
            seen_from = True
            rest = [word for word in words[1:] if not word.startswith("--")]
            if not rest:
                continue

            def fill(match):
                name = match.group(1) or match.group(3)
                value = args.get(name, "")
                return value if value or match.group(2) is None else match.group(2)

            image = _ARG_REFERENCE.sub(fill, rest[0])
            if len(rest) >= 3 and rest[1].upper() == "AS":
                stages.add(rest[2].lower())
            if image.lower() in stages or image == "scratch" or not image or image in images:
                continue
            images.append(image)
    return images
