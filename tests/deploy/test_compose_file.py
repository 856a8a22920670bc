"""compose.yaml, as `docker-compose config` resolves it."""

from __future__ import annotations

from typing import Any

import pytest

from bookstore.settings import SERVICES, from_env, split_address


def _serve_args(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "commands are exec form lists"
    assert command[:2] == ["bookstore", "serve"], command
    return [str(part) for part in command[2:]]


def _runs(service: dict[str, Any]) -> tuple[str, int | None]:
    args = _serve_args(service)
    replica_id = int(args[args.index("--replica-id") + 1]) if "--replica-id" in args else None
    return args[0], replica_id


def test_docker_compose_accepts_the_file(compose_config: dict[str, Any]) -> None:
    assert compose_config["services"]


def test_every_service_runs_in_its_own_container(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    ran = {_runs(s)[0] for s in services.values()}
    assert ran == set(SERVICES)
    for name, service in services.items():
        runs, _ = _runs(service)
        assert name == runs or name.startswith(f"{runs}-"), (name, runs)


@pytest.mark.parametrize(("service", "replicas"), [("order-executor", 4), ("books-database", 3)])
def test_replicas_have_distinct_stable_ids(
    compose_config: dict[str, Any], service: str, replicas: int
) -> None:
    found = {
        name: _runs(s)[1]
        for name, s in compose_config["services"].items()
        if _runs(s)[0] == service
    }
    assert found == {f"{service}-{i}": i for i in range(1, replicas + 1)}


def test_every_address_names_the_service_that_listens_there(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    for name, service in services.items():
        settings = from_env(service["environment"])  # also: the values parse
        runs, replica_id = _runs(service)
        host, _ = split_address(settings.address_of(runs, replica_id), name)
        assert host == name, f"{name} is reached at {host}"
        assert settings.bind_host == "0.0.0.0"
        for rid, address in settings.order_executor_addresses.items():
            assert split_address(address, "ORDER_EXECUTOR_ADDRESSES")[0] in services, rid
        for rid, address in settings.books_database_addresses.items():
            assert split_address(address, "BOOKS_DATABASE_ADDRESSES")[0] in services, rid


def test_every_service_gets_the_same_environment(compose_config: dict[str, Any]) -> None:
    environments = [s["environment"] for s in compose_config["services"].values()]
    assert all(env == environments[0] for env in environments)


@pytest.mark.parametrize(
    ("name", "volume"),
    [
        ("order-queue", "queue-data"),
        ("payment", "payment-data"),
        *((f"books-database-{i}", f"books-data-{i}") for i in (1, 2, 3)),
    ],
)
def test_durable_data_lives_on_a_named_volume_per_container(
    compose_config: dict[str, Any], name: str, volume: str
) -> None:
    service = compose_config["services"][name]
    data_dir = service["environment"]["BOOKSTORE_DATA_DIR"]
    mounts = []
    for entry in service["volumes"]:
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry["source"], entry["target"]
        mounts.append((source, target))
    assert mounts == [(volume, data_dir)]
    assert volume in compose_config["volumes"]


def test_every_service_has_a_health_check_of_its_own(compose_config: dict[str, Any]) -> None:
    for name, service in compose_config["services"].items():
        test = service["healthcheck"]["test"]
        assert test[:2] == ["CMD", "bookstore-healthcheck"], name
        assert [str(part) for part in test[2:]] == _serve_args(service), name


def test_every_service_restarts_unless_stopped(compose_config: dict[str, Any]) -> None:
    for name, service in compose_config["services"].items():
        assert service["restart"] == "unless-stopped", name


def test_services_start_after_what_they_need_is_healthy(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    needs = services["orchestrator"]["depends_on"]
    for dependency in ("transaction-verification", "fraud-detection", "suggestions", "order-queue"):
        assert needs[dependency]["condition"] == "service_healthy", dependency
    for i in (1, 2, 3, 4):
        executor = services[f"order-executor-{i}"]
        assert executor["depends_on"]["order-queue"]["condition"] == "service_healthy"
    for service in services.values():
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services
            assert how["condition"] in ("service_healthy", "service_started")


def test_the_orchestrator_is_published_on_8081(compose_config: dict[str, Any]) -> None:
    ports = compose_config["services"]["orchestrator"]["ports"]
    published = {(int(p["published"]), int(p["target"])) for p in ports}
    assert (8081, 8081) in published
    for name, service in compose_config["services"].items():
        assert name == "orchestrator" or "ports" not in service, f"{name} is published"


def test_compose_uses_only_variables_that_settings_reads(
    compose_config: dict[str, Any], settings_env_names: frozenset[str]
) -> None:
    for name, service in compose_config["services"].items():
        unknown = set(service["environment"]) - settings_env_names
        assert not unknown, f"{name}: {sorted(unknown)} are not read by settings.py"
