"""The train_assets filter's checks."""

from __future__ import annotations

import subprocess

from ansible_collections.npufleet.ascend.plugins.filter.train_assets import (
    train_asset_branch_problems,
    train_asset_host_paths,
    train_asset_parents,
    train_asset_problems,
)


def test_asset_problems_name_each_entry():
    assert train_asset_problems([
        {"name": "code", "git": "https://example.invalid/x.git", "version": "abc", "dest": "code"},
        {"name": "weights", "src": "/data/w", "dest": "models/w"},
        {"path": "/mnt/sfs_turbo/d", "dest": "data"},
    ]) == []  # fmt: skip
    assert train_asset_problems([
        {"name": "w", "git": "file:///srv/w.git", "dest": "w"},
        {"src": "/a", "path": "/b", "dest": "x"},
        {"name": "abs", "src": "/a", "dest": "/etc"},
        {"name": "up", "src": "/a", "dest": "a/../../b"},
        {"name": "none", "dest": "n", "sha": 1},
        "text",
    ]) == [
        "train_assets[0] (w) clones file:///srv/w.git without version: pin the commit (or tag) so every node"
        " gets the same code and weights",
        "train_assets[1] (x) needs exactly one source: git (a repository), src (a path on the controller) or"
        " path (a path on the node, a shared volume say); found src, path",
        "train_assets[2] (abs) dest '/etc' must be relative to train_host_work_dir, without '..'",
        "train_assets[3] (up) dest 'a/../../b' must be relative to train_host_work_dir, without '..'",
        "train_assets[4] (none) needs exactly one source: git (a repository), src (a path on the controller)"
        " or path (a path on the node, a shared volume say); found none",
        "train_assets[4] (none) has unknown keys sha",
        "train_assets[5] must be a mapping, got 'text'",
    ]  # fmt: skip
    assert train_asset_problems("x") == ["train_assets must be a list of entries, got str"]


def test_asset_parents_in_order():
    assets = [{"dest": "models/a/b"}, {"dest": "data/lab"}, {"dest": "models/c"}, {"dest": "code"}]
    assert train_asset_parents(assets) == ["models", "models/a", "data"]
    assert train_asset_parents([]) == []


def test_asset_host_paths_name_each_dest():
    assets = [{"dest": "models/a/"}, "text", {"dest": "code"}]
    assert train_asset_host_paths(assets, "/home/ma-user/ws/") == {
        "train_assets[0].dest": "/home/ma-user/ws/models/a",
        "train_assets[2].dest": "/home/ma-user/ws/code",
    }
    assert train_asset_host_paths([], "/data/ws") == {}


def test_mindspeed_code_names_its_own_variable():
    code = [
        {"name": "MindSpeed", "git": "https://gitee.com/ascend/MindSpeed.git", "version": "", "dest": "m"}
    ]
    assert train_asset_problems(code, "train_mindspeed_code") == [
        "train_mindspeed_code[0] (MindSpeed) clones https://gitee.com/ascend/MindSpeed.git without version:"
        " pin the commit (or tag) so every node gets the same code and weights"
    ]
    assert train_asset_host_paths(code, "/w", "train_mindspeed_code") == {
        "train_mindspeed_code[0].dest": "/w/m"
    }


def test_a_version_that_is_a_branch_is_refused(tmp_path):
    """On real `git ls-remote --heads REPO refs/heads/VERSION` output, as the role registers it."""
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.email=t@lab", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "v1"], check=True)
    subprocess.run([*git, "tag", "v1.0.0"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    code = [
        {"name": "MindSpeed", "git": f"file://{repo}", "version": "main", "dest": "a"},
        {"name": "Megatron-LM", "git": f"file://{repo}", "version": "v1.0.0", "dest": "b"},
        {"name": "ModelLink", "git": f"file://{repo}", "version": head, "dest": "c"},
    ]
    results = []
    for entry in code:
        listing = subprocess.run(
            ["git", "ls-remote", "--heads", "--", entry["git"], f"refs/heads/{entry['version']}"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        results.append({"item": entry, "stdout": listing.stdout.strip()})
    assert train_asset_branch_problems(results, code, "train_mindspeed_code") == [
        f"train_mindspeed_code[0] (MindSpeed) version 'main' is a branch of file://{repo} (now at {head}),"
        f" which moves: pin it to a commit (version: {head}) or a tag"
    ]
