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
  - Records what it started on the node in C(RECORD_DIR/NAME.json) (O(record_dir); container,
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
        process meanwhile (a server that exits or logs a known fatal error fails at once). A server
        not ready after O(timeout) is stopped and the task fails.
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
        node's process list while it starts; never pass secrets here (use O(secret_env)).
    type: dict
    default: {}
  secret_env:
    description:
      - Environment of the command that must stay secret (an API key). The values go to C(docker exec)
        through an C(--env-file) that only root can read, removed once the command started, so they are
        on no command line; the run's record keeps only their names. Never logged.
      - A changed value does not restart a running command; stop it first (state V(stopped)).
    type: dict
    default: {}
  user:
    description: User (name or uid[:gid]) to run as; the container's default user when unset.
    type: str
  log_file:
    description: Log file in the container; the default is C(CHDIR/npufleet-logs/NAME.log) (or C(/tmp)).
    type: str
  creates:
    description:
      - A path in the container; when it exists, V(started) starts nothing (the work is done).
      - Tested with C(test -e) as its own argument, not through a shell, so any name matches as written.
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
    description:
      - Fail (and stop the run) when its log has not grown for this many seconds (0 never).
      - Measured by the log's modification time, so silence counts across calls, as when a play
        waits in rounds shorter than this.
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
      C(http://192.168.0.10:8000/health)); requested from the node, without a proxy when it is one of
      the node's own addresses.
    type: str
  tail_lines:
    description: How many lines of the log's tail to return.
    type: int
    default: 30
  record_dir:
    description:
      - Folder on the node for the launch records (C(NAME.json)), which node teardown reads too.
    type: path
    default: /var/lib/npufleet/launch
attributes:
  check_mode:
    support: full
    description:
      - Nothing is started or stopped. V(started) reports RV(changed) as it would be, with RV(started)
        false, RV(status) V(absent) and a message saying it would start; V(stopped) reports whether it
        would stop. Waiting and looking work as usual (they only read).
  diff_mode:
    support: full
    description:
      - V(started) shows the launch record it writes (C(NAME.json) in O(record_dir)) before and after.
notes:
  - Needs the C(docker) CLI on the node, and C(bash), C(setsid) and C(tail) in the container.
"""

EXAMPLES = r"""
- name: Start LLaMA-Factory training in the NPU container and wait up to two hours
  npufleet.ascend.llm_launch:
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
  npufleet.ascend.llm_launch:
    name: train
    container: llm-train
    state: finished
    timeout: 30
    fail_on_error: false
  register: run

- name: Stop it
  npufleet.ascend.llm_launch:
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
  description: Whether this call started the command (never in check mode).
  returned: always
  type: bool
actions:
  description: What this call did (or, in check mode, would do), one sentence each.
  returned: always
  type: list
  elements: str
  sample: [start train]
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
diff:
  description: The launch record before and after, when O(state=started) starts the run (or would).
  returned: when it starts and diff mode is on
  type: dict
"""

import json
import os
import time
import urllib.error

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.npufleet.ascend.plugins.module_utils.docker_env import secret_env_file
from ansible_collections.npufleet.ascend.plugins.module_utils.launch_log import (
    find_fatal,
    parse_probe,
    probe,
    progress,
    stop_line,
    tail,
    wrapper,
)
from ansible_collections.npufleet.ascend.plugins.module_utils.own_address import direct_opener
from ansible_collections.npufleet.ascend.plugins.module_utils.run_processes import RUN_ID_VARIABLE


def merged(*parts: dict) -> dict:
    """The dicts merged left to right (dict union needs Python 3.9; nodes may run 3.8)."""
    result = {}
    for part in parts:
        result.update(part)
    return result


class LaunchManager:
    """Probe the run in its container, decide, then act (or, in check mode, say what it would do)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.container = self.params["container"]
        chdir = self.params["chdir"] or "/tmp"
        self.log_file = self.params["log_file"] or os.path.join(
            chdir, "npufleet-logs", f"{self.params['name']}.log"
        )
        self.state_dir = self.log_file + ".state"
        self.record_file = os.path.join(self.params["record_dir"], f"{self.params['name']}.json")
        self.result = {
            "changed": False,
            "started": False,
            "log_file": self.log_file,
            "progress": "",
            "log_tail": "",
            "elapsed": 0.0,
            "peer_lost": False,
            "actions": [],
        }
        self.docker = module.get_bin_path("docker")

    # -- commands (argv lists; a shell only where the line is the wrapper's own) --------------------

    def exec_argv(self, argv: list, detach: bool = False, options: tuple = ()) -> tuple:
        """``docker exec`` of an argv list in the container, as the run's user."""
        cmd = [self.docker, "exec"]
        if detach:
            cmd.append("-d")
        if self.params["user"]:
            cmd += ["-u", self.params["user"]]
        return self.module.run_command([*cmd, *options, self.container, *argv])

    def sh(self, line: str, check: bool = True) -> tuple:
        rc, out, err = self.exec_argv(["bash", "-c", line])
        if check and rc != 0:
            self.fail(f"docker exec in {self.container} failed: {err.strip() or out.strip()}")
        return rc, out, err

    def running(self) -> bool:
        rc, out, _ = self.module.run_command(
            [self.docker, "inspect", "-f", "{{.State.Running}}", self.container]
        )
        return rc == 0 and out.strip() == "true"

    def exists(self, path: str) -> bool:
        # The path is its own argv item: no shell quoting, so any name (non-ASCII too) is seen as is.
        return self.exec_argv(["test", "-e", path])[0] == 0

    def fail(self, msg: str, **result) -> None:
        self.module.fail_json(msg=msg, **merged({"log_file": self.log_file}, result))

    def exit(self, **result) -> None:
        self.module.exit_json(**merged(self.result, result))

    # -- what is there ------------------------------------------------------------------------------

    def look(self) -> dict:
        if not self.running():
            return {"container_running": False, "rc": None, "alive": False, "log_size": 0, "log_tail": ""}
        _, out, _ = self.sh(probe(self.state_dir, self.log_file), check=False)
        return merged({"container_running": True}, parse_probe(out))

    def log_age(self) -> float | None:
        """Seconds since the log last grew (since the run started while it has no log), by the
        container's clock; None when neither is known."""
        line = 'stat -c %Y "$1" 2>/dev/null || cat "$2/started" 2>/dev/null; date +%s'
        rc, out, _ = self.exec_argv(["bash", "-c", line, "log_age", self.log_file, self.state_dir])
        values = out.split()
        if rc != 0 or len(values) != 2 or not all(value.isdigit() for value in values):
            return None
        return float(int(values[1]) - int(values[0]))

    def read_record(self) -> str:
        try:
            with open(self.record_file, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            return ""

    def new_record(self) -> str:
        record = {
            "name": self.params["name"],
            "container": self.container,
            "command": self.params["command"],
            "chdir": self.params["chdir"],
            "user": self.params["user"],
            "env": self.params["env"],
            "secret_env": sorted(self.params["secret_env"]),
            "log_file": self.log_file,
            "started_at": time.time(),
        }
        return json.dumps(record, indent=2)

    def record_diff(self, after: str) -> None:
        if self.module._diff:
            self.result["diff"] = {
                "before": self.read_record(),
                "after": after,
                "before_header": self.record_file,
                "after_header": self.record_file,
            }

    # -- acting -------------------------------------------------------------------------------------

    def start(self, record: str) -> None:
        options = []
        if self.params["chdir"]:
            options += ["-w", self.params["chdir"]]
        for key, value in sorted(self.params["env"].items()):
            options += ["-e", f"{key}={value}"]
        # The run that launches it hands on its id (the plays' environment), so that stopping that run
        # (run_stop) stops this too; not in the record, which must not change from run to run.
        run_id = os.environ.get(RUN_ID_VARIABLE, "")
        if run_id and RUN_ID_VARIABLE not in self.params["env"]:
            options += ["-e", f"{RUN_ID_VARIABLE}={run_id}"]
        line = wrapper(self.params["command"], self.log_file, self.state_dir)
        try:
            with secret_env_file(self.params["secret_env"]) as env_file:
                secret = ["--env-file", env_file] if env_file else []
                rc, out, err = self.exec_argv(["bash", "-c", line], detach=True, options=options + secret)
        except ValueError as error:
            self.fail(f"secret_env {error}")
        if rc != 0:
            self.fail(
                f"could not start {self.params['name']} in {self.container}: {err.strip() or out.strip()}"
            )
        os.makedirs(self.params["record_dir"], exist_ok=True)
        with open(self.record_file, "w", encoding="utf-8") as handle:
            handle.write(record)
        # The pid file appears when the wrapper runs; wait briefly so an immediate look sees the run.
        started = ["bash", "-c", 'test -s "$1/pid" || test -e "$1/rc"', "started", self.state_dir]
        for _ in range(50):
            if self.exec_argv(started)[0] == 0:
                break
            time.sleep(0.1)

    def stop(self) -> None:
        self.sh(stop_line(self.state_dir), check=False)

    def answers(self, url: str) -> tuple:
        try:
            with direct_opener(url).open(url, timeout=5) as response:
                return 200 <= response.status < 300, f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            return False, f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            return False, str(getattr(error, "reason", error))

    def wait(self, timeout: int, ready_url: str | None = None, act: bool = True) -> dict:
        """Watch the run; ``act`` False (a mere status look) never stops it."""
        began = time.monotonic()
        last_answer = "no answer yet"
        stall = self.params["stall_timeout"]
        while True:
            seen = self.look()
            text = seen["log_tail"]
            fatal = find_fatal(text, self.params["fatal_patterns"])
            result = {
                "progress": progress(text),
                "log_tail": tail(text, self.params["tail_lines"]),
                "elapsed": round(time.monotonic() - began, 1),
                "peer_lost": bool(fatal and fatal["symptom"]),
            }
            if not seen["container_running"]:
                return merged(
                    result, {"status": "failed", "reason": f"container {self.container} is not running"}
                )
            if seen["rc"] is not None:
                status = "succeeded" if seen["rc"] == 0 else "failed"
                reason = "" if seen["rc"] == 0 else f"exited with code {seen['rc']}"
                if fatal and status == "failed":
                    reason += f": {fatal['meaning']}: {fatal['line']}"
                outcome = merged(result, {"status": status, "exit_code": seen["rc"], "reason": reason})
                return merged(outcome, {"fatal": fatal} if fatal and status == "failed" else {})
            if fatal:
                if act and self.params["stop_on_fatal"]:
                    self.act(f"stop {self.params['name']}: its log shows a known fatal error", self.stop)
                reason = f"{fatal['meaning']}: {fatal['line']}"
                return merged(result, {"status": "failed", "fatal": fatal, "reason": reason})
            if not seen["alive"]:
                # No exit code and no process: the wrapper was killed, often because its container is
                # being stopped; give that a moment to show, as it is the better reason.
                for _ in range(6):
                    if not self.running():
                        reason = f"container {self.container} is not running"
                        return merged(result, {"status": "failed", "reason": reason})
                    time.sleep(0.5)
                return merged(
                    result, {"status": "failed", "reason": "the process is gone without an exit code"}
                )
            if act and stall:
                # By the log's modification time, so that silence counts across calls (the train role
                # waits in rounds shorter than the stall timeout).
                age = self.log_age()
                if age is not None and age > stall:
                    done = self.act(f"stop {self.params['name']}: its log is silent", self.stop)
                    stopped = "stopped it" if done else "would stop it"
                    return merged(
                        result,
                        {"status": "failed", "reason": f"its log did not grow for {stall} s ({stopped})"},
                    )
            if ready_url:
                ready, last_answer = self.answers(ready_url)
                if ready:
                    return merged(
                        result, {"status": "ready", "reason": f"{ready_url} answered {last_answer}"}
                    )
            if time.monotonic() - began >= timeout:
                if ready_url:
                    reason = f"not ready after {timeout} s ({ready_url}: {last_answer})"
                    return merged(result, {"status": "running", "reason": reason})
                return merged(result, {"status": "running", "reason": f"still running after {timeout} s"})
            time.sleep(self.params["poll_interval"])

    def act(self, what: str, do) -> bool:
        """Record an action (``what``, an imperative) and do it, unless in check mode: then record
        that it would. True when it was done."""
        self.result["actions"].append(f"would {what}" if self.check_mode else what)
        if self.check_mode:
            return False
        do()
        return True

    # -- the states ---------------------------------------------------------------------------------

    def run(self) -> None:
        state = self.params["state"]
        name = self.params["name"]
        if not self.docker:
            if self.check_mode:
                # Node setup installs Docker before this stage runs; in a check-mode run it has not.
                would = state == "started"
                message = (
                    f"would start {name} once Docker is installed" if would else "Docker is not installed"
                )
                self.exit(changed=would, status="absent", msg=message)
            self.module.fail_json(msg="the docker CLI is not on this node: install Docker first")
        if not self.running():
            self.container_not_running(state)
        if state == "stopped":
            self.state_stopped()
        if state == "started":
            self.state_started()
        self.finish(state)

    def container_not_running(self, state: str) -> None:
        name = self.params["name"]
        if state in ("stopped", "status"):
            self.exit(status="absent", msg=f"container {self.container} is not running")
        if self.check_mode and state == "started":
            # In check mode the container stage before this one has not started the container.
            self.result["actions"].append(f"would start {name}")
            self.exit(changed=True, status="absent", msg=f"would start {name} once {self.container} runs")
        if state == "finished" and not self.params["fail_on_error"]:
            self.exit(status="failed", reason=f"container {self.container} is not running")
        self.fail(
            f"container {self.container} is not running on this node: start the container first",
            status="failed",
        )

    def state_stopped(self) -> None:
        seen = self.look()
        if not seen["alive"]:
            self.exit(status="absent" if seen["rc"] is None else "stopped", exit_code=seen["rc"])
        done = self.act(f"stop {self.params['name']}", self.stop)
        self.exit(
            changed=True,
            status="stopped" if done else "running",
            log_tail=tail(seen["log_tail"], self.params["tail_lines"]),
            msg=f"{'stopped' if done else 'would stop'} {self.params['name']}",
        )

    def state_started(self) -> None:
        name, creates = self.params["name"], self.params["creates"]
        seen = self.look()
        if seen["alive"]:
            self.result["msg"] = f"{name} is already running"
        elif creates and self.exists(creates):
            self.exit(status="skipped", msg=f"{creates} exists: nothing to start")
        else:
            record = self.new_record()
            self.record_diff(record)
            self.result["changed"] = True
            if not self.act(f"start {name}", lambda: self.start(record)):
                # Check mode: nothing runs, so there is nothing to wait for either.
                self.exit(status="absent", msg=f"would start {name}")
            self.result["started"] = True
        if not self.params["wait"]:
            seen = self.look()
            status = "running" if seen["alive"] else ("succeeded" if seen["rc"] == 0 else "failed")
            text = progress(seen["log_tail"])
            self.exit(status=status, progress=text)

    def finish(self, state: str) -> None:
        params = self.params
        outcome = self.wait(
            0 if state == "status" else params["timeout"],
            params["url"] if state == "ready" else None,
            act=state != "status",
        )
        if state == "ready" and outcome["status"] == "succeeded":
            # A server that ends is not ready, whatever its exit code.
            outcome["status"] = "failed"
            outcome["reason"] = "exited with code 0 before it answered"
        if state == "ready" and outcome["status"] == "running":
            # Never ready within the timeout: a server left half-started holds its port and memory.
            done = self.act(f"stop {params['name']}: it was not ready in time", self.stop)
            outcome["reason"] += " (stopped it)" if done else " (would stop it)"
            outcome["status"] = "stopped" if done else "running"
        self.result.update(outcome)
        unfinished = outcome["status"] in ("running", "stopped") and state != "status"
        # A status look reports; it never fails the task.
        if params["fail_on_error"] and state != "status" and (outcome["status"] == "failed" or unfinished):
            message = f"{params['name']} in {self.container} {outcome['status']}: {outcome.get('reason', '')}"
            hint = outcome.get("fatal", {}).get("hint")
            if hint:
                message += f". Hint: {hint}"
            details = {key: value for key, value in self.result.items() if key != "msg"}
            self.fail(f"{message}\nlog tail ({self.log_file}):\n{outcome['log_tail']}", **details)
        self.exit()


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
            "secret_env": {"type": "dict", "default": {}, "no_log": True},
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
            "record_dir": {"type": "path", "default": "/var/lib/npufleet/launch"},
        },
        required_if=[("state", "started", ("command",)), ("state", "ready", ("url",))],
        supports_check_mode=True,
    )
    LaunchManager(module).run()


if __name__ == "__main__":
    main()
