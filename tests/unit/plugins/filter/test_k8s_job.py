"""The k8s_job role: its filters, and the Volcano Job and ConfigMap it renders for one and two nodes,
validated against Volcano's published Job CRD schema, round-tripped through kubectl's client-side
dry run, and compared field by field with the manual's templates. No Kubernetes API server can run
here: the apply path is tested up to the point where it reaches for one."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.npufleet.ascend.plugins.filter import k8s_job as k8s

from npufleet.api import run_playbook
from tests.fixtures import SEED_TABLES, shared

ROOT = Path(__file__).resolve().parents[4]
# Read in place: the shared folder's rules keep schemas/ out of the project (../shared/README.md).
SCHEMA = shared("schemas") / "volcano" / "batch.volcano.sh_jobs.yaml"
MANUAL = SEED_TABLES
GOOD = {"name": "sft-qwen2", "namespace": "default", "nodes": 2, "npus": 8, "image": "swr.example/ascend:1",
        "command": "bash /mnt/sfs_turbo/train.sh", "pvc": "sfs-turbo-pvc", "requests_cpu": "32",
        "limits_cpu": "64", "requests_memory": "256Gi", "limits_memory": "512Gi", "shm_size": "200g",
        "min_available": 2}  # fmt: skip


def test_quantities_from_docker_and_kubernetes_units():
    assert k8s.k8s_quantity("200g") == "200Gi"
    assert k8s.k8s_quantity("512M") == "512Mi"
    assert k8s.k8s_quantity("1tb") == "1Ti"
    assert k8s.k8s_quantity("200Gi") == "200Gi"
    with pytest.raises(AnsibleFilterError, match="'lots' is not a size such as 200g"):
        k8s.k8s_quantity("lots")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "SFT_run"}, "k8s_job_name='SFT_run' must be lowercase letters, digits and '-'"),
        ({"name": "a" * 50}, "at most 49 characters (its ConfigMap is configmap1980-<name>)"),
        ({"namespace": "Prod"}, "k8s_job_namespace='Prod' is not a namespace name"),
        ({"nodes": 0}, "k8s_job_nodes=0 must be 1 or more"),
        ({"npus": 3}, "k8s_job_npus=3 must be 1, 2, 4, 8 or 16 NPUs per pod"),
        ({"image": ":latest"}, "k8s_job_image is empty"),
        ({"command": " "}, "k8s_job_command is empty"),
        ({"pvc": ""}, "k8s_job_pvc='' is not a PVC name"),
        ({"requests_cpu": "lots"}, "k8s_job_requests_cpu='lots' is not a CPU quantity"),
        ({"limits_memory": "512GB"}, "k8s_job_limits_memory='512GB' is not a memory quantity"),
        ({"shm_size": "huge"}, "k8s_job_shm_size: 'huge' is not a size"),
        ({"min_available": 3}, "k8s_job_min_available=3 must be between 1 and k8s_job_nodes (2)"),
    ],
)
def test_each_bad_setting_is_named(change, expected):
    assert k8s.k8s_job_problems(GOOD) == []
    problems = k8s.k8s_job_problems(GOOD | change)
    assert len(problems) == 1 and expected in problems[0], problems


def test_fatal_line_uses_llm_launchs_table():
    log = "step 3\nRuntimeError: NPU out of memory. Tried to allocate 2.00 GiB\nmore"
    found = k8s.fatal_line(log)
    assert found["line"].startswith("RuntimeError: NPU out of memory")
    assert "gpu-memory-utilization" in found["hint"] or found["hint"]
    assert k8s.fatal_line("all good\n") == {}
    assert (
        k8s.fatal_line("custom boom", [{"pattern": "boom", "meaning": "it broke", "hint": "fix it"}])[
            "meaning"
        ]
        == "it broke"
    )


# --- rendering through the role ---------------------------------------------------------------


def inventory(tmp_path: Path, nodes: int) -> Path:
    """An inventory as a docker-path user writes it: nodes in npu_nodes, the container's image,
    name and shm size; plus what only Kubernetes needs. Hosts are never contacted (the play runs
    on the controller)."""
    hosts = {f"node{index + 1}": {"ansible_host": f"192.0.2.{index + 1}"} for index in range(nodes)}
    data = {"all": {
        "vars": {
            "npu_container_image": "swr.cn-southwest-2.myhuaweicloud.com/ascend/llm:8.0.rc3",
            "npu_container_name": "ascendspeed",
            "npu_container_shm_size": "200g",
            "k8s_job_name": "vcjob",
            "k8s_job_command": "bash /mnt/sfs_turbo/code/train.sh",
            "k8s_job_pvc": "sfs-turbo-pvc",
            "k8s_job_requests_cpu": "180",
            "k8s_job_requests_memory": "1500Gi",
            "k8s_job_limits_cpu": "186",
            "k8s_job_limits_memory": "1800Gi",
            "k8s_job_render_dir": str(tmp_path / "rendered"),
        },
        "children": {"npu_nodes": {"hosts": hosts}},
    }}  # fmt: skip
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def render(tmp_path: Path, nodes: int, extravars: dict | None = None) -> tuple[dict, dict]:
    result = run_playbook("k8s.yml", inventory(tmp_path, nodes), extravars=extravars)
    assert result.succeeded, result.first_failure()
    rendered = tmp_path / "rendered"
    configmap = yaml.safe_load((rendered / "configmap.yml").read_text())
    job = yaml.safe_load((rendered / "job.yml").read_text())
    return configmap, job


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[int, tuple[dict, dict]]:
    return {nodes: render(tmp_path_factory.mktemp(f"k8s{nodes}"), nodes) for nodes in (1, 2)}


def crd_schema() -> dict:
    if not SCHEMA.is_file():
        pytest.skip(
            f"Volcano's Job CRD is not here ({SCHEMA}): the shared schemas folder sits beside the checkout"
        )
    crd = yaml.safe_load(SCHEMA.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(value, schema: dict, where: str = "") -> list[str]:
    """Fields the API server would prune (not in the schema): jsonschema alone allows them."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += unknown_fields(item, schema["properties"][key], f"{where}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += unknown_fields(item, schema["additionalProperties"], f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{where}[{index}]")
    return found


@pytest.mark.parametrize("nodes", [1, 2])
def test_the_job_is_valid_against_volcanos_crd(rendered, nodes):
    schema = crd_schema()
    _configmap, job = rendered[nodes]
    jsonschema.validate(job, schema)
    assert unknown_fields(job, schema) == []
    # A misspelt field is caught (the check can fail).
    broken = copy.deepcopy(job)
    broken["spec"]["tasks"][0]["replica"] = 1
    assert unknown_fields(broken, schema) == [".spec.tasks[0].replica"]
    broken["spec"]["maxRetry"] = "five"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


@pytest.mark.parametrize("nodes", [1, 2])
def test_the_manifests_round_trip_through_kubectl(rendered, nodes, tmp_path):
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed (.ci/run installs Debian's kubernetes-client)")
    configmap, job = rendered[nodes]
    manifests = tmp_path / "all.yml"
    manifests.write_text(yaml.safe_dump_all([configmap, job]))
    kubeconfig, cache = offline_kubectl(tmp_path)
    done = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), "create", "--dry-run=client",
         "--validate=false", "-o", "yaml", "-f", str(manifests)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    items = [item for item in yaml.safe_load_all(done.stdout) if item]
    if len(items) == 1 and items[0].get("kind") == "List":  # how some kubectl versions print several
        items = items[0]["items"]
    assert [item["kind"] for item in items] == ["ConfigMap", "Job"]
    assert items[0] == configmap
    assert items[1] == job


def offline_kubectl(tmp_path: Path) -> tuple[Path, Path]:
    """A kubeconfig for an API server that is not there, and the discovery cache kubectl would have
    fetched from one with Volcano installed: enough for a client-side dry run to map the kinds."""
    server = "127.0.0.1:6443"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": f"https://{server}"}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
        # A token, so that kubectl does not prompt for a user name.
        "users": [{"name": "offline", "user": {"token": "unused"}}],
    }))  # fmt: skip
    discovery = tmp_path / "cache" / "discovery" / server.replace(":", "_")
    volcano = {"groupVersion": "batch.volcano.sh/v1alpha1", "version": "v1alpha1"}
    groups = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "", "versions": [{"groupVersion": "v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "v1", "version": "v1"}},
        {"name": "batch.volcano.sh", "versions": [volcano], "preferredVersion": volcano},
    ]}  # fmt: skip
    resources = {
        "v1": ("configmaps", "configmap", "ConfigMap"),
        "batch.volcano.sh/v1alpha1": ("jobs", "job", "Job"),
    }
    (discovery).mkdir(parents=True)
    (discovery / "servergroups.json").write_text(json.dumps(groups))
    for group_version, (plural, singular, kind) in resources.items():
        folder = discovery / group_version
        folder.mkdir(parents=True)
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        (folder / "serverresources.json").write_text(json.dumps({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": plural, "singularName": singular, "namespaced": True, "kind": kind,
                           "verbs": verbs}],
        }))  # fmt: skip
    return kubeconfig, tmp_path / "cache"


