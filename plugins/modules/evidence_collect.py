#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: evidence_collect
short_description: Gather a node's evidence of a failed run into one archive, bounded and redacted
description:
  - Gathers what a failed run left on the node into one C(tar.gz) at O(dest) for the controller
    to fetch; the diagnosis (C(npufleet diagnose)) reads it there.
  - The host's log files (O(host_files), the launched processes' logs), each container's
    C(docker logs) and C(docker inspect), the CANN plog folders inside each container
    (O(container_log_dirs), and E(ASCEND_PROCESS_LOG_PATH) where the container sets it), and the
    output of O(commands) (C(npu-smi info), C(hccn_tool) readings, the tail of C(dmesg)).
  - A stopped container's plog folders are copied out with C(docker cp), from the same places
    (its own C(/etc/passwd) gives the user's home), keeping the newest files' tails as they stream.
  - Each file keeps its last O(max_file_bytes) (the failure is near the end), and the archive at
    most O(max_total_bytes); what was cut is listed in the result and in the archive's
    C(MANIFEST.json).
  - Secrets are replaced by C(<redacted>) before anything is written, in every file. The values
    in O(redact_values), settings whose name says they are secret (C(HF_TOKEN=...),
    a C(password) key in JSON), bearer headers, Docker auth strings and C(hf_...) tokens.
  - Its action, on the controller, adds every value the vault gave the host (a vault-encrypted vars
    file's, an inline vault string's) to O(redact_values), whatever the variable is called.
  - A source that cannot be read (a container that is gone, a command that fails) is recorded
    in the manifest with the reason; the rest is still gathered.
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  dest:
    description: Path of the archive to write on the node (mode 0600; replaced if there).
    type: path
    required: true
  host_files:
    description: Glob patterns of files on the node to take (each match's tail).
    type: list
    elements: str
    default: []
  since:
    description:
      - Leave out the host files and container log files last written before this time (seconds since
        the epoch), an earlier run's logs in the same folder. C(0) takes them all.
    type: float
    default: 0
  controller_time:
    description:
      - The controller's clock when the task was sent (the module's action sets it). O(since) is the
        controller's time; with this, it is moved onto the node's clock, so a node whose clock is
        ahead or behind takes the same logs.
    type: float
    default: 0
  containers:
    description: Docker containers whose logs, inspect output and plog folders to take.
    type: list
    elements: str
    default: []
  container_log_dirs:
    description:
      - Folders inside each container whose newest files to take, CANN's plog folders by default.
      - A leading C(~) is the container user's home.
    type: list
    elements: str
    default: ["~/ascend/log/run/plog", "~/ascend/log/debug/plog"]
  container_user:
    description:
      - The user (name or uid) that reads the container folders, whose home a leading C(~) is; the
        launched processes' user, whose plog folders they are. Empty is the container's own user, as
        is a user the container's image does not have.
    type: str
    default: ""
  container_log_files:
    description: At most this many of the newest files from each container folder.
    type: int
    default: 8
  commands:
    description:
      - Commands to run on the node, each C(name) (the file name in the archive) and C(argv).
      - A command that is missing or fails is recorded, with its output.
    type: list
    elements: dict
    default: []
  hccn_tool:
    description:
      - Path of C(hccn_tool) on the node; with O(hccn_npus), each NPU's link, net health, address and
        TLS readings go into C(commands/hccn_tool.txt). Empty reads none.
    type: path
    default: ""
  hccn_npus:
    description: The NPUs whose C(hccn_tool) readings to take.
    type: list
    elements: int
    default: []
  command_timeout:
    description: Seconds each command or docker call may take.
    type: int
    default: 30
  max_file_bytes:
    description: The most bytes kept of one file (its tail).
    type: int
    default: 1048576
  max_total_bytes:
    description: The most bytes in the archive in all; later sources are cut short or left out.
    type: int
    default: 16777216
  redact_values:
    description: Secret values to replace wherever they appear (registry passwords, API keys).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: none
    description: It writes the archive; in check mode it is skipped.
  diff_mode:
    support: none
    description: No diff.
notes:
  - Run it as root (C(become)) to read the kernel's log and other users' files.
"""

EXAMPLES = r"""
- name: Gather the evidence of a failed training run
  npufleet.ascend.evidence_collect:
    dest: /tmp/npufleet-evidence.tar.gz
    host_files: ["/home/ma-user/ws/npufleet/logs/*.log"]
    containers: [npufleet-workload]
    commands:
      - {name: npu-smi-info, argv: [npu-smi, info]}
      - {name: dmesg-tail, argv: [sh, -c, "dmesg -T | tail -n 300"]}
    redact_values: ["{{ image_registry_password }}"]
  no_log: false
"""

RETURN = r"""
dest:
  description: The archive written.
  returned: always
  type: str
files:
  description: What the archive holds, each C(name), C(source), C(bytes) and C(truncated).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: logs/sft-rank0.log, source: /home/ma-user/ws/npufleet/logs/sft-rank0.log, bytes: 20480,
       truncated: false}
