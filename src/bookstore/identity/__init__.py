"""Service identity: who is calling, proved with mutual TLS.

One CA owned by the deployment signs a certificate per service; each carries
a SPIFFE-style URI (`spiffe://bookstore/orchestrator`,
`spiffe://bookstore/order-executor/3`, ...) and the DNS names or IPs the
service is reached at. `certs` makes them (the `cryptography` package),
`credentials` turns them into gRPC server and channel credentials, and
`policy` says which identity may call which method, enforced by a server
interceptor.

This module itself imports nothing heavy: the launcher and `bookstore serve`
ask it the names and whether to warn without loading gRPC or cryptography.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bookstore.settings import Settings, SettingsError, split_address

CA_NAME = "ca"  # the CA's files: ca.pem, ca.key
TRUST_DOMAIN = "bookstore"
PREFIX = f"spiffe://{TRUST_DOMAIN}/"
PLAINTEXT_WARNING = (
    "BOOKSTORE_TLS is off: every gRPC connection is plaintext and unauthenticated, so"
    " anyone who reaches a port can call anything (enqueue, register as leader, ...)."
    " Use this only to learn with grpcurl on a machine of your own."
)


def spiffe_id(service: str, replica_id: int | None = None) -> str:
    """`spiffe://bookstore/SERVICE` or, for a replica, `.../SERVICE/N`."""
    return PREFIX + service + ("" if replica_id is None else f"/{replica_id}")


@dataclass(frozen=True)
class Identity:
    name: str  # file name stem: "order-executor-3"
    spiffe_id: str
    hosts: tuple[str, ...]  # DNS names and IPs it is reached at (server-name checks)


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def _hosts(*addresses: str) -> tuple[str, ...]:
    hosts = [split_address(a, "address")[0] for a in addresses]
    return tuple(dict.fromkeys(h for h in [*hosts, *LOCAL_HOSTS] if h not in ("0.0.0.0", "::")))


def identities_of(settings: Settings) -> list[Identity]:
    """Every service of the deployment with its identity and hosts, plus the
    launcher's (its health probes are callers too)."""
    orchestrator = _hosts(settings.orchestrator_address)
    result = [Identity("orchestrator", spiffe_id("orchestrator"), orchestrator)]
    for service in ("transaction-verification", "fraud-detection", "suggestions"):
        address = settings.checkout_address(service)
        result.append(Identity(service, spiffe_id(service), _hosts(address)))
    result.append(
        Identity("order-queue", spiffe_id("order-queue"), _hosts(settings.order_queue_address))
    )
    for rid, address in sorted(settings.order_executor_addresses.items()):
        result.append(
            Identity(f"order-executor-{rid}", spiffe_id("order-executor", rid), _hosts(address))
        )
    for rid, address in sorted(settings.books_database_addresses.items()):
        result.append(
            Identity(f"books-database-{rid}", spiffe_id("books-database", rid), _hosts(address))
        )
    result.append(Identity("payment", spiffe_id("payment"), _hosts(settings.payment_address)))
    result.append(Identity("launcher", spiffe_id("launcher"), _hosts()))
    return result


def identity_of(settings: Settings, service: str, replica_id: int | None = None) -> Identity:
    """The identity of `service` (replica `replica_id`); KeyError for none."""
    name = service if replica_id is None else f"{service}-{replica_id}"
    for identity in identities_of(settings):
        if identity.name == name:
            return identity
    raise KeyError(f"no identity for {name}")


class MissingCertificate(SettingsError):
    """A certificate or key is not where it should be; the message says where."""


def tls_dir(settings: Settings) -> Path:
    """Where the CA and the certificates are: BOOKSTORE_TLS_DIR (a mounted
    volume or Secret), else BOOKSTORE_DATA_DIR/tls, where `bookstore up` makes them."""
    return settings.tls_dir or settings.data_dir / "tls"


def plaintext_warning(settings: Settings) -> str | None:
    """The start-up warning when TLS is switched off, else None."""
    return None if settings.tls else PLAINTEXT_WARNING