def manual(name: str, values: dict) -> list[dict]:
    text = (MANUAL / name).read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", json.dumps(value))
    return list(yaml.safe_load_all(text))


MANUAL_VALUES = {"image_name": "swr.cn-southwest-2.myhuaweicloud.com/ascend/llm:8.0.rc3",
                 "container_name": "ascendspeed", "command": "bash /mnt/sfs_turbo/code/train.sh",
                 "requests_memory": "1500Gi", "requests_cpu": "180", "limits_memory": "1800Gi",
                 "limits_cpu": "186", "pvc_name": "sfs-turbo-pvc"}  # fmt: skip


@pytest.mark.parametrize(
    ("nodes", "table"), [(1, "k8s_vcjob_single_node.yaml"), (2, "k8s_vcjob_two_node.yaml")]
)
def test_field_by_field_equal_to_the_manuals_template(rendered, nodes, table):
    configmap, job = rendered[nodes]
    expected_configmap, expected_job = manual(table, MANUAL_VALUES)
    assert configmap == expected_configmap
    # The one deliberate difference: the manual's two-node example keeps minAvailable 1; we gang
    # schedule every pod (k8s_job_min_available), so that one rank does not start alone.
    assert job["spec"].pop("minAvailable") == nodes
    assert expected_job["spec"].pop("minAvailable") == 1
    assert job == expected_job


def test_the_apply_path_goes_as_far_as_the_missing_api_server(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                  "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {"token": "unused"}}],
    }))  # fmt: skip
    result = run_playbook(
        "k8s.yml", inventory(tmp_path, 1), extravars={"k8s_job_kubeconfig": str(kubeconfig)}
    )
    assert not result.succeeded
    message = result.first_failure()
    assert f"Could not apply the manifests in {tmp_path / 'rendered'} with kubeconfig {kubeconfig}" in message
    assert "Connection refused" in message
    assert "Check that the API server in that kubeconfig answers from here" in message
    # Rendered first, so the manifests are there to look at.
    assert (tmp_path / "rendered" / "job.yml").is_file()
