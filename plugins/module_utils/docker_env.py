# Copyright: npufleet contributors
# Apache License 2.0
"""Secrets for a command in a container, by environment and never on a command line: a file only its
owner can read, for ``docker exec --env-file``, removed as soon as the exec is done."""

from __future__ import annotations

import contextlib
import os
import tempfile


def env_file_text(values: dict) -> str:
    """The env-file's lines (``NAME=value``); ValueError for what docker's format cannot hold."""
    for name, value in values.items():
        if not name or "=" in name or "\n" in name or "\n" in str(value) or "\r" in str(value):
            raise ValueError(f"{name}: a name without '=' and a value on one line (docker's env-file)")
    return "".join(f"{name}={value}\n" for name, value in sorted(values.items()))


@contextlib.contextmanager
def secret_env_file(values: dict):
    """The path of a mode-0600 env-file holding ``values`` (None when there are none), removed on exit."""
    if not values:
        yield None
        return
    text = env_file_text(values)
    handle, path = tempfile.mkstemp(prefix="npufleet-env-")  # mode 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        yield path
    finally:
        os.unlink(path)
