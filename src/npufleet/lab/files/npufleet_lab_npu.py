"""The lab's stand-in for what torch_npu does when it starts, installed in the lab's training image.

torch loads device backends named by the ``torch.backends`` entry point group at ``import torch``
(torch_npu registers one named ``torch_npu``); this module is the lab's, under that name. In a
container given NPUs it does what the real start does first, and fails the way it does:

* it loads the driver's ``libascend_hal.so`` through the dynamic loader (the image's
  LD_LIBRARY_PATH names the driver's lib64 folders, as ModelArts images do). A container without
  the driver mount fails with the loader's own message.
* with RANK_TABLE_FILE set, it reads the rank table and, when the file is missing or is not JSON,
  writes HCCL's error line to the process's plog (ASCEND_PROCESS_LOG_PATH, or ~/ascend/log) and to
  stdout with ASCEND_SLOG_PRINT_TO_STDOUT=1, then stops the process. HCCL reads it later, when the
  ranks' communicator starts; here every process that imports torch stops, the launcher too.

Nothing else is emulated: the lab trains on the CPU. A container with no NPUs (the lab's image
builds, its model generator) is left alone.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

DRIVER_LIBRARY = "libascend_hal.so"
# What a container given NPUs has (npu_container maps it with the chips).
NPU_MANAGER_DEVICE = "/dev/davinci_manager"


def _stamp(now: float) -> str:
    # CANN's log time: 2025-03-01-10:00:00.123.456 (local time, milliseconds then microseconds).
    micros = int(now * 1_000_000) % 1_000_000
    return (
        time.strftime("%Y-%m-%d-%H:%M:%S", time.localtime(now)) + f".{micros // 1000:03d}.{micros % 1000:03d}"
    )


def _hccl_error(source: str, message: str) -> None:
    """Write one HCCL error line where CANN writes it: the process's plog file (and stdout if asked)."""
    now = time.time()
    pid = os.getpid()
    line = f"[ERROR] HCCL({pid},python3):{_stamp(now)} [{source}] [{pid}]{message}\n"
    base = os.environ.get("ASCEND_PROCESS_LOG_PATH") or os.path.join(os.path.expanduser("~"), "ascend", "log")
    folder = os.path.join(base, "debug", "plog")
    os.makedirs(folder, exist_ok=True)
    name = f"plog-{pid}_{time.strftime('%Y%m%d%H%M%S', time.localtime(now))}{int(now * 1000) % 1000:03d}.log"
    with open(os.path.join(folder, name), "a", encoding="utf-8") as plog:
        plog.write(line)
    if os.environ.get("ASCEND_SLOG_PRINT_TO_STDOUT") == "1":
        sys.stdout.write(line)
        sys.stdout.flush()


def _load_rank_table(path: str) -> None:
    if not os.path.isfile(os.path.realpath(path)):
        _hccl_error("param_check.cc:98", f"[HcomLoadRanktableFile]get file[{path}] real path error")
        raise RuntimeError(f"HCCL could not open the rank table {path} (the plog has HCCL's line)")
    try:
        with open(path, encoding="utf-8") as table:
            json.load(table)
    except ValueError:
        _hccl_error(
            "topoinfo_ranktableParser.cc:134",
            f"[Read][File]errNo[0x0000000005000001] load file[{path}] to json fail. please check json file!",
        )
        raise RuntimeError(f"HCCL could not read the rank table {path} (the plog has HCCL's line)") from None


def autoload() -> None:
    """torch's entry point: called once, at ``import torch``."""
    if not os.path.exists(NPU_MANAGER_DEVICE):
        return
    try:
        ctypes.CDLL(DRIVER_LIBRARY)
    except OSError as error:
        # torch_npu's extension links the driver's library: Python reports the loader's message.
        raise ImportError(str(error)) from None
    rank_table = os.environ.get("RANK_TABLE_FILE")
    if rank_table:
        _load_rank_table(rank_table)
