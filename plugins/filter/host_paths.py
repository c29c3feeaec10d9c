# Copyright: npufleet contributors
# Apache License 2.0
"""Filters for the roles that mount a node's folder into a container, give it to the container's user
or delete it: which host paths they must refuse (npufleet_refused_host_paths), one message per problem.

A pattern of npufleet_refused_host_paths is an absolute path whose parts may be shell-style globs
(fnmatch); a last part ``**`` stands for the folder and everything below it. ``/usr/**`` refuses /usr
and /usr/local/x, ``/*`` any folder directly below /, ``/`` the root alone.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ansible.errors import AnsibleFilterError

VARIABLE = "npufleet_refused_host_paths"
EXAMPLE = "/home/ma-user/ws"
FIX = f"use a folder of its own, such as {EXAMPLE} or /data/ws"
WHY = "a system folder, or one directly below /, that no container may own or write"


def _parts(path: str) -> list[str]:
    """The names in an absolute path: '//usr/./local/' gives ['usr', 'local']."""
    return [part for part in path.split("/") if part not in ("", ".")]


def _pattern_parts(refused) -> list[tuple[str, list[str]]]:
    if not isinstance(refused, list):
        raise AnsibleFilterError(f"{VARIABLE} must be a list of absolute paths, got {type(refused).__name__}")
    patterns = []
    for pattern in refused:
        if not isinstance(pattern, str) or not pattern.startswith("/") or ".." in _parts(pattern):
            raise AnsibleFilterError(f"{VARIABLE}: {pattern!r} is not an absolute path without '..'")
        patterns.append((pattern, _parts(pattern)))
    return patterns


def _matches(parts: list[str], pattern: list[str]) -> bool:
    if pattern and pattern[-1] == "**":
        prefix = pattern[:-1]
        return len(parts) >= len(prefix) and all(map(fnmatchcase, parts, prefix))
    return len(parts) == len(pattern) and all(map(fnmatchcase, parts, pattern))


def _first_match(path: str, patterns: list[tuple[str, list[str]]]) -> str | None:
    parts = _parts(path)
    return next((pattern for pattern, pattern_parts in patterns if _matches(parts, pattern_parts)), None)


def _literal_problem(label: str, value, patterns) -> str | None:
    if not isinstance(value, str) or not value:
        return (
            f"{label} {value!r} is not a path: give the full path of a folder on the node, such as {EXAMPLE}"
        )
    if not value.startswith("/"):
        return (
            f"{label} {value} is not an absolute path (Docker would take it for a named volume, not a folder"
            f" of the node): give the full path on the node, such as {EXAMPLE}"
        )
    if ".." in _parts(value):
        return (
            f"{label} {value} has a '..' part: write the path without it, so the check sees the folder used"
        )
    if ":" in value:
        return f"{label} {value} has a ':', which Docker's volumes read as a separator: rename the folder"
    pattern = _first_match(value, patterns)
    if pattern is not None:
        return f"{label} {value} matches {pattern} in {VARIABLE} ({WHY}): {FIX}"
    return None


def host_path_problems(paths, refused, resolved=None) -> list[str]:
    """Problems of the host paths ``paths`` (variable name -> path), one message each: not absolute, a
    '..' part, or matching a pattern of ``refused``. ``resolved`` is the ``paths`` list that
    npufleet.ascend.node_state returned for them: a path whose real path (symlinks resolved on the
    node) matches a pattern is refused too."""
    if not isinstance(paths, dict):
        raise AnsibleFilterError(f"host_path_problems takes a mapping of names to paths, got {paths!r}")
    patterns = _pattern_parts(refused)
    real = {entry.get("path"): entry.get("realpath") for entry in resolved or [] if isinstance(entry, dict)}
    refused_paths: dict[str, str] = {}
    for label, value in paths.items():
        problem = _literal_problem(label, value, patterns)
        if problem is None and real.get(value):
            pattern = _first_match(real[value], patterns)
            if pattern is not None:
                problem = (
                    f"{label} {value} leads through a symlink to {real[value]}, which matches {pattern} in"
                    f" {VARIABLE} ({WHY}): {FIX}, or remove the symlink"
                )
        if problem is not None:
            refused_paths[label] = problem
    # A folder named after one already refused (train_host_work_dir/npufleet/logs below
    # train_host_work_dir) says the same again: left out.
    return [
        problem
        for label, problem in refused_paths.items()
        if not any(label.startswith(f"{parent}/") for parent in refused_paths)
    ]


def volume_host_paths(volumes, name: str) -> dict:
    """The host side of each of Docker's ``src:dest[:mode]`` volumes, named ``name[index]``, for
    host_path_problems."""
    if not isinstance(volumes, list):
        return {name: volumes}
    return {
        f"{name}[{index}]": volume.split(":", 1)[0] if isinstance(volume, str) else volume
        for index, volume in enumerate(volumes)
    }


class FilterModule:
    def filters(self):
        return {"host_path_problems": host_path_problems, "volume_host_paths": volume_host_paths}
