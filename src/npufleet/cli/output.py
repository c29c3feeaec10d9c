"""What every command shares: the exit codes, the stderr console, and JSON on stdout."""

from __future__ import annotations

import dataclasses
import json

from rich.console import Console

EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 4, 130

# Progress, messages and errors go to stderr; stdout carries the results (tables, reports, JSON).
console = Console(stderr=True, soft_wrap=True)


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=dataclasses.asdict))
