# Copyright: npufleet contributors
# Apache License 2.0
"""Pure logic of llm_launch: the wrapper that runs a command detached in a container, and the
reading of its log (progress, and the manual's known fatal errors with the hint that fixes each)."""

from __future__ import annotations

import re
import shlex

from ansible_collections.npufleet.ascend.plugins.module_utils.fault_signatures import PEER_LOST, SIGNATURES

__all__ = [
    "PEER_LOST", "find_fatal", "parse_probe", "probe", "progress", "signature_regex", "stop_line", "tail",
    "wrapper",
]  # fmt: skip


# The fatal lines are the catalogue's entries that stop a launch (fault_signatures.py, the one table
# of failures; the diagnosis after a failed run reads all of it).
# A cause is named before a symptom found in the same log (a lost peer after the port was taken).
def signature_regex(entry: dict) -> re.Pattern:
    """One regex for a catalogue entry: a line matches it when any of its patterns is found in it."""
    return re.compile("|".join("(?:" + pattern + ")" for pattern in entry["patterns"]))


_COMPILED = tuple(
    (signature_regex(entry), entry)
    for entry in sorted(SIGNATURES, key=lambda entry: entry["symptom"])
    if entry["stops_launch"]
)


def find_fatal(text: str, extra: list[dict] | None = None) -> dict | None:
    """The first known fatal error in ``text`` (extra patterns first, then the catalogue in its order):
    the line, its meaning and the hint, the catalogue id and whether it is a symptom of a failure
    elsewhere (a lost peer); None if none."""
    custom = [
        (re.compile(item["pattern"]),
         {"id": "custom", "cause": item.get("meaning", "a fatal error"), "fix": item.get("hint", ""),
          "symptom": False})
        for item in extra or []
    ]  # fmt: skip
    for regex, entry in (*custom, *_COMPILED):
        match = regex.search(text)
        if match:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            line = text[start : end if end >= 0 else len(text)].strip()
            if len(line) > 400:
                # A long line (a logger's prefix, a validation error): from the match on, which says it.
                line = text[match.start() : end if end >= 0 else len(text)].strip()[:400]
            return {
                "line": line,
                "meaning": entry["cause"],
                "hint": entry["fix"],
                "id": entry["id"],
                "symptom": entry["symptom"],
            }
    return None


# transformers' dict logs ({'loss': 1.2, ..., 'epoch': 0.5}), tqdm bars ( 12/64 [00:03<...), and
# Megatron's "iteration 10/ 1000 | ... lm loss: 1.0E+01 |".
_HF_LOSS = re.compile(r"\{'loss': '?([0-9.eE+-]+)'?.*?'epoch': '?([0-9.]+)'?")
_TQDM = re.compile(r"(\d+)/(\d+) \[[^\]]*(?:it/s|s/it)")
_TQDM_LOSS = re.compile(r"\d+/\d+ \[[^\]]*(?:it/s|s/it),[^\]]*?\bloss=([0-9.eE+-]+)")
_MEGATRON = re.compile(r"iteration\s+(\d+)/\s*(\d+).*?lm loss: ([0-9.eE+-]+)")


def _shown(number: str, digits: str) -> str:
    """A logged number as shown in progress; the log is read while it is written, so its last number may
    be cut short ("1.8e"): shown as it is then, never a crash of the watcher."""
    try:
        return format(float(number), digits)
    except ValueError:
        return number


def progress(text: str) -> str:
    """One line saying how far a run is, from the end of its log ("" when nothing is known yet)."""
    parts = []
    megatron = _MEGATRON.findall(text)
    if megatron:
        step, total, loss = megatron[-1]
        return f"iteration {step}/{total}, lm loss {_shown(loss, '.4g')}"
    bars = _TQDM.findall(text)
    if bars:
        step, total = bars[-1]
        parts.append(f"step {step}/{total}")
    # finetrainers' CogVideoX scripts log only through the bar's postfix (", loss=1.9, lr=0]").
    postfix = _TQDM_LOSS.findall(text)
    if postfix and not _HF_LOSS.search(text):
        parts.append(f"loss {_shown(postfix[-1], '.4g')}")
    losses = _HF_LOSS.findall(text)
    if losses:
        loss, epoch = losses[-1]
        parts.append(f"loss {_shown(loss, '.4g')} (epoch {_shown(epoch, '.3g')})")
    return ", ".join(parts)


def tail(text: str, lines: int = 30) -> str:
    """The last lines of a log; tqdm's carriage-return redraws are cut to their last state."""
    cleaned = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    return "\n".join([line for line in cleaned if line.strip()][-lines:])


def wrapper(command: str, log_file: str, state_dir: str) -> str:
    """The shell line run with ``docker exec -d``: it records its pid, runs the command in its own
    session (so stopping it reaches every child, torchrun's workers too), and records the exit code."""
    state, log = shlex.quote(state_dir), shlex.quote(log_file)
    inner = (
        f"echo $$ > {state}/pid; bash -c {shlex.quote(command)} >> {log} 2>&1 < /dev/null; "
        f"echo $? > {state}/rc"
    )
    return (
        # A new run gets a new log (the previous one is kept as .1): its errors are not read again.
        f'mkdir -p {state} "$(dirname {log})" && rm -f {state}/rc && date +%s > {state}/started && '
        f"{{ [ ! -e {log} ] || mv -f {log} {log}.1; }} && "
        f"exec setsid bash -c {shlex.quote(inner)}"
    )


def probe(state_dir: str, log_file: str, tail_bytes: int = 65536) -> str:
    """A shell line printing the run's state: rc (or empty), whether its pid lives, log size, log tail."""
    state, log = shlex.quote(state_dir), shlex.quote(log_file)
    return (
        f"cat {state}/rc 2>/dev/null; echo '@@'; "
        f'pid=$(cat {state}/pid 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo alive; '
        f"echo '@@'; stat -c %s {log} 2>/dev/null; echo '@@'; "
        f"tail -c {int(tail_bytes)} {log} 2>/dev/null; true"
    )


def parse_probe(output: str) -> dict:
    rc_text, alive, size, log_tail = ([*output.split("@@\n", 3), "", "", "", ""])[:4]
    rc_text = rc_text.strip()
    return {
        "rc": int(rc_text) if re.fullmatch(r"-?\d+", rc_text) else None,
        "alive": alive.strip() == "alive",
        "log_size": int(size.strip()) if size.strip().isdigit() else 0,
        "log_tail": log_tail,
    }


def stop_line(state_dir: str) -> str:
    """Signal the run's whole session (TERM, then KILL after 10 s), and return once every process of
    its group is gone: the leader often exits first while torchrun's workers are still cleaning up."""
    state = shlex.quote(state_dir)
    return (
        f'pid=$(cat {state}/pid 2>/dev/null) || exit 0; kill -TERM -- -"$pid" 2>/dev/null || exit 0; '
        'for i in $(seq 20); do kill -0 -- -"$pid" 2>/dev/null || exit 0; sleep 0.5; done; '
        'kill -KILL -- -"$pid" 2>/dev/null; '
        'for i in $(seq 10); do kill -0 -- -"$pid" 2>/dev/null || exit 0; sleep 0.5; done; true'
    )
