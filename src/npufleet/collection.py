"""Where the collection npufleet.ascend is, for the CLI and the API (no Docker, no lab).

The checkout is the collection: ``collections/ansible_collections/npufleet/ascend`` links back to
it, so ``ansible-playbook`` finds it by ansible.cfg's collections_path, and Python code imports
its controller-side helpers (``plugins/plugin_utils``) by the same name Ansible uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

NAMESPACE, NAME = "npufleet", "ascend"
FQCN = f"{NAMESPACE}.{NAME}"


def project_root() -> Path:
    """The checkout that holds ansible.cfg (searched upward from the working directory)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "ansible.cfg").is_file() and (folder / "playbooks").is_dir():
            return folder
    return here


def collections_dir(root: Path | None = None) -> Path:
    """The folder to put on a collections path (and sys.path) so that ``ansible_collections.npufleet.ascend``
    is this checkout."""
    return (root or project_root()) / "collections"


def importable(root: Path | None = None) -> None:
    """Let ``import ansible_collections.npufleet.ascend...`` load this checkout's plugins."""
    if root is None:
        # An editable install (pip install -e .) sits in the checkout: src/npufleet/collection.py.
        checkout = Path(__file__).resolve().parents[2]
        root = checkout if (checkout / "galaxy.yml").is_file() else project_root()
    folder = str(collections_dir(root))
    if folder not in sys.path:
        sys.path.insert(0, folder)


def default_inventory(root: Path | None = None) -> Path:
    """The inventory commands use when given none: the one ``npufleet lab up`` writes."""
    return (root or project_root()) / "inventories" / "lab" / "hosts.yml"
