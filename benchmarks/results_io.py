"""What every benchmark script shares: the machine it ran on, and where its JSON goes."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    return {
        "host": platform.node(),
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
    }


def write(name: str, machine_info: dict, rows: list[dict], output: Path = RESULTS) -> Path:
    """Write ``rows`` with the machine they were measured on; returns the file."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"machine": machine_info, "results": rows}, indent=2))
    return path
