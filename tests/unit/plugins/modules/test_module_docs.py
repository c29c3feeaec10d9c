"""The modules' documentation renders with ansible-doc and agrees with their argument specs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
MODULES = sorted((ROOT / "plugins/modules").glob("*.py"))


def _constant(path: Path, name: str) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} has no {name}")


def _argument_spec(path: Path) -> dict:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "argument_spec":
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} passes no argument_spec to AnsibleModule")


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_ansible_doc_renders(module):
    doc = subprocess.run(
        # By FQCN: ansible.cfg's collections_path finds the checkout as npufleet.ascend.
        [str(Path(sys.executable).parent / "ansible-doc"), f"npufleet.ascend.{module.stem}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert doc.returncode == 0, doc.stderr
    assert f"npufleet.ascend.{module.stem}" in doc.stdout
    assert "EXAMPLES" in doc.stdout and "RETURN VALUES" in doc.stdout


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.stem)
def test_documented_options_match_the_argument_spec(module):
    documented = yaml.safe_load(_constant(module, "DOCUMENTATION"))["options"]
    spec = _argument_spec(module)
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
    yaml.safe_load(_constant(module, "EXAMPLES"))
    yaml.safe_load(_constant(module, "RETURN"))
