"""Shared by the module tests: a stand-in program on PATH, so modules run real processes."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """``stand_in(name, script)`` writes an executable ``name`` into a folder that leads PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    def install(name: str, script: str) -> Path:
        program = bin_dir / name
        program.write_text(script, encoding="utf-8")
        program.chmod(0o755)
        return bin_dir

    return install
