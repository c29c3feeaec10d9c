"""The train_assets filter's checks."""

from __future__ import annotations

from ansible_collections.npufleet.ascend.plugins.filter.train_assets import (
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
