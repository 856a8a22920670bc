"""deploy/base, as `kubectl kustomize` renders it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from bookstore.settings import Settings, from_env, split_address

# The Kubernetes version the objects are validated against (strict schemas).
KUBERNETES_VERSION = "1.33.0"
STATELESS = ("orchestrator", "transaction-verification", "fraud-detection", "suggestions")
# StatefulSets of replicas with an id from the pod ordinal: name -> replicas
REPLICATED = {"order-executor": 4, "books-database": 3}
# StatefulSets that keep their state on a volume claim of each pod
DURABLE = ("order-queue", "books-database", "payment")


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    pytest.fail(f"no {kind} {name} in the rendered base")


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def _config(objects: list[dict[str, Any]]) -> dict[str, str]:
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def _settings(objects: list[dict[str, Any]]) -> Settings:
    return from_env(_config(objects))


def _port(address: str) -> int:
    return split_address(address, "address")[1]


def test_kustomize_renders_the_base(k8s_objects: list[dict[str, Any]]) -> None:
    kinds = sorted({o["kind"] for o in k8s_objects})
    assert kinds == ["ConfigMap", "Deployment", "Service", "StatefulSet"]


def test_every_rendered_object_is_valid_kubernetes(k8s_objects: list[dict[str, Any]]) -> None:
    for obj in k8s_objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")


def test_stateless_services_are_deployments(k8s_objects: list[dict[str, Any]]) -> None:
    for name in STATELESS:
        deployment = _find(k8s_objects, "Deployment", name)
        assert _container(deployment)["command"] == ["bookstore", "serve", name]


@pytest.mark.parametrize(("name", "replicas"), REPLICATED.items())
def test_replicas_are_a_statefulset_behind_a_headless_service(
    k8s_objects: list[dict[str, Any]], name: str, replicas: int
) -> None:
    workload = _find(k8s_objects, "StatefulSet", name)
    assert workload["spec"]["replicas"] == replicas
    assert workload["spec"]["podManagementPolicy"] == "Parallel"
    service = _find(k8s_objects, "Service", workload["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize(
    ("name", "ordinal"),
    [(name, ordinal) for name, replicas in REPLICATED.items() for ordinal in range(replicas)],
)
def test_a_replica_takes_its_id_from_the_pod_ordinal(
    k8s_objects: list[dict[str, Any]], fake_bookstore: Path, name: str, ordinal: int
) -> None:
    command = _container(_find(k8s_objects, "StatefulSet", name))["command"]
    env = {"PATH": f"{fake_bookstore}:/usr/bin:/bin", "HOSTNAME": f"{name}-{ordinal}"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["serve", name, "--replica-id", str(ordinal + 1)]


@pytest.mark.parametrize(("name", "replicas"), REPLICATED.items())
def test_replica_addresses_name_each_pod_through_the_headless_service(
    k8s_objects: list[dict[str, Any]], name: str, replicas: int
) -> None:
    settings = _settings(k8s_objects)
    workload = _find(k8s_objects, "StatefulSet", name)
    port = _container(workload)["ports"][0]["containerPort"]
    headless = workload["spec"]["serviceName"]
    addresses = {
        "order-executor": settings.order_executor_addresses,
        "books-database": settings.books_database_addresses,
    }[name]
    assert addresses == {i: f"{name}-{i - 1}.{headless}:{port}" for i in range(1, replicas + 1)}
    # Every replica binds the port of its own entry: the one the pod exposes.
    for i in range(1, replicas + 1):
        assert settings.bind_address(name, i) == f"0.0.0.0:{port}"


@pytest.mark.parametrize("name", DURABLE)
def test_durable_services_keep_their_data_on_a_volume_claim_per_pod(
    k8s_objects: list[dict[str, Any]], name: str
) -> None:
    workload = _find(k8s_objects, "StatefulSet", name)
    assert workload["spec"]["replicas"] == REPLICATED.get(name, 1)
    claims = {c["metadata"]["name"]: c for c in workload["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in _container(workload)["volumeMounts"]}
    assert set(claims) == set(mounts)
    assert all(c["spec"]["accessModes"] == ["ReadWriteOnce"] for c in claims.values())
    data_dir = str(_settings(k8s_objects).data_dir)
    assert data_dir in mounts.values()
    assert workload["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


def test_probes_ask_each_service_on_its_own_port(k8s_objects: list[dict[str, Any]]) -> None:
    settings = _settings(k8s_objects)
    for workload in _workloads(k8s_objects):
        name = workload["metadata"]["name"]
        container = _container(workload)
        (port,) = [p["containerPort"] for p in container["ports"]]
        replica = 1 if name in REPLICATED else None
        assert port == _port(settings.address_of(name, replica)), name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container[probe]
            if name == "orchestrator":
                assert spec["httpGet"]["path"] == "/healthz"
                assert spec["httpGet"]["port"] in ("http", port)
            else:
                assert spec["grpc"]["port"] == port, (name, probe)


def test_every_container_has_resource_requests_and_limits(
    k8s_objects: list[dict[str, Any]],
) -> None:
    for workload in _workloads(k8s_objects):
        resources = _container(workload)["resources"]
        for bound in ("requests", "limits"):
            assert set(resources[bound]) >= {"cpu", "memory"}, workload["metadata"]["name"]


def test_containers_run_as_the_images_non_root_user(k8s_objects: list[dict[str, Any]]) -> None:
    for workload in _workloads(k8s_objects):
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == 10001
        assert _container(workload)["securityContext"]["allowPrivilegeEscalation"] is False


def test_each_service_reaches_its_workload(k8s_objects: list[dict[str, Any]]) -> None:
    settings = _settings(k8s_objects)
    for workload in _workloads(k8s_objects):
        name = workload["metadata"]["name"]
        service = _find(k8s_objects, "Service", name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        (port,) = service["spec"]["ports"]
        if name not in REPLICATED:
            host, number = split_address(settings.address_of(name), name)
            assert (host, number) == (name, port["port"])


def test_every_workload_reads_the_shared_config_map(k8s_objects: list[dict[str, Any]]) -> None:
    (config_map,) = [o for o in k8s_objects if o["kind"] == "ConfigMap"]
    for workload in _workloads(k8s_objects):
        sources = _container(workload)["envFrom"]
        assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in sources


def test_kubernetes_uses_only_variables_that_settings_reads(
    k8s_objects: list[dict[str, Any]], settings_env_names: frozenset[str]
) -> None:
    names = set(_config(k8s_objects))
    for workload in _workloads(k8s_objects):
        names |= {e["name"] for e in _container(workload).get("env", [])}
    assert not names - settings_env_names, sorted(names - settings_env_names)


def test_pods_get_only_the_configured_variables(k8s_objects: list[dict[str, Any]]) -> None:
    # Service links would add ORDER_QUEUE_PORT=tcp://... and the like beside our settings.
    for workload in _workloads(k8s_objects):
        pod = workload["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False, workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, workload["metadata"]["name"]
