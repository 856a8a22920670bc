import os
import socket
from collections.abc import Iterator

import pytest
from ports import free_ports

from bookstore import portcheck
from bookstore.launcher import services_of
from bookstore.settings import from_env

SERVICES = 11  # the ports of one system: every service binds one


def env_on(ports: list[int]) -> dict[str, str]:
    return {
        "ORCHESTRATOR_ADDRESS": f"127.0.0.1:{ports[0]}",
        "TRANSACTION_VERIFICATION_ADDRESS": f"127.0.0.1:{ports[1]}",
        "FRAUD_DETECTION_ADDRESS": f"127.0.0.1:{ports[2]}",
        "SUGGESTIONS_ADDRESS": f"127.0.0.1:{ports[3]}",
        "ORDER_QUEUE_ADDRESS": f"127.0.0.1:{ports[4]}",
        "ORDER_EXECUTOR_ADDRESSES": f"1=127.0.0.1:{ports[5]},2=127.0.0.1:{ports[6]}",
        "PAYMENT_ADDRESS": f"127.0.0.1:{ports[7]}",
        "BOOKS_DATABASE_ADDRESSES": ",".join(
            f"{i}=127.0.0.1:{port}" for i, port in enumerate(ports[8:11], start=1)
        ),
        "BOOKSTORE_BIND_HOST": "127.0.0.1",
    }


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_ports(1)[0]))
        sock.listen()
        yield sock


def test_free_ports_pass() -> None:
    assert portcheck.busy_ports(from_env(env_on(free_ports(SERVICES)))) == []


def test_a_held_port_is_named_with_its_service_and_process(listening: socket.socket) -> None:
    ports = free_ports(SERVICES)
    ports[4] = listening.getsockname()[1]
    busy = portcheck.busy_ports(from_env(env_on(ports)))
    assert [(b.service, b.port) for b in busy] == [("order-queue", ports[4])]
    text = str(busy[0])
    assert f"port {ports[4]} (order-queue, 127.0.0.1:{ports[4]}) is in use" in text
    assert f"by pid {os.getpid()} (" in text  # this test process holds it


def test_every_service_of_the_system_is_checked() -> None:
    settings = from_env(env_on(list(range(20001, 20001 + SERVICES))))
    binds = portcheck.binds_of(settings)
    assert [name for name, _, _ in binds] == [s.name for s in services_of(settings)]
    assert {port for _, _, port in binds} == set(range(20001, 20001 + SERVICES))
    assert {host for _, host, _ in binds} == {"127.0.0.1"}


def test_an_address_this_machine_does_not_have_is_reported() -> None:
    env = env_on(free_ports(SERVICES)) | {"BOOKSTORE_BIND_HOST": "192.0.2.1"}  # TEST-NET-1
    busy = portcheck.busy_ports(from_env(env))
    assert len(busy) == SERVICES
    assert all("cannot be bound" in str(b) for b in busy)
