"""The lab node image: a debootstrap Debian rootfs imported with no registry, cached by recipe hash."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import docker
import docker.errors

log = logging.getLogger(__name__)

IMAGE_REPOSITORY = "npufleet-lab-node"
FILES = resources.files("npufleet.lab") / "files"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the image's content; its hash is the image tag."""

    suite: str = "bookworm"
    mirror: str = os.environ.get("NPUFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    # "full": Docker engine installed, like a server handed over with Docker. "bare": no Docker
    # engine, for testing the docker role's install; its packages wait in apt's cache.
    flavour: str = "full"
    packages: tuple[str, ...] = (
        "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "iproute2", "procps",
        "iptables", "kmod", "ca-certificates", "sudo", "busybox-static", "curl", "xz-utils",
    )  # fmt: skip
    # Downloaded into apt's cache at build time, so roles install them in tests without a network.
    # python3-venv: the lab's workload images make their venvs offline, with no network at all;
    # libnuma1: vLLM's CPU kernels link it.
    cached_packages: tuple[str, ...] = (
        "docker.io", "python3-requests", "git", "git-lfs", "python3-venv", "libnuma1",
    )  # fmt: skip
    files: tuple[str, ...] = ("npu_sim.py", "npufleet-npu-sim.service", "npufleet-procsys-rw.service")
    revision: int = 1
    extra: dict = field(default_factory=dict)

    def digest(self) -> str:
        content = hashlib.sha256()
        # The mirror changes where packages come from, not what the image is.
        content.update(
            json.dumps(
                [self.suite, self.flavour, self.packages, self.cached_packages, self.revision, self.extra]
            ).encode()
        )
        # The build procedure is part of the recipe: a change to it makes a new image.
        content.update(Path(__file__).read_bytes())
        for name in self.files:
            content.update(name.encode())
            content.update((FILES / name).read_bytes())
        return content.hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.flavour}-{self.digest()}"

    @property
    def installed(self) -> tuple[str, ...]:
        return self.packages + FLAVOUR_PACKAGES[self.flavour]

    @property
    def to_cache(self) -> tuple[str, ...]:
        # The registry is not a node that roles set up: nothing waits in its apt cache.
        return () if self.flavour == "registry" else self.cached_packages


# What each flavour installs beyond the base packages. "registry" is the lab's image registry:
# Debian's docker-registry (distribution 2.8) with htpasswd for the authenticated endpoint.
FLAVOUR_PACKAGES: dict[str, tuple[str, ...]] = {
    "full": ("docker.io", "python3-requests"),
    "bare": (),
    "registry": ("docker-registry", "apache2-utils"),
}


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _install_files(rootfs: Path) -> None:
    lib = rootfs / "usr/local/lib/npufleet-lab"
    lib.mkdir(parents=True, exist_ok=True)
    emulator = lib / "npu_sim.py"
    emulator.write_bytes((FILES / "npu_sim.py").read_bytes())
    emulator.chmod(0o755)
    # Only where the manual's servers have npu-smi (and its `docker run` mounts it from), so that a role
    # that looks elsewhere fails in the lab as on a server.
    link = rootfs / "usr/local/sbin/npu-smi"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to("/usr/local/lib/npufleet-lab/npu_sim.py")
    units = rootfs / "etc/systemd/system"
    for unit, target in (
        ("npufleet-npu-sim.service", "multi-user.target"),
        ("npufleet-procsys-rw.service", "sysinit.target"),
    ):
        (units / unit).write_bytes((FILES / unit).read_bytes())
        wants = units / f"{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / unit).unlink(missing_ok=True)
        (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")
    # Units that have nothing to do in a container and only slow boot or fail.
    for unit in ("getty@tty1.service", "systemd-logind.service", "console-getty.service"):
        masked = units / unit
        masked.unlink(missing_ok=True)
        masked.symlink_to("/dev/null")
    (rootfs / "var/lib/npufleet-lab").mkdir(parents=True, exist_ok=True)
    (rootfs / "home/ma-user").mkdir(parents=True, exist_ok=True)


def _cache_packages(rootfs: Path, packages: tuple[str, ...]) -> None:
    """Fill apt's lists and archive cache inside the rootfs (network at build time only)."""
    # debootstrap's own download cache is dropped first: only what apt resolves now is kept.
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-qq", "--download-only", "-y", *packages],
    ):
        subprocess.run(
            ["chroot", str(rootfs), *cmd],
            check=True,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"},
        )


def build(client: docker.DockerClient, recipe: Recipe | None = None, force: bool = False) -> tuple[str, bool]:
    """Return the image tag for ``recipe``, building it only when no image with that hash exists.

    The second value says whether a build happened.
    """
    recipe = recipe or Recipe()
    tag = recipe.tag
    if not force and image_exists(client, tag):
        log.info("node image %s is cached", tag)
        return tag, False
    if shutil.which("debootstrap") is None:
        raise RuntimeError(
            "debootstrap is not installed: run 'apt-get install debootstrap' (or 'make setup')"
        )
    workdir = Path(
        tempfile.mkdtemp(prefix="npufleet-rootfs-", dir=os.environ.get("NPUFLEET_BUILD_DIR", "/var/tmp"))
    )
    rootfs = workdir / "rootfs"
    try:
        log.info("building node image %s with debootstrap (about a minute)", tag)
        # NPUFLEET_DEB_CACHE keeps debootstrap's downloads (debs named by package and version), one
        # folder a flavour: the lab builds two flavours at once, and debootstrap does not lock it.
        deb_cache = os.environ.get("NPUFLEET_DEB_CACHE")
        if deb_cache:
            deb_cache = os.path.join(deb_cache, recipe.suite, recipe.flavour)
            os.makedirs(deb_cache, exist_ok=True)
        subprocess.run(
            [
                "debootstrap",
                *([f"--cache-dir={os.path.abspath(deb_cache)}"] if deb_cache else []),
                "--variant=minbase",
                f"--include={','.join(recipe.installed)}",
                recipe.suite,
                str(rootfs),
                recipe.mirror,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        _install_files(rootfs)
        if recipe.to_cache:
            _cache_packages(rootfs, recipe.to_cache)
        archive = workdir / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], check=True)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(archive),
            repository=repository,
            tag=version,
            changes=[
                'CMD ["/sbin/init"]',
                "ENV container=docker",
                f"LABEL npufleet.recipe={recipe.digest()}",
            ],
        )
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout or "")[-2000:]
        raise RuntimeError(f"building the node image failed: {' '.join(error.cmd[:3])}...\n{tail}") from error
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    remove_stale(client, keep=tag)
    return tag, True


def remove_stale(client: docker.DockerClient, keep: str) -> None:
    """Drop images of older recipes of the same flavour that no container uses."""
    flavour = keep.partition(":")[2].split("-")[0]
    for old in client.images.list(name=IMAGE_REPOSITORY):
        if keep in old.tags or not any(tag.partition(":")[2].startswith(f"{flavour}-") for tag in old.tags):
            continue
        try:
            client.images.remove(old.id)
        except docker.errors.APIError as error:
            log.info("kept old node image %s: %s", old.tags, error.explanation)


def remove_all(client: docker.DockerClient) -> list[str]:
    """Remove every cached node image; returns their tags."""
    removed = []
    for old in client.images.list(name=IMAGE_REPOSITORY):
        client.images.remove(old.id, force=True)
        removed.extend(old.tags)
    return removed
