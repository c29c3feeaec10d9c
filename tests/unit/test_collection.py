"""The checkout builds as the collection npufleet.ascend, and the built tarball, installed offline
into an empty collections path elsewhere, holds everything its playbooks need."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The tarball, built from the checkout and installed with --offline (Galaxy is never asked)."""
    work = tmp_path_factory.mktemp("collection")
    build = _run("ansible-galaxy", "collection", "build", "--output-path", str(work), cwd=ROOT)
    assert build.returncode == 0, build.stderr
    (tarball,) = work.glob("npufleet-ascend-*.tar.gz")
    install = _run("ansible-galaxy", "collection", "install", "--offline", "-p", str(work / "collections"),
                   str(tarball), cwd=work)  # fmt: skip
    assert install.returncode == 0, install.stderr
    return work


def _elsewhere_env(work: Path) -> dict:
    # Another folder, no ansible.cfg, only the installed copy on the collections path.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    return env | {"ANSIBLE_COLLECTIONS_PATH": str(work / "collections")}


def test_the_tarball_holds_the_collection_and_not_the_checkout_s_tooling(installed):
    (tarball,) = installed.glob("npufleet-ascend-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    manifest = yaml.safe_load(Path(ROOT / "galaxy.yml").read_text(encoding="utf-8"))
    assert manifest["namespace"] == "npufleet" and manifest["name"] == "ascend"
    wanted = ["playbooks/site.yml", "roles/fleet_defaults/defaults/main.yml", "meta/runtime.yml",
              "plugins/modules/npu_smi_info.py", "plugins/module_utils/npu_smi.py"]  # fmt: skip
    assert set(wanted) <= set(names)
    for unwanted in (".venv", "src", "collections", ".lab", "reports", ".git"):
        assert not any(name == unwanted or name.startswith(unwanted + "/") for name in names), unwanted


def test_installed_elsewhere_the_site_playbook_resolves_by_fqcn(installed):
    check = _run("ansible-playbook", "--syntax-check", "-i", "localhost,", "npufleet.ascend.site",
                 cwd=installed, env=_elsewhere_env(installed))  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    # The installed copy, not the checkout.
    site = installed / "collections/ansible_collections/npufleet/ascend/playbooks/site.yml"
    assert f"playbook: {site}" in check.stdout


def test_installed_elsewhere_ansible_doc_renders_the_modules(installed):
    doc = _run("ansible-doc", "npufleet.ascend.npu_smi_info", cwd=installed, env=_elsewhere_env(installed))
    assert doc.returncode == 0, doc.stderr
    assert str(installed / "collections") in doc.stdout
