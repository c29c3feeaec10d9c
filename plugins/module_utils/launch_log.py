# Copyright: npufleet contributors
# Apache License 2.0
"""Pure logic of llm_launch: the wrapper that runs a command detached in a container, and the
reading of its log (progress, and the manual's known fatal errors with the hint that fixes each)."""

from __future__ import annotations

import re
import shlex

PEER_LOST = "a peer rank went away or could not be reached"

# (compiled pattern, what it means, the fix). From the manual's training and inference FAQ, plus the
# ways a distributed run dies when a peer goes away.
FATAL_PATTERNS = (
    (
        r"not found in your environment: flash_attn|No module named 'flash_attn'",
        "flash_attn is not available on Ascend",
        "the manual's training FAQ 3: do not ask for flash attention (flash_attn: disabled in LLaMA-Factory),"
        " or comment out the flash_attn check in transformers/dynamic_module_utils.py",
    ),
    (
        r"Error waiting on exit barrier",
        "torch elastic's exit barrier timed out (300 s by default) while ranks finished",
        "the manual's training FAQ 4: raise barrier_timeout in torch/distributed/elastic/agent/server/api.py"
        " (_exit_barrier), or make the ranks finish together",
    ),
    (
        r"NPU out of memory|NPU memory|RuntimeError: .*out of memory|CUDA out of memory",
        "the NPU ran out of memory",
        "lower the micro batch size or cutoff_len, use LoRA instead of full, or spread the model over more"
        " NPUs (TP/PP); for serving lower --gpu-memory-utilization",
    ),
    (
        r"Connection closed by peer|Connection reset by peer|RendezvousConnectionError|"
        r"DistNetworkError|RendezvousTimeoutError|HCCL.*(?:timeout|time out)|ProcessGroupGloo.*timed out",
        PEER_LOST,
        "look at the other nodes' logs for the first failure; check MASTER_ADDR/MASTER_PORT, the"
        " interface in HCCL_SOCKET_IFNAME/GLOO_SOCKET_IFNAME and the firewall between nodes",
    ),
    (
        r"ModuleNotFoundError: No module named '([^']+)'",
        "a Python package is missing in the image",
        "install the pinned dependencies into the container (the manual's scripts/install.sh, or the"
        " train role's pip requirements) or use the image built for this framework",
    ),
    (
        r"User-specified max_model_len.*is greater than the d",
        "max-model-len is longer than the model allows",
        "the manual's inference FAQ 2: lower --max-model-len (serve_max_model_len) to the model's"
        " max_position_embeddings or seq_length, or raise that in its config.json",
    ),
    # vLLM's start-up failures, as its OpenAI server prints them (tests/data/vllm_cpu/).
    (
        r"error: unrecognized arguments: .*|error: argument --[\w-]+: .*",
        "the server rejects a command-line flag",
        "remove or fix that flag: in serve_extra_args, or the serve_* variable that renders it (set it to 0"
        " or empty to leave the flag out where this release of the server does not have it)",
    ),
    (
        r"\[Errno 98\] (?:error while attempting to bind.*|Address already in use)",
        "the serving port is already taken on the node",
        "another process listens on serve_port: stop it (another server, or 'npufleet teardown') or pick"
        " another serve_port",
    ),
    (
        r"less than requested memory for kv|No available memory for the cache blocks|"
        r"larger than the available KV cache memory|KV cache memory is not enough",
        "the KV cache does not fit in memory",
        "ask for a smaller KV cache: VLLM_CPU_KVCACHE_SPACE (GiB) or --kv-cache-memory-bytes on the CPU,"
        " serve_gpu_memory_utilization on NPUs; or lower serve_max_model_len or serve_max_num_seqs",
    ),
    (
        r"Unsupported CPU attention configuration.*",
        "vLLM's CPU attention does not support this model's head size",
        "serve a model whose hidden_size / num_attention_heads is 32, 64, 80, 96, 112, 128, 256 or 512",
    ),
)
_COMPILED = tuple((re.compile(pattern), meaning, hint) for pattern, meaning, hint in FATAL_PATTERNS)


def find_fatal(text: str, extra: list[dict] | None = None) -> dict | None:
    """The first known fatal error in ``text``: the line, its meaning and the hint; None if none."""
    patterns = [(re.compile(item["pattern"]), item.get("meaning", "a fatal error"), item.get("hint", ""))
                for item in extra or []]  # fmt: skip
    for regex, meaning, hint in (*patterns, *_COMPILED):
        match = regex.search(text)
        if match:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            line = text[start : end if end >= 0 else len(text)].strip()
            if len(line) > 400:
                # A long line (a logger's prefix, a validation error): from the match on, which says it.
                line = text[match.start() : end if end >= 0 else len(text)].strip()[:400]
            return {"line": line, "meaning": meaning, "hint": hint}
    return None


# transformers' dict logs ({'loss': 1.2, ..., 'epoch': 0.5}), tqdm bars ( 12/64 [00:03<...), and
# Megatron's "iteration 10/ 1000 | ... lm loss: 1.0E+01 |".
_HF_LOSS = re.compile(r"\{'loss': '?([0-9.eE+-]+)'?.*?'epoch': '?([0-9.]+)'?")
_TQDM = re.compile(r"(\d+)/(\d+) \[[^\]]*(?:it/s|s/it)")
_MEGATRON = re.compile(r"iteration\s+(\d+)/\s*(\d+).*?lm loss: ([0-9.eE+-]+)")


def progress(text: str) -> str:
    """One line saying how far a run is, from the end of its log ("" when nothing is known yet)."""
    parts = []
    megatron = _MEGATRON.findall(text)
    if megatron:
        step, total, loss = megatron[-1]
        return f"iteration {step}/{total}, lm loss {float(loss):.4g}"
    bars = _TQDM.findall(text)
    if bars:
        step, total = bars[-1]
        parts.append(f"step {step}/{total}")
    losses = _HF_LOSS.findall(text)
    if losses:
        loss, epoch = losses[-1]
        parts.append(f"loss {float(loss):.4g} (epoch {float(epoch):.3g})")
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
