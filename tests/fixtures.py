"""Loading the shared, recorded npu-smi outputs (../shared/fixtures/npu-smi) for parser tests."""

from __future__ import annotations

import os
import re
from pathlib import Path


def shared(name: str) -> Path:
    """The nearest ``shared/<name>`` beside the checkout or above it (the workplace's shared folder:
    recorded outputs, the manual's tables, published schemas); may not exist."""
    checkout = Path(__file__).resolve().parents[1]
    for folder in checkout.parents:
        if (folder / "shared" / name).is_dir():
            return folder / "shared" / name
    return checkout.parent / "shared" / name


def _fixture_root() -> Path:
    """NPUFLEET_FIXTURES, else the nearest ``shared/fixtures``."""
    if "NPUFLEET_FIXTURES" in os.environ:
        return Path(os.environ["NPUFLEET_FIXTURES"])
    return shared("fixtures")


FIXTURE_ROOT = _fixture_root()
NPU_SMI = FIXTURE_ROOT / "npu-smi"


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