problems:
  description: Sources that could not be read, each C(source) and C(reason).
  returned: always
  type: list
  elements: dict
redacted:
  description: How many secrets were replaced in all.
  returned: always
  type: int
bytes:
  description: The bytes of evidence in the archive (before compression).
  returned: always
  type: int
"""

import glob
import io
import json
import os
import shlex
import subprocess
import tarfile
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.evidence import (
    redact,
    redact_inspect,
    tail_bytes,
)


def _mtime(path: str) -> float:
    """A file's mtime; one rotated away since the glob counts as new (its read then says why)."""
    try:
        return os.path.getmtime(path)
    except OSError:
        return float("inf")


class Collector:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.entries = []  # (name, bytes)
        self.files, self.problems = [], []
        self.total, self.redacted = 0, 0
        self.docker = module.get_bin_path("docker")
        # Each running container's UTC offset ("+0800"): its logs' time stamps are in its own zone.
        self.offsets = {}

    def run(self, argv: list[str]) -> tuple[int, bytes, str]:
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=self.params["command_timeout"], check=False
            )
        except FileNotFoundError:
            return 127, b"", f"{argv[0]} is not installed"
        except subprocess.TimeoutExpired:
            return 124, b"", f"timed out after {self.params['command_timeout']} s"
        return done.returncode, done.stdout + done.stderr, ""

    def problem(self, source: str, reason: str) -> None:
        """A source that could not be read, and why (redacted: a command line may hold a secret)."""
        values = self.params["redact_values"]
        self.problems.append({"source": redact(source, values)[0], "reason": redact(reason, values)[0]})

    def add(self, name: str, source: str, data: bytes, inspect: bool = False) -> None:
        room = self.params["max_total_bytes"] - self.total
        if room <= 0:
            self.problem(source, "left out: the archive reached max_total_bytes")
            return
        data, cut = tail_bytes(data, min(self.params["max_file_bytes"], room))
        text = data.decode("utf-8", errors="replace")
        text, count = (redact_inspect if inspect else redact)(text, self.params["redact_values"])
        self.redacted += count
        data = text.encode("utf-8")
        self.total += len(data)
        self.entries.append((name, data))
        source = redact(source, self.params["redact_values"])[0]
        self.files.append({"name": name, "source": source, "bytes": len(data), "truncated": cut})

    def host_files(self) -> None:
        taken, names = set(), set()
        for pattern in self.params["host_files"]:
            matched = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
            # A link in a folder the containers write to could point root at any file of the node.
            links = [path for path in matched if os.path.islink(path)]
            if links:
                self.problem(pattern, f"left out {len(links)} symbolic link(s): " + ", ".join(links[:5]))
            older = [path for path in matched if _mtime(path) < self.params["since"]]
            if older:
                self.problem(pattern, f"left out {len(older)} file(s) older than the run")
            matched = [path for path in matched if path not in links and path not in older]
            if not matched:
                self.problem(pattern, "no file of the run matches")
            matched = [path for path in matched if path not in taken]
            for path in matched:
                taken.add(path)
                try:
                    with open(path, "rb") as handle:
                        # A little more than is kept, so that the cut falls on a line start.
                        handle.seek(0, os.SEEK_END)
                        handle.seek(max(0, handle.tell() - self.params["max_file_bytes"] - 4096))
                        data = handle.read()
                except OSError as error:
                    self.problem(path, str(error))
                    continue
                # Two folders' train.log must not overwrite each other in the archive.
                name = os.path.basename(path)
                if name in names:
                    name = path.strip("/").replace("/", "_")
                names.add(name)
                self.add("logs/" + name, path, data)

    def containers(self) -> None:
        for name in self.params["containers"]:
            if not self.docker:
                self.problem(name, "docker is not installed")
                return
            rc, out, why = self.run([self.docker, "inspect", name])
            if rc != 0:
                reason = why or out.decode(errors="replace").strip()[:300]
                self.problem(name, reason)
                continue
            self.add(f"containers/{name}/inspect.json", f"docker inspect {name}", out, inspect=True)
            try:
                details = json.loads(out)[0]
            except (ValueError, IndexError, KeyError):
                details = {}
            rc, out, why = self.run([self.docker, "logs", "--tail", "2000", "--timestamps", name])
            self.add(
                f"containers/{name}/docker-logs.txt",
                f"docker logs {name}",
                out if rc == 0 else why.encode() + out,
            )
            if (details.get("State") or {}).get("Running", True):
                rc, out, _ = self.run([self.docker, "exec", name, "date", "+%z"])
                offset = out.decode(errors="replace").strip()
                if rc == 0 and len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
                    self.offsets[name] = offset
                self.container_logs(name)
            else:
                self.stopped_container_logs(name, details)

    # Lists the newest files of each folder (arguments; a leading ~ is the container user's home),
    # ASCEND_PROCESS_LOG_PATH first where the container sets it.
    _LIST_LOGS = (
        "count=$1; since=$2; shift 2; "
        'for d in ${ASCEND_PROCESS_LOG_PATH:+"$ASCEND_PROCESS_LOG_PATH"} "$@"; do '
        'case $d in "~/"*) d="$HOME/${d#??}";; esac; '
        '[ -d "$d" ] && find "$d" -type f -printf "%T@ %p\\n" 2>/dev/null | awk -v s="$since" \'$1 >= s\' '
        '| sort -rn | head -n "$count" '
        '| cut -d" " -f2-; done; true'
    )

    def container_logs(self, name: str) -> None:
        user = self.params["container_user"]
        as_user = ["-u", user] if user else []
        listing = [
            "sh",
            "-c",
            self._LIST_LOGS,
            "sh",
            str(self.params["container_log_files"]),
            repr(float(self.params["since"])),
            *self.params["container_log_dirs"],
        ]
        rc, out, why = self.run([self.docker, "exec", *as_user, name, *listing])
        if rc != 0 and as_user and b"unable to find user" in out:
            # An image without that user (another team's, MindIE's): its own user reads its folders.
            as_user = []
            rc, out, why = self.run([self.docker, "exec", name, *listing])
        if rc != 0:
            reason = why or out.decode(errors="replace")[:300]
            self.problem(f"{name}: plog folders", reason)
            return
        for path in [line for line in out.decode(errors="replace").splitlines() if line.startswith("/")]:
            rc, data, why = self.run(
                [self.docker, "exec", *as_user, name, "tail", "-c", str(self.params["max_file_bytes"]), path]
            )
            if rc == 0:
                self.add(
                    f"containers/{name}/plog/{path.strip('/').replace('/', '_')}", f"{name}:{path}", data
                )
            else:
                self.problem(f"{name}:{path}", why or data.decode(errors="replace")[:300])

    def stopped_container_logs(self, name: str, details: dict) -> None:
        """A stopped container (a crashed rank's, often) runs nothing: its plog folders are copied out
        with docker cp instead, from the same places the listing would look."""
        config = details.get("Config") or {}
        env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
        # "user", "uid", or "user:group" as docker run -u takes it.
        user = (self.params["container_user"] or config.get("User") or "root").split(":")[0]
        home = self.stopped_home(name, user)
        folders = [env["ASCEND_PROCESS_LOG_PATH"]] if env.get("ASCEND_PROCESS_LOG_PATH") else []
        for folder in self.params["container_log_dirs"]:
            folders.append(home + folder[1:] if folder.startswith("~/") else folder)
        for folder in folders:
            self.copied_folder(name, folder.rstrip("/"))

    def stopped_home(self, name: str, user: str) -> str:
        """The user's home, from the stopped container's own /etc/passwd (a name or a uid)."""
        rc, out, _ = self.run([self.docker, "cp", f"{name}:/etc/passwd", "-"])
        if rc == 0:
            try:
                with tarfile.open(fileobj=io.BytesIO(out)) as copied:
                    member = copied.next()
                    passwd = copied.extractfile(member).read().decode(errors="replace") if member else ""
            except (tarfile.TarError, AttributeError):
                passwd = ""
            for line in passwd.splitlines():
                fields = line.split(":")
                if len(fields) >= 6 and user in (fields[0], fields[2]):
                    return fields[5]
        return "/root" if user in ("root", "0") else "/home/" + user

    def copied_folder(self, name: str, folder: str) -> None:
        """The newest files (modified since the run started) of a folder of a stopped container, each
        its tail: docker cp's tar stream is read as it comes, so a large folder is never held whole."""
        params = self.params
        keep, newest = params["max_file_bytes"], []  # (mtime, path, tail), the newest few
        process = subprocess.Popen(
            [self.docker, "cp", f"{name}:{folder}", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            process.kill()

        timer = threading.Timer(params["command_timeout"], stop)
        timer.start()
        try:
            with tarfile.open(fileobj=process.stdout, mode="r|") as copied:
                for member in copied:
                    if not member.isfile() or member.mtime < params["since"]:
                        continue
                    handle, data = copied.extractfile(member), bytearray()
                    chunk = handle.read(65536)
                    while chunk:
                        data += chunk
                        # Only the tail is kept (a little more than max_file_bytes, cut on a line later).
                        del data[: max(0, len(data) - keep - 4096)]
                        chunk = handle.read(65536)
                    path = os.path.dirname(folder) + "/" + member.name
                    newest = sorted([*newest, (member.mtime, path, bytes(data))], reverse=True)
                    newest = newest[: params["container_log_files"]]
        except tarfile.TarError:
            pass  # nothing came (no such folder), or the copy was cut: said below
        finally:
            rest = process.communicate()[1]
            timer.cancel()
        if timed_out.is_set():
            self.problem(f"{name}:{folder} (stopped)", f"docker cp cut after {params['command_timeout']} s")
        elif process.returncode != 0 and not newest:
            reason = rest.decode(errors="replace").strip()[:300] or f"docker cp exited {process.returncode}"
            self.problem(f"{name}:{folder} (stopped)", reason)
        for _, path, data in newest:
            self.add(f"containers/{name}/plog/{path.strip('/').replace('/', '_')}", f"{name}:{path}", data)

    def commands(self) -> None:
        for command in self.params["commands"]:
            name, argv = command.get("name"), command.get("argv")
            if not name or not isinstance(argv, list) or not argv:
                self.module.fail_json(
                    msg=f"each of commands needs a name and an argv list, got {command!r}: fix commands"
                )
            rc, out, why = self.run([str(word) for word in argv])
            header = f"$ {shlex.join(str(word) for word in argv)}\n# exit {rc}{': ' + why if why else ''}\n"
            self.add(f"commands/{name}.txt", " ".join(str(word) for word in argv), header.encode() + out)
            if rc != 0:
                self.problem(name, why or f"exited {rc}")

    def hccn_readings(self) -> None:
        tool, npus = self.params["hccn_tool"], self.params["hccn_npus"]
        if not tool or not npus:
            return
        parts, failed = [], 0
        for npu in npus:
            for reading in ("link", "net_health", "ip", "tls"):
                argv = [tool, "-i", str(npu), "-" + reading, "-g"]
                rc, out, why = self.run(argv)
                failed += rc != 0
                parts.append(f"## {shlex.join(argv)} (exit {rc}{': ' + why if why else ''})\n".encode() + out)
        self.add("commands/hccn_tool.txt", f"{tool} -i N -link|-net_health|-ip|-tls -g", b"".join(parts))
        if failed:
            self.problem(tool, f"{failed} of {len(parts)} readings failed")

    def write(self) -> dict:
        self.host_files()
        self.containers()
        self.commands()
        self.hccn_readings()
        manifest = {
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # For the diagnosis, which puts every node's lines on one clock (UTC).
            "utc_offsets": {"node": time.strftime("%z"), "containers": self.offsets},
            "files": self.files,
            "problems": self.problems,
            "redacted": self.redacted,
        }
        dest = self.params["dest"]
        folder = os.path.dirname(dest) or "."
        os.makedirs(folder, exist_ok=True)
        partial = dest + ".part"
        # Made anew, never through a link someone left at that name (root writes it).
        if os.path.lexists(partial):
            os.unlink(partial)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as archive:
            for name, data in [*self.entries, ("MANIFEST.json", json.dumps(manifest, indent=2).encode())]:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
                archive.addfile(info, io.BytesIO(data))
        os.replace(partial, dest)
        return {
            "changed": True,
            "dest": dest,
            "files": self.files,
            "problems": self.problems,
            "redacted": self.redacted,
            "bytes": self.total,
        }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "host_files": {"type": "list", "elements": "str", "default": []},
            "since": {"type": "float", "default": 0},
            "controller_time": {"type": "float", "default": 0},
            "containers": {"type": "list", "elements": "str", "default": []},
            "container_log_dirs": {
                "type": "list",
                "elements": "str",
                "default": ["~/ascend/log/run/plog", "~/ascend/log/debug/plog"],
            },
            "container_user": {"type": "str", "default": ""},
            "container_log_files": {"type": "int", "default": 8},
            "commands": {"type": "list", "elements": "dict", "default": []},
            "hccn_tool": {"type": "path", "default": ""},
            "hccn_npus": {"type": "list", "elements": "int", "default": []},
            "command_timeout": {"type": "int", "default": 30},
            "max_file_bytes": {"type": "int", "default": 1048576},
            "max_total_bytes": {"type": "int", "default": 16777216},
            "redact_values": {"type": "list", "elements": "str", "default": [], "no_log": True},
        },
        supports_check_mode=False,
    )
    for option in ("max_file_bytes", "max_total_bytes", "command_timeout", "container_log_files"):
        if module.params[option] < 1:
            module.fail_json(
                msg=f"{option} must be 1 or more, got {module.params[option]}: fix the {option} option"
            )
    if module.params["since"] and module.params["controller_time"]:
        # The node's clock less the controller's (plus the task's way here, a second or so at most).
        module.params["since"] += time.time() - module.params["controller_time"]
    module.exit_json(**Collector(module).write())


if __name__ == "__main__":
    main()
