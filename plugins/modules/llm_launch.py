#!/usr/bin/python
# Copyright: npufleet contributors
# Apache License 2.0
from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_launch
short_description: Start, watch and stop a training or serving process inside a node's NPU container
description:
  - Starts a command detached inside a running Docker container (C(docker exec -d)) with its
    environment, working dir and user, its output appended to a log file in the container. The
    command runs in its own session, so stopping it reaches every child (torchrun's workers too).
  - Records what it started on the node in C(/var/lib/npufleet/launch/NAME.json) (container,
    command, environment, log file, start time) and, in the container, the pid and, when the
    command ends, its exit code (in C(LOG.state/)). A new run moves the previous log to C(LOG.1).
  - Waits for the command with a timeout, reading the log as it goes, and fails fast with the
    log's tail when the process exits non-zero, when its container stops, when the log shows a
    known fatal error (from the manual's FAQ, missing flash_attn, the exit barrier timeout, NPU out
    of memory; or a peer rank gone), naming the hint that fixes it, or when the log stays silent
    longer than O(stall_timeout).
version_added: "0.1.0"
author:
  - npufleet contributors
options:
  name:
    description: Name of the run; one run of a name per container at a time.
    type: str
    required: true
  container:
    description: The running container to start the command in.
    type: str
    required: true
  state:
    description:
      - V(started) starts the command unless a run of this name is alive (or O(creates) exists),
        then waits O(timeout) seconds for it when O(wait) is true.
      - V(finished) waits up to O(timeout) seconds for the run to end.
      - V(stopped) stops the run (TERM to its session, KILL after 10 s).
      - V(status) only reports.
      - V(ready) waits up to O(timeout) seconds until O(url) answers with a 2xx status, watching the
        process meanwhile (a server that exits or logs a known fatal error fails at once).
    type: str
    choices: [started, finished, stopped, status, ready]
    default: started
  command:
    description: Shell command line run with C(bash -c) in the container. Required with V(started).
    type: str
  chdir:
    description: Working dir in the container.
    type: str
  env:
    description:
      - Environment of the command. Values are passed to C(docker exec -e), so they are in the
        node's process list while it starts; never pass secrets here.
    type: dict
    default: {}
  user:
    description: User (name or uid[:gid]) to run as; the container's default user when unset.
    type: str
  log_file:
    description: Log file in the container; the default is C(CHDIR/npufleet-logs/NAME.log) (or C(/tmp)).
    type: str
  creates:
    description: A path in the container; when it exists, V(started) starts nothing (the work is done).
    type: str
  wait:
    description: With V(started), wait for the run to end (up to O(timeout)).
    type: bool
    default: false
  timeout:
    description: Seconds to wait with V(finished) (or V(started) and O(wait)).
    type: int
    default: 3600
  stall_timeout:
    description: Fail when the run's log has not grown for this many seconds (0 never).
    type: int
    default: 0
  poll_interval:
    description: Seconds between two looks at the run.
    type: float
    default: 2
  fail_on_error:
    description:
      - When false, a failed or still running run is reported in RV(status) instead of failing the
        task, so a play can stop every rank of a multi-node job before it fails.
    type: bool
    default: true
  stop_on_fatal:
    description: Stop the run when its log shows a known fatal error (it would only hang or retry).
    type: bool
    default: true
  fatal_patterns:
    description: More fatal errors to watch for, each a C(pattern) (Python regex) with a C(hint).
    type: list
    elements: dict
    default: []
  url:
    description: With V(ready), the address that answers once the server is up (for example
      C(http://127.0.0.1:8000/health)); requested from the node.
    type: str
  tail_lines:
    description: How many lines of the log's tail to return.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: In check mode nothing is started or stopped; V(started) reports whether it would start.
  diff_mode:
    support: none
notes:
  - Needs the C(docker) CLI on the node, and C(bash), C(setsid) and C(tail) in the container.
"""

EXAMPLES = r"""
- name: Start LLaMA-Factory training in the NPU container and wait up to two hours
  llm_launch:
    name: train
    container: llm-train
    command: llamafactory-cli train /home/ma-user/ws/train/sft.yaml
    chdir: /home/ma-user/ws
    user: ma-user
    env:
      ASCEND_RT_VISIBLE_DEVICES: "0,1,2,3,4,5,6,7"
    creates: /home/ma-user/ws/out/sft/train_results.json
    wait: true
    timeout: 7200

- name: Look at a run without failing the task
  llm_launch:
    name: train
    container: llm-train
    state: finished
    timeout: 30
    fail_on_error: false
  register: run

- name: Stop it
  llm_launch:
    name: train
    container: llm-train
    state: stopped
"""

RETURN = r"""
status:
  description: >-
    V(running), V(succeeded), V(failed) (non-zero exit, fatal log line, silent log, or stopped
    container), V(ready) (O(url) answered), V(stopped) (stopped by this module), V(skipped)
    (O(creates) exists) or V(absent).
  returned: always
  type: str
  sample: succeeded
exit_code:
  description: >-
    Exit code of the command, once it ended (not named rc: Ansible would fail the task on a
    non-zero rc, where a status look only reports).
  returned: when the run ended
  type: int
  sample: 0
started:
  description: Whether this call started the command.
  returned: always
  type: bool
log_file:
  description: The log file in the container.
  returned: always
  type: str
progress:
  description: How far the run is, from its log (steps, loss), or empty.
  returned: always
  type: str
  sample: step 12/64, loss 5.61 (epoch 0.38)
log_tail:
  description: The last O(tail_lines) lines of the log.
  returned: always
  type: str
fatal:
  description: The known fatal error found in the log, with its meaning and hint.
  returned: when one was found
  type: dict
elapsed:
  description: Seconds this call waited.
  returned: always
  type: float
"""

import json
import os
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.launch_log import (
    PEER_LOST,
    find_fatal,
    parse_probe,
    probe,
    progress,
    stop_line,
    tail,
    wrapper,
)

RECORD_DIR = "/var/lib/npufleet/launch"


class Launcher:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.docker = module.get_bin_path("docker")
        if not self.docker:
            if module.check_mode:
                # Node setup installs Docker before this stage runs; check mode has not.
                module.exit_json(changed=True, status="absent", msg="would run once Docker is installed")
            module.fail_json(
                msg="the docker CLI is not on this node: run node setup (playbooks/node.yml) first"
            )
        self.container = self.params["container"]
        chdir = self.params["chdir"] or "/tmp"
        self.log_file = self.params["log_file"] or os.path.join(
            chdir, "npufleet-logs", f"{self.params['name']}.log"
        )
        self.state_dir = self.log_file + ".state"

    def sh(self, line: str, check: bool = True) -> tuple[int, str, str]:
        cmd = [self.docker, "exec"]
        if self.params["user"]:
            cmd += ["-u", self.params["user"]]
        rc, out, err = self.module.run_command([*cmd, self.container, "bash", "-c", line])
        if check and rc != 0:
            self.fail(f"docker exec in {self.container} failed: {err.strip() or out.strip()}")
        return rc, out, err

    def running(self) -> bool:
        rc, out, _ = self.module.run_command(
            [self.docker, "inspect", "-f", "{{.State.Running}}", self.container]
        )
        return rc == 0 and out.strip() == "true"

    def fail(self, msg: str, **result) -> None:
        self.module.fail_json(msg=msg, **({"log_file": self.log_file} | result))

    def look(self) -> dict:
        if not self.running():
            return {"container_running": False, "rc": None, "alive": False, "log_size": 0, "log_tail": ""}
        _, out, _ = self.sh(probe(self.state_dir, self.log_file), check=False)
        return {"container_running": True} | parse_probe(out)

    def exists(self, path: str) -> bool:
        return self.sh(f"test -e {json.dumps(path)}", check=False)[0] == 0

    def start(self) -> bool:
        command = self.params["command"]
        if not command:
            self.fail("state=started needs command: the command line to run in the container")
        cmd = [self.docker, "exec", "-d"]
        if self.params["user"]:
            cmd += ["-u", self.params["user"]]
        if self.params["chdir"]:
            cmd += ["-w", self.params["chdir"]]
        for key, value in sorted(self.params["env"].items()):
            cmd += ["-e", f"{key}={value}"]
        cmd += [self.container, "bash", "-c", wrapper(command, self.log_file, self.state_dir)]
        rc, out, err = self.module.run_command(cmd)
        if rc != 0:
            self.fail(
                f"could not start {self.params['name']} in {self.container}: {err.strip() or out.strip()}"
            )
        record = {
            "name": self.params["name"],
            "container": self.container,
            "command": command,
            "chdir": self.params["chdir"],
            "user": self.params["user"],
            "env": self.params["env"],
            "log_file": self.log_file,
            "started_at": time.time(),
        }
        os.makedirs(RECORD_DIR, exist_ok=True)
        with open(os.path.join(RECORD_DIR, f"{self.params['name']}.json"), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2)
        # The pid file appears when the wrapper runs; wait briefly so an immediate look sees the run.
        for _ in range(50):
            if self.sh(f"test -s {json.dumps(self.state_dir)}/pid || test -e {json.dumps(self.state_dir)}/rc",
                       check=False)[0] == 0:  # fmt: skip
                break
            time.sleep(0.1)
        return True

    def answers(self, url: str) -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return 200 <= response.status < 300, f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            return False, f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            return False, str(getattr(error, "reason", error))

    def wait(self, timeout: int, ready_url: str | None = None, act: bool = True) -> dict:
        """Watch the run; ``act`` False (a mere status look) never stops it."""
        began = time.monotonic()
        last_answer = "no answer yet"
        last_size, last_growth = -1, time.monotonic()
        while True:
            seen = self.look()
            text = seen["log_tail"]
            fatal = find_fatal(text, self.params["fatal_patterns"])
            result = {
                "progress": progress(text),
                "log_tail": tail(text, self.params["tail_lines"]),
                "elapsed": round(time.monotonic() - began, 1),
                "peer_lost": bool(fatal and fatal["meaning"] == PEER_LOST),
            }
            if not seen["container_running"]:
                return result | {"status": "failed", "reason": f"container {self.container} is not running"}
            if seen["rc"] is not None:
                status = "succeeded" if seen["rc"] == 0 else "failed"
                reason = "" if seen["rc"] == 0 else f"exited with code {seen['rc']}"
                outcome = result | {"status": status, "exit_code": seen["rc"], "reason": reason}
                return outcome | ({"fatal": fatal} if fatal and status == "failed" else {})
            if fatal:
                if act and self.params["stop_on_fatal"] and not self.module.check_mode:
                    self.sh(stop_line(self.state_dir), check=False)
                return result | {
                    "status": "failed",
                    "fatal": fatal,
                    "reason": f"{fatal['meaning']}: {fatal['line']}",
                }
            if not seen["alive"]:
                # No exit code and no process: the wrapper was killed, often because its container is
                # being stopped; give that a moment to show, as it is the better reason.
                for _ in range(6):
                    if not self.running():
                        reason = f"container {self.container} is not running"
                        return result | {"status": "failed", "reason": reason}
                    time.sleep(0.5)
                return result | {"status": "failed", "reason": "the process is gone without an exit code"}
            now = time.monotonic()
            if seen["log_size"] != last_size:
                last_size, last_growth = seen["log_size"], now
            stall = self.params["stall_timeout"]
            if act and stall and now - last_growth > stall:
                if not self.module.check_mode:
                    self.sh(stop_line(self.state_dir), check=False)
                return result | {
                    "status": "failed",
                    "reason": f"its log did not grow for {stall} s (stopped it)",
                }
            if ready_url:
                ready, last_answer = self.answers(ready_url)
                if ready:
                    return result | {"status": "ready", "reason": f"{ready_url} answered {last_answer}"}
            if now - began >= timeout:
                if ready_url:
                    reason = f"not ready after {timeout} s ({ready_url}: {last_answer})"
                    return result | {"status": "running", "reason": reason}
                return result | {"status": "running", "reason": f"still running after {timeout} s"}
            time.sleep(self.params["poll_interval"])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "container": {"type": "str", "required": True},
            "state": {
                "type": "str",
                "default": "started",
                "choices": ["started", "finished", "stopped", "status", "ready"],
            },
            "command": {"type": "str"},
            "chdir": {"type": "str"},
            "env": {"type": "dict", "default": {}},
            "user": {"type": "str"},
            "log_file": {"type": "str"},
            "creates": {"type": "str"},
            "wait": {"type": "bool", "default": False},
            "timeout": {"type": "int", "default": 3600},
            "stall_timeout": {"type": "int", "default": 0},
            "poll_interval": {"type": "float", "default": 2},
            "fail_on_error": {"type": "bool", "default": True},
            "stop_on_fatal": {"type": "bool", "default": True},
            "fatal_patterns": {"type": "list", "elements": "dict", "default": []},
            "url": {"type": "str"},
            "tail_lines": {"type": "int", "default": 30},
        },
        required_if=[("state", "started", ("command",)), ("state", "ready", ("url",))],
        supports_check_mode=True,
    )
    launcher = Launcher(module)
    params = module.params
    state = params["state"]
    base = {"changed": False, "started": False, "log_file": launcher.log_file, "progress": "", "log_tail": "",
            "elapsed": 0.0, "peer_lost": False}  # fmt: skip
    if not launcher.running():
        if state in ("stopped", "status"):
            module.exit_json(**base, status="absent", msg=f"container {launcher.container} is not running")
        if module.check_mode and state == "started":
            # In check mode the container stage before this one has not started the container.
            module.exit_json(**(base | {"changed": True, "status": "running", "started": True}),
                             msg=f"would start {params['name']} once {launcher.container} runs")  # fmt: skip
        if state == "finished" and not params["fail_on_error"]:
            module.exit_json(**base, status="failed", reason=f"container {launcher.container} is not running")
        launcher.fail(
            f"container {launcher.container} is not running on this node:"
            " start it first (playbooks/container.yml)",
            status="failed",
        )

    if state == "stopped":
        seen = launcher.look()
        if not seen["alive"]:
            module.exit_json(
                **base, status="absent" if seen["rc"] is None else "stopped", exit_code=seen["rc"]
            )
        if not module.check_mode:
            launcher.sh(stop_line(launcher.state_dir), check=False)
        stopped = {
            "changed": True,
            "status": "stopped",
            "log_tail": tail(seen["log_tail"], params["tail_lines"]),
        }
        module.exit_json(**(base | stopped))

    result = dict(base)
    if state == "started":
        seen = launcher.look()
        if seen["alive"]:
            result["msg"] = f"{params['name']} is already running"
        elif params["creates"] and launcher.exists(params["creates"]):
            module.exit_json(**result, status="skipped", msg=f"{params['creates']} exists: nothing to start")
        elif module.check_mode:
            module.exit_json(**(result | {"changed": True, "status": "running", "started": True}))
        else:
            result |= {"changed": True, "started": launcher.start()}
        if not params["wait"]:
            seen = launcher.look()
            status = "running" if seen["alive"] else ("succeeded" if seen["rc"] == 0 else "failed")
            module.exit_json(**(result | {"status": status, "progress": progress(seen["log_tail"])}))

    outcome = launcher.wait(
        0 if state == "status" else params["timeout"],
        params["url"] if state == "ready" else None,
        act=state != "status",
    )
    result |= outcome
    unfinished = outcome["status"] == "running" and state != "status"
    if state == "ready" and outcome["status"] == "succeeded":
        # A server that ends is not ready, whatever its exit code.
        outcome["status"] = result["status"] = "failed"
        outcome["reason"] = result["reason"] = "exited with code 0 before it answered"
    # A status look reports; it never fails the task.
    if params["fail_on_error"] and state != "status" and (outcome["status"] == "failed" or unfinished):
        message = f"{params['name']} in {launcher.container} {outcome['status']}: {outcome.get('reason', '')}"
        hint = outcome.get("fatal", {}).get("hint")
        if hint:
            message += f". Hint: {hint}"
        details = {key: value for key, value in result.items() if key != "msg"}
        launcher.fail(f"{message}\nlog tail ({launcher.log_file}):\n{outcome['log_tail']}", **details)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
