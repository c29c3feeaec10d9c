"""Shared test set-up: the plugin tree on sys.path, as ansible.cfg puts it for Ansible."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in ("plugins/module_utils", "plugins/filter", "plugins/modules"):
    path = str(ROOT / folder)
    if path not in sys.path:
        sys.path.insert(0, path)
