"""The secret env-file that llm_launch and llm_benchmark hand to ``docker exec --env-file``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from ansible_collections.npufleet.ascend.plugins.module_utils.docker_env import secret_env_file


def test_the_file_is_the_owners_alone_and_gone_afterwards():
    with secret_env_file({"VLLM_API_KEY": "sk-1", "A": "b c"}) as path:
        written = Path(path)
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert written.read_text() == "A=b c\nVLLM_API_KEY=sk-1\n"
    assert not written.exists()


def test_no_values_no_file_and_an_error_still_removes_it():
    with secret_env_file({}) as path:
        assert path is None
    with pytest.raises(RuntimeError), secret_env_file({"K": "v"}) as path:
        raise RuntimeError(path)
    assert not Path(path).exists()


@pytest.mark.parametrize("values", [{"K": "two\nlines"}, {"A=B": "v"}, {"K": "cr\r"}])
def test_what_an_env_file_cannot_hold_is_refused_before_a_file_exists(values):
    with pytest.raises(ValueError, match="docker's env-file"), secret_env_file(values):
        pass
