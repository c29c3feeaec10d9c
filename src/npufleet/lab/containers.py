"""What lab nodes and the lab registry share: systemd containers on the local engine, and running
commands and placing files in them."""

from __future__ import annotations

import io
import tarfile
import time

import docker
import docker.errors

LABEL = "npufleet.lab"
BOOT_TIMEOUT_S = 90


class LabError(RuntimeError):
    """Something the user can fix: the message says what."""


def engine() -> docker.DockerClient:
    """The local Docker engine, or a LabError that says how to start one."""
    try:
        # Builds and saves of the training image stay silent for minutes: allow long reads.
        client = docker.from_env(timeout=1800)
        client.ping()
    except docker.errors.DockerException as error:
        raise LabError(
            "no Docker engine answers: start one (make setup starts dockerd on Debian/Ubuntu) "
            f"and retry ({error})"
        ) from error
    return client


def exec_in(container, cmd: list[str], check: bool = True) -> tuple[int, str]:
    result = container.exec_run(cmd, environment={"LC_ALL": "C"})
    output = result.output.decode(errors="replace")
    if check and result.exit_code != 0:
        raise LabError(f"{container.name}: {' '.join(cmd)} failed ({result.exit_code}): {output.strip()}")
    return result.exit_code, output


def put_file(container, path: str, content: bytes, mode: int = 0o644) -> None:
    folder, _, name = path.rpartition("/")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = mode
        info.mtime = int(time.time())
        archive.addfile(info, io.BytesIO(content))
    container.put_archive(folder or "/", buffer.getvalue())


def wait_for(container, cmd: list[str], done, what: str) -> None:
    """Run ``cmd`` in the container until ``done(exit_code, output)`` holds, or fail after BOOT_TIMEOUT_S."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    output = ""
    while time.monotonic() < deadline:
        code, output = exec_in(container, cmd, check=False)
        if done(code, output.strip()):
            return
        time.sleep(0.5)
    raise LabError(f"{container.name}: {what} in {BOOT_TIMEOUT_S}s (last answer {output.strip()!r})")


def wait_booted(container) -> None:
    wait_for(
        container,
        ["systemctl", "is-system-running"],
        lambda _, state: state in ("running", "degraded"),
        "systemd did not finish booting",
    )


def run_systemd_container(
    client: docker.DockerClient,
    tag: str,
    name: str,
    *,
    network: str,
    labels: dict[str, str],
    volumes: dict | None = None,
    ports: dict | None = None,
):
    """Start a container that behaves like a server: systemd as PID 1 (settings from LAB.md)."""
    return client.containers.run(
        tag,
        name=name,
        hostname=name,
        stop_signal="SIGRTMIN+3",  # what systemd as PID 1 shuts down on
        detach=True,
        labels=labels,
        network=network,
        # LAB.md: --privileged fails on these machines; ALL capabilities minus SYS_RESOURCE works.
        cap_add=["ALL"],
        cap_drop=["SYS_RESOURCE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        cgroupns="host",
        volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}} | (volumes or {}),
        tmpfs={"/run": "", "/run/lock": "", "/tmp": ""},
        ports=ports or {},
    )
