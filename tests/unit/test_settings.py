from pathlib import Path

import pytest

from bookstore.settings import Settings, SettingsError, from_env


def test_defaults_match_the_documented_ports() -> None:
    s = from_env({})
    assert s.orchestrator_address.endswith(":8081")
    assert s.fraud_detection_address.endswith(":50051")
    assert s.transaction_verification_address.endswith(":50052")
    assert s.suggestions_address.endswith(":50053")
    assert s.order_queue_address.endswith(":50054")
    assert [s.order_executor_addresses[i] for i in (1, 2, 3, 4)] == [
        f"127.0.0.1:{p}" for p in (50055, 50056, 50057, 50058)
    ]
    assert s.bind_host == "127.0.0.1"
    assert not s.ai_enabled


def test_environment_overrides_addresses_and_data_dir(tmp_path: Path) -> None:
    s = from_env(
        {
            "FRAUD_DETECTION_ADDRESS": "fd:6000",
            "ORDER_EXECUTOR_ADDRESSES": "1=e1:7001, 2=e2:7002",
            "BOOKSTORE_DATA_DIR": str(tmp_path),
            "BOOKSTORE_BIND_HOST": "0.0.0.0",
            "GOOGLE_API_KEY": "k",
        }
    )
    assert s.fraud_detection_address == "fd:6000"
    assert s.order_executor_addresses == {1: "e1:7001", 2: "e2:7002"}
    assert s.data_dir == tmp_path
    assert s.bind_address("fraud-detection") == "0.0.0.0:6000"
    assert s.bind_address("order-executor", 2) == "0.0.0.0:7002"
    assert s.ai_enabled


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FRAUD_DETECTION_ADDRESS": "nohost"}, "FRAUD_DETECTION_ADDRESS"),
        ({"ORDER_QUEUE_ADDRESS": "q:99999"}, "ORDER_QUEUE_ADDRESS"),
        ({"ORDER_EXECUTOR_ADDRESSES": "x=e:1"}, "ORDER_EXECUTOR_ADDRESSES"),
        ({"ORDER_QUEUE_LEASE_S": "soon"}, "ORDER_QUEUE_LEASE_S"),
        ({"ORCHESTRATOR_MAX_ITEMS": "-1"}, "ORCHESTRATOR_MAX_ITEMS"),
        (
            {"ORDER_EXECUTOR_HEARTBEAT_S": "2", "ORDER_EXECUTOR_LEADER_SILENCE_S": "1.5"},
            "ORDER_EXECUTOR_HEARTBEAT_S",
        ),
        ({"ORCHESTRATOR_MAX_IN_FLIGHT": "0"}, "ORCHESTRATOR_MAX_IN_FLIGHT"),
        ({"ORCHESTRATOR_ADMISSION_WAIT_S": "-1"}, "ORCHESTRATOR_ADMISSION_WAIT_S"),
        ({"ORCHESTRATOR_ADMISSION_QUEUE": "-1"}, "ORCHESTRATOR_ADMISSION_QUEUE"),
        ({"ORCHESTRATOR_ADMISSION_INTERVAL_S": "0"}, "ORCHESTRATOR_ADMISSION_INTERVAL_S"),
    ],
)
def test_a_malformed_value_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        from_env(env)


def test_unknown_replica_id_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="replica id 9"):
        Settings().address_of("order-executor", 9)


def test_hardening_settings_default_safe_and_read_from_the_environment() -> None:
    d = from_env({})
    assert d.tls and d.queue_retention_s == 24 * 3600 and d.queue_sweep_interval_s == 60
    s = from_env(
        {
            "BOOKSTORE_TLS": "off",
            "ORDER_QUEUE_RETENTION_S": "600",
            "ORDER_QUEUE_SWEEP_INTERVAL_S": "5",
        }
    )
    assert (s.tls, s.queue_retention_s, s.queue_sweep_interval_s) == (False, 600, 5)
    assert from_env({"BOOKSTORE_TLS": "1"}).tls
    with pytest.raises(SettingsError, match="BOOKSTORE_TLS"):
        from_env({"BOOKSTORE_TLS": "maybe"})


def test_execution_settings_are_read_from_the_environment() -> None:
    d = from_env({})
    assert (d.execution_concurrency, d.test_crash_at) == (32, "")
    s = from_env({"ORDER_EXECUTOR_CONCURRENCY": "4", "BOOKSTORE_TEST_CRASH_AT": "after-log"})
    assert (s.execution_concurrency, s.test_crash_at) == (4, "after-log")
    assert from_env({"ORDER_EXECUTOR_CONCURRENCY": "0"}).execution_concurrency == 1
    with pytest.raises(SettingsError, match="ORDER_EXECUTOR_CONCURRENCY"):
        from_env({"ORDER_EXECUTOR_CONCURRENCY": "many"})


def test_admission_settings_are_read_from_the_environment() -> None:
    d = from_env({})
    assert (d.max_in_flight, d.admission_wait_s) == (64, 3.0)
    assert (d.admission_interval_s, d.admission_queue) == (1.0, 1024)
    s = from_env(
        {
            "ORCHESTRATOR_MAX_IN_FLIGHT": "16",
            "ORCHESTRATOR_ADMISSION_WAIT_S": "0.5",
            "ORCHESTRATOR_ADMISSION_INTERVAL_S": "2",
            "ORCHESTRATOR_ADMISSION_QUEUE": "0",
        }
    )
    assert (s.max_in_flight, s.admission_wait_s) == (16, 0.5)
    assert (s.admission_interval_s, s.admission_queue) == (2.0, 0)
