"""deploy/k8s: schema-valid (strict) for every Kubernetes version kubernetes-validate knows, broken variants
rejected, and the StatefulSet wired for a 3-voter quorum that survives rolling restarts.

kubernetes-validate's CLI only warns (exit 0) on an unknown kind or apiVersion, so the tests use its API,
which raises SchemaNotFoundError; the CLI run covers the documented command line.
"""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest
import yaml
from conftest import DOCKERFILE, K8S_DIR, tool

from cluster.config import BrokerConfig, read_properties_file

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (the `test` extra)")
from kubernetes_validate import utils as kv_utils  # noqa: E402

MANIFESTS = sorted(path for path in K8S_DIR.glob("*.yaml") if path.name != "kustomization.yaml")


def k8s_versions() -> list[str]:
    return sorted(set(kv_utils.all_versions()), key=lambda v: tuple(int(p) for p in v.split(".")))


def documents() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> list[dict]:
    return [doc for doc in documents() if doc["kind"] == kind]


def statefulset() -> dict:
    (sts,) = by_kind("StatefulSet")
    return sts


def container() -> dict:
    (main,) = statefulset()["spec"]["template"]["spec"]["containers"]
    return main


# -- schema validation ------------------------------------------------------------------------------------------------
def test_knows_several_kubernetes_versions():
    assert len(k8s_versions()) >= 3


@pytest.mark.parametrize("version", k8s_versions())
def test_manifests_validate_strictly(version):
    for doc in documents():
        kv.validate(doc, version, strict=True)  # raises ValidationError / SchemaNotFoundError


def test_kubernetes_validate_cli_strict_on_every_version():
    binary = tool("kubernetes-validate")
    if binary is None:
        pytest.skip("kubernetes-validate CLI not on PATH")
    for version in k8s_versions():
        result = subprocess.run([binary, "--strict", "--quiet", "-k", version, *map(str, MANIFESTS)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{version}: {result.stdout}{result.stderr}"


def test_kustomize_render_validates():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl unavailable: cannot render the kustomization")
    result = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(doc["kind"] for doc in rendered) == sorted(doc["kind"] for doc in documents())
    for doc in rendered:
        kv.validate(doc, k8s_versions()[-1], strict=True)


def _set(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value


BROKEN = {
    "replicas not an integer": ("StatefulSet", "spec.replicas", "three", kv.ValidationError),
    "probe period not an integer": ("StatefulSet",
                                    "spec.template.spec.containers.0.readinessProbe.periodSeconds", "five",
                                    kv.ValidationError),
    "misspelled field (strict only)": ("StatefulSet", "spec.template.spec.terminationGracePeriodSecond", 60,
                                       kv.ValidationError),
    "removed apiVersion": ("PodDisruptionBudget", "apiVersion", "policy/v1beta1", kv.SchemaNotFoundError),
    "service port as text": ("Service", "spec.ports.0.port", "kafka", kv.ValidationError),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_manifests_fail_validation(name):
    kind, path, value, error = BROKEN[name]
    doc = copy.deepcopy(by_kind(kind)[0])
    kv.validate(copy.deepcopy(doc), k8s_versions()[-1], strict=True)  # control: the original passes
    _set(doc, path, value)
    with pytest.raises(error):
        kv.validate(doc, k8s_versions()[-1], strict=True)


def test_broken_manifest_fails_the_cli(tmp_path):
    binary = tool("kubernetes-validate")
    if binary is None:
        pytest.skip("kubernetes-validate CLI not on PATH")
    sts = statefulset()
    sts["spec"]["replicas"] = "three"
    broken = tmp_path / "statefulset.yaml"
    broken.write_text(yaml.safe_dump(sts))
    result = subprocess.run([binary, "--strict", "--quiet", "-k", k8s_versions()[-1], str(broken)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "three" in result.stdout + result.stderr


# -- structure ----------------------------------------------------------------------------------------------------------
def test_statefulset_three_voters_parallel_rolling():
    spec = statefulset()["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    (claim,) = spec["volumeClaimTemplates"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container()["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/kraftpy"


def test_headless_service_publishes_not_ready_voters():
    sts = statefulset()
    headless = [svc for svc in by_kind("Service") if svc["metadata"]["name"] == sts["spec"]["serviceName"]]
    assert len(headless) == 1
    spec = headless[0]["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True  # voters must find each other before any is ready
    assert spec["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    clients = [svc for svc in by_kind("Service") if svc["spec"].get("clusterIP") != "None"]
    assert len(clients) == 1 and any(port["port"] == 9092 for port in clients[0]["spec"]["ports"])


def test_probes_use_readyz_and_healthz_on_a_declared_port():
    main = container()
    port_names = {port["name"] for port in main["ports"]}
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["port"] in port_names


def test_pdb_allows_one_voter_down():
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_runs_as_the_image_user():
    security = statefulset()["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"USER {security['runAsUser']}:{security['runAsGroup']}" in DOCKERFILE.read_text()


def test_config_map_voters_are_the_headless_names_of_the_pods(tmp_path):
    sts = statefulset()
    (config_map,) = by_kind("ConfigMap")
    properties_file = tmp_path / "server.properties"
    properties_file.write_text(config_map["data"]["server.properties"])
    # What pod kraftpy-1 sees: the mounted file plus the env the entrypoint and the manifest set.
    env = {"KRAFTPY_NODE_ID": "2",
           "KRAFTPY_ADVERTISED_LISTENERS": "PLAINTEXT://kraftpy-1.kraftpy-headless.ns.svc:9092"}
    config = BrokerConfig.from_sources(read_properties_file(str(properties_file)), environ=env)
    voters = config.get("controller.quorum.voters")
    assert len(voters) == 3
    controller_port = next(p["containerPort"] for p in container()["ports"] if p["name"] == "controller")
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert voters == [f"{ordinal + 1}@{name}-{ordinal}.{service}:{controller_port}" for ordinal in range(3)]
    assert config.log_dir.startswith("/var/lib/kraftpy/")
    mounts = {mount["name"]: mount["mountPath"] for mount in container()["volumeMounts"]}
    assert mounts["config"] == "/etc/kraftpy"


def test_advertised_listener_is_the_pods_stable_name():
    env = {item["name"]: item for item in container()["env"]}
    advertised = env["KRAFTPY_ADVERTISED_LISTENERS"]["value"]
    assert advertised.startswith(f"PLAINTEXT://$(POD_NAME).{statefulset()['spec']['serviceName']}.")
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # $(VAR) expands only variables defined earlier in the list.
    names = [item["name"] for item in container()["env"]]
    assert names.index("POD_NAME") < names.index("KRAFTPY_ADVERTISED_LISTENERS")


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(path.name for path in MANIFESTS)
