"""``npufleet diagnose PATH...``: the fault catalogue applied to log files or an evidence folder."""

from __future__ import annotations

import argparse

from npufleet.cli.output import EXIT_FAILED, print_json
from npufleet.collection import importable


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Print what failed first, where, and the fix; exit 0 when a signature matched, 1 when none did."""
    # The collection is importable only once its folder is on sys.path.
    importable()
    from ansible_collections.npufleet.ascend.plugins.plugin_utils import diagnosis  # noqa: PLC0415

    found = diagnosis.diagnose(args.paths)
    if args.json:
        print_json(
            {
                "summary": diagnosis.summary(found),
                "files": found["files"],
                "nodes": found["nodes"],
                "first": found["first"],
                "matches": found["matches"],
            }
        )
    else:
        print(diagnosis.render_markdown(found), end="")
    return 0 if found["matches"] else EXIT_FAILED
