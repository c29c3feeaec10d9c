# Copyright: npufleet contributors
# Apache License 2.0
"""Filter for the train role: what is wrong with a train_assets list, one message per problem."""

from __future__ import annotations

SOURCES = ("git", "src", "path")


def train_asset_problems(assets, variable: str = "train_assets") -> list[str]:
    """Problems of ``train_assets`` (or another list of the same entries, named ``variable``): each
    entry needs ``dest`` (relative, without '..') and exactly one source: ``git`` with a pinned
    ``version``, ``src`` (controller) or ``path`` (node)."""
    if not isinstance(assets, list):
        return [f"{variable} must be a list of entries, got {type(assets).__name__}"]
    problems = []
    for index, entry in enumerate(assets):
        where = f"{variable}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a mapping, got {entry!r}")
            continue
        label = f"{where} ({entry.get('name') or entry.get('dest') or 'no name'})"
        dest = str(entry.get("dest") or "")
        if not dest:
            problems.append(f"{label} has no dest: the folder to create, relative to train_host_work_dir")
        elif dest.startswith("/") or ".." in dest.split("/"):
            problems.append(f"{label} dest {dest!r} must be relative to train_host_work_dir, without '..'")
        sources = [key for key in SOURCES if entry.get(key)]
        if len(sources) != 1:
            found = ", ".join(sources) or "none"
            problems.append(
                f"{label} needs exactly one source: git (a repository), src (a path on the controller) or"
                f" path (a path on the node, a shared volume say); found {found}"
            )
        if entry.get("git") and not entry.get("version"):
            problems.append(
                f"{label} clones {entry['git']} without version: pin the commit (or tag) so every node gets"
                " the same code and weights"
            )
        unknown = sorted(set(entry) - {"name", "dest", "version", "lfs", "depth", *SOURCES})
        if unknown:
            problems.append(f"{label} has unknown keys {', '.join(unknown)}")
    return problems


def train_asset_parents(assets) -> list[str]:
    """The folders above every asset's dest (``models/a/b`` gives ``models`` and ``models/a``), in
    order, so that they can be made with the container user's ownership before anything is copied."""
    parents: list[str] = []
    for entry in assets or []:
        parts = str(entry.get("dest", "")).strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in parents:
                parents.append(folder)
    return parents


def train_asset_host_paths(assets, work_dir: str, variable: str = "train_assets") -> dict:
    """Where each asset goes on the node, named ``train_assets[index].dest`` (``variable`` names the
    list), for the host path checks (filter host_path_problems): a symlink in the work dir must not lead
    an asset into a system folder."""
    base = str(work_dir).rstrip("/")
    return {
        f"{variable}[{index}].dest": f"{base}/{str(entry.get('dest', '')).strip('/')}"
        for index, entry in enumerate(assets or [])
        if isinstance(entry, dict)
    }


def train_asset_branch_problems(results, assets, variable: str = "train_assets") -> list[str]:
    """Entries of ``assets`` pinned to a branch, from the registered results of ``git ls-remote --heads
    REPO refs/heads/VERSION`` looped over them (a line naming refs/heads/ means the version is a branch).
    A branch moves, so nodes set up on different days would get different code."""
    problems = []
    for result in results or []:
        entry = result.get("item") or {}
        heads = [line for line in str(result.get("stdout", "")).splitlines() if "\trefs/heads/" in line]
        if not heads:
            continue
        index = assets.index(entry) if entry in assets else "?"
        label = f"{variable}[{index}] ({entry.get('name') or entry.get('dest') or 'no name'})"
        commit = heads[0].split()[0]
        problems.append(
            f"{label} version {entry.get('version')!r} is a branch of {entry.get('git')} (now at {commit}),"
            f" which moves: pin it to a commit (version: {commit}) or a tag"
        )
    return problems


class FilterModule:
    def filters(self):
        return {
            "train_asset_problems": train_asset_problems,
            "train_asset_parents": train_asset_parents,
            "train_asset_host_paths": train_asset_host_paths,
            "train_asset_branch_problems": train_asset_branch_problems,
        }
