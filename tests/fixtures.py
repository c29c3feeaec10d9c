"""Recorded real outputs for the parser tests, carried in tests/data (sources in tests/data/SOURCES.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _fixture_root() -> Path:
    """NPUFLEET_FIXTURES (a folder laid out as tests/data), else tests/data."""
    return Path(os.environ.get("NPUFLEET_FIXTURES", DATA))


FIXTURE_ROOT = _fixture_root()
NPU_SMI = FIXTURE_ROOT / "npu-smi"
# The manual's tables as data: the parallel plan and the Volcano job templates.
SEED_TABLES = FIXTURE_ROOT / "seed-tables"


def shared(name: str) -> Path:
    """The nearest ``shared/<name>`` beside the checkout or above it (the workplace's shared folder);
    may not exist. Only for what is read in place there rather than carried (Volcano's CRD schema)."""
    checkout = Path(__file__).resolve().parents[1]
    for folder in checkout.parents:
        if (folder / "shared" / name).is_dir():
            return folder / "shared" / name
    return checkout.parent / "shared" / name


def load(name: str) -> list[str]:
    """The captured text of a fixture, split into its examples.

    The leading ``#`` header (source notes) is dropped. Lines starting with ``###`` are the
    collector's separators between examples; they are not npu-smi output.
    """
    lines = (NPU_SMI / name).read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    examples: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("###"):
            examples.append([])
        else:
            examples[-1].append(line)
    return ["\n".join(example) + "\n" for example in examples if any(x.strip() for x in example)]


def strip_annotations(text: str) -> str:
    """Remove an author's trailing ``# ...`` remark that some documentation copies carry."""
    return re.sub(r"\s+#.*$", "", text, flags=re.MULTILINE)
