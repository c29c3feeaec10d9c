"""Shared test set-up: the collection npufleet.ascend importable as Ansible imports it.

The checkout's collections/ folder links ansible_collections/npufleet/ascend to the checkout, so
tests import plugins by their collection path, the same one Ansible uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = str(ROOT / "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
