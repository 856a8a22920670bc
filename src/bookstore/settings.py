"""Every setting of every service, read from the environment in this one place.

Each value has its default beside it. The same variables configure all three
ways to run: `bookstore up` on one machine, Docker Compose and Kubernetes.
A malformed value stops the start with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar

# The three services that run the checkout events, in vector-clock order
# (choreography/events.py names them TV, FD and SUG).
CHECKOUT_SERVICES = ("transaction-verification", "fraud-detection", "suggestions")
SERVICES = (
    "orchestrator",
    *CHECKOUT_SERVICES,
    "order-queue",
    "order-executor",
    "books-database",
    "payment",
)
EXECUTOR_IDS = (1, 2, 3, 4)
BOOKS_DATABASE_IDS = (1, 2, 3)


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it."""


# The exit code of a `bookstore` command that stops on a SettingsError (sysexits.h's
# EX_CONFIG): starting the process again would fail alike, so `bookstore up` does not.
EXIT_CONFIG = 78


def _env_name(service: str) -> str:
    return service.upper().replace("-", "_")


@dataclass(frozen=True)
class Settings:
    # Addresses other services use to reach each service ("host:port"); the comment
    # on each field is its meaning in README's configuration table
    # (scripts/config_table.py writes it).
    orchestrator_address: str = "127.0.0.1:8081"  # the shop and HTTP API (port fixed by course)
    fraud_detection_address: str = "127.0.0.1:50051"  # fraud detection
    transaction_verification_address: str = "127.0.0.1:50052"  # transaction verification
    suggestions_address: str = "127.0.0.1:50053"  # the suggestions service
    order_queue_address: str = "127.0.0.1:50054"  # the order queue
    order_executor_addresses: Mapping[int, str] = field(  # replica id = address, comma-separated
        default_factory=lambda: {i: f"127.0.0.1:{50054 + i}" for i in EXECUTOR_IDS}
    )
    bind_host: str = "127.0.0.1"  # interface every service binds (containers: 0.0.0.0)
    data_dir: Path = Path.home() / ".local" / "share" / "bookstore"  # state (the queue's database)
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR
    uvloop: bool = True  # every service's event loop is uvloop (off: asyncio's own)
    gc_freeze: bool = True  # the heap built at start-up is frozen out of the collector

    # Orchestrator
    checkout_timeout_s: float = 5.0  # whole checkout pipeline; past it: 503
    rpc_timeout_s: float = 2.0  # deadline of each RPC the orchestrator makes; missed: 503
    execution_wait_s: float = 10.0  # how long POST /checkout waits for "executed"
    max_body_bytes: int = 1024 * 1024  # larger request bodies answer 413
    max_items: int = 100  # most order lines (different books) per order
    max_quantity: int = 100  # most copies of one book per order
    orders_kept: int = 10_000  # finished orders kept in memory for GET /orders/{id}
    orders_kept_bytes: int = 64 * 1024 * 1024  # and at most about this many bytes of them
    enqueue_retry_s: float = 8.0  # an enqueue the queue refuses is retried this long
    # Admission control (orchestrator/admission.py): checkouts beyond the bound in
    # flight wait for a slot, first come first served (newest first under an overload);
    # one still waiting at its deadline, or arriving at a full queue, answers 503.
    max_in_flight: int = 64  # checkouts in flight at most (at least 1)
    min_in_flight: int = 16  # under an overload, the slots never fall below this (>= 1)
    admission_target_s: float = 0.5  # overload: slots = answers/s x max(this, unqueued time)
    admission_wait_s: float = 3.0  # a checkout waits this long for a slot at most
    admission_interval_s: float = 1.0  # a queue not empty this long is an overload (> 0)
    admission_queue: int = 1024  # checkouts waiting for a slot at most
    idempotency_keys_kept: int = 100_000  # Idempotency-Key answers kept (24 h at most)
    idempotency_keys_bytes: int = 64 * 1024 * 1024  # and at most about this many bytes

    # Key of the card fingerprints fraud detection's deny list matches on. Must be
    # the same for the orchestrator and fraud detection, and secret: with a known
    # key, BIN + last four + fingerprint give the number away. Empty: a public
    # development key (with a warning); `bookstore up` makes a random one per run.
    card_fingerprint_key: str = ""

    # Checkout services
    unfinished_order_ttl_s: float = 60.0  # an order never finalized is dropped (with an error)

    # Order queue
    lease_s: float = 2.0  # an unfinished lease is handed out again after this
    group_commit_max: int = 256  # most writes fsynced together

    # Order executors (Bully). heartbeat < leader_silence; aim: failover <= 1.5 s.
    # A killed leader's connection closes and its followers elect at once; the silence
    # only catches a paused or cut-off leader, so it can leave a loaded machine three
    # heartbeats of margin. failure_timeout is also how long the queue keeps a higher
    # leader that called it (LEADER_ALIVE), so a winner retries that long.
    heartbeat_s: float = 0.5  # the leader's COORDINATOR to every follower this often
    leader_silence_s: float = 1.5  # no heartbeat from the leader this long -> election
    failure_timeout_s: float = 0.5  # leader quiet at the queue / leaderless this long
    election_timeout_s: float = 0.25  # no ANSWER this long -> I win
    coordinator_timeout_s: float = 0.6  # ANSWER but no COORDINATOR this long -> re-elect
    queue_unreachable_s: float = 1.0  # leader cut off from the queue this long steps down
    execution_work_s: float = 0.0  # simulated work per executed order
    execution_concurrency: int = 32  # orders the leader executes at once (each one 2PC txn)
    # Test only: "after-prepare", "after-log" or "between-commits" SIGKILLs the leader there once.
    test_crash_at: str = ""  # test only: where the leader kills itself once (2PC recovery tests)

    # AI (Gemini). No key -> AI off, rule and catalogue fallbacks only.
    gemini_api_key: str = ""  # turns the AI on (never logged)
    gemini_model: str = "gemini-2.5-flash"  # the Gemini model asked
    gemini_base_url: str = ""  # empty: Google's endpoint; tests point it at a fake
    gemini_api_version: str = "v1beta"  # pinned API version
    ai_call_timeout_s: float = 2.0  # deadline of one AI call (one retry on 5xx or no link)
    ai_order_budget_s: float = 3.0  # total AI wait per checkout, all checks together
    ai_breaker_failures: int = 3  # consecutive failures that open the circuit
    ai_breaker_cooldown_s: float = 30.0  # an open circuit lets a probe call through after this
    suggestions_count: int = 3  # books suggested with an approved order

    # Service identity and the queue's retention.
    tls: bool = True  # mutual TLS between services; off only for grpcurl (warned at start)
    tls_dir: Path | None = None  # the CA and certificates (unset: BOOKSTORE_DATA_DIR/tls)
    queue_retention_s: float = 24 * 3600.0  # executed orders leave the queue's file after this
    queue_sweep_interval_s: float = 60.0  # how often the queue looks for them (0: never)

    # Observability (src/bookstore/telemetry/, docs/observability.md). The OpenTelemetry
    # SDK reads OTEL_EXPORTER_OTLP_ENDPOINT and every other OTEL_* variable itself.
    metrics_port_offset: int = 1000  # metrics port = gRPC port + this (0: none)
    # where spans go: OTLP over gRPC, or over HTTP with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
    # (docs/observability.md); empty: tracing off
    otlp_endpoint: str = ""

    # Payment: the simulated card processor, a two-phase-commit participant.
    payment_address: str = "127.0.0.1:50062"  # the payment service
    payment_recovery_interval_s: float = 1.0  # prepared txns ask the decision log this often

    # Books database (replicated stock). heartbeat < election_min <= election_max;
    # a killed primary's connections close and a backup stands at once; a paused or
    # cut-off one is replaced within about election_max + one election round.
    books_database_addresses: Mapping[int, str] = field(  # replica id = address
        default_factory=lambda: {i: f"127.0.0.1:{50058 + i}" for i in BOOKS_DATABASE_IDS}
    )
    books_initial_stock: int | None = None  # every book's stock at first start (unset: catalogue)
    # A backup's election timer runs from the last message it heard, so the heartbeat
    # sets how often the idle primary calls each backup, not how soon a killed one is
    # replaced; under load the Appends are the heartbeats.
    books_heartbeat_s: float = 0.5  # the primary's heartbeat to the backups
    books_election_min_s: float = 1.5  # no primary heard for a random time in [min, max]:
    books_election_max_s: float = 3.0  # a backup starts a new view

    # Fault injection (`bookstore up --chaos`; never on in Compose or Kubernetes).
    chaos: bool = False  # fault panel, load button, scenarios, message faults (1: on)
    chaos_allow_remote: bool = False  # fault endpoints answer callers other than 127.0.0.1

    def checkout_address(self, service: str) -> str:
        return {
            "transaction-verification": self.transaction_verification_address,
            "fraud-detection": self.fraud_detection_address,
            "suggestions": self.suggestions_address,
        }[service]

    def address_of(self, service: str, replica_id: int | None = None) -> str:
        if service == "books-database":
            return _replica_address(
                self.books_database_addresses, replica_id, "BOOKS_DATABASE_ADDRESSES"
            )
        if service == "order-executor":
            if replica_id is None:
                raise SettingsError("order-executor needs a replica id")
            try:
                return self.order_executor_addresses[replica_id]
            except KeyError:
                known = ", ".join(str(i) for i in sorted(self.order_executor_addresses))
                raise SettingsError(
                    f"replica id {replica_id} is not in ORDER_EXECUTOR_ADDRESSES ({known})"
                ) from None
        if service == "orchestrator":
            return self.orchestrator_address
        if service == "order-queue":
            return self.order_queue_address
        if service == "payment":
            return self.payment_address
        return self.checkout_address(service)

    def bind_address(self, service: str, replica_id: int | None = None) -> str:
        """Where `service` listens: bind_host and the port of its address."""
        _, port = split_address(self.address_of(service, replica_id), _env_name(service))
        return f"{self.bind_host}:{port}"

    @property
    def ai_enabled(self) -> bool:
        return bool(self.gemini_api_key)


def split_address(address: str, variable: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{variable}={address!r}: expected host:port")
    return host.strip("[]"), int(port)


N = TypeVar("N", int, float)


def _number(
    env: Mapping[str, str], name: str, default: N, parse: Callable[[str], N], expected: str
) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected {expected}") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r}: must not be negative")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _number(env, name, default, float, "a number")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _number(env, name, default, int, "a whole number")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r}: expected on or off")


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    split_address(value, name)
    return value


def _executor_addresses(
    env: Mapping[str, str], name: str, default: Mapping[int, str]
) -> dict[int, str]:
    """NAME="1=host:port,2=host:port,..." (ids are replica ids)."""
    raw = env.get(name)
    if not raw:
        return dict(default)
    result: dict[int, str] = {}
    for part in raw.split(","):
        rid, sep, address = part.strip().partition("=")
        if not sep or not rid.isdigit() or int(rid) < 1:
            raise SettingsError(f"{name}: {part!r} is not id=host:port")
        split_address(address, name)
        result[int(rid)] = address
    return result


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    e = os.environ if env is None else env
    d = Settings()
    settings = Settings(
        orchestrator_address=_address(e, "ORCHESTRATOR_ADDRESS", d.orchestrator_address),
        fraud_detection_address=_address(e, "FRAUD_DETECTION_ADDRESS", d.fraud_detection_address),
        transaction_verification_address=_address(
            e, "TRANSACTION_VERIFICATION_ADDRESS", d.transaction_verification_address
        ),
        suggestions_address=_address(e, "SUGGESTIONS_ADDRESS", d.suggestions_address),
        order_queue_address=_address(e, "ORDER_QUEUE_ADDRESS", d.order_queue_address),
        order_executor_addresses=_executor_addresses(
            e, "ORDER_EXECUTOR_ADDRESSES", d.order_executor_addresses
        ),
        bind_host=e.get("BOOKSTORE_BIND_HOST") or d.bind_host,
        data_dir=Path(e.get("BOOKSTORE_DATA_DIR") or d.data_dir),
        log_level=(e.get("BOOKSTORE_LOG_LEVEL") or d.log_level).upper(),
        uvloop=_bool(e, "BOOKSTORE_UVLOOP", d.uvloop),
        gc_freeze=_bool(e, "BOOKSTORE_GC_FREEZE", d.gc_freeze),
        checkout_timeout_s=_float(e, "ORCHESTRATOR_CHECKOUT_TIMEOUT_S", d.checkout_timeout_s),
        rpc_timeout_s=_float(e, "BOOKSTORE_RPC_TIMEOUT_S", d.rpc_timeout_s),
        execution_wait_s=_float(e, "ORCHESTRATOR_EXECUTION_WAIT_S", d.execution_wait_s),
        max_body_bytes=_int(e, "ORCHESTRATOR_MAX_BODY_BYTES", d.max_body_bytes),
        max_items=_int(e, "ORCHESTRATOR_MAX_ITEMS", d.max_items),
        max_quantity=_int(e, "ORCHESTRATOR_MAX_QUANTITY", d.max_quantity),
        orders_kept=_int(e, "ORCHESTRATOR_ORDERS_KEPT", d.orders_kept),
        orders_kept_bytes=_int(e, "ORCHESTRATOR_ORDERS_KEPT_BYTES", d.orders_kept_bytes),
        enqueue_retry_s=_float(e, "ORCHESTRATOR_ENQUEUE_RETRY_S", d.enqueue_retry_s),
        max_in_flight=_int(e, "ORCHESTRATOR_MAX_IN_FLIGHT", d.max_in_flight),
        min_in_flight=_int(e, "ORCHESTRATOR_MIN_IN_FLIGHT", d.min_in_flight),
        admission_target_s=_float(e, "ORCHESTRATOR_ADMISSION_TARGET_S", d.admission_target_s),
        admission_wait_s=_float(e, "ORCHESTRATOR_ADMISSION_WAIT_S", d.admission_wait_s),
        admission_interval_s=_float(e, "ORCHESTRATOR_ADMISSION_INTERVAL_S", d.admission_interval_s),
        admission_queue=_int(e, "ORCHESTRATOR_ADMISSION_QUEUE", d.admission_queue),
        idempotency_keys_kept=_int(
            e, "ORCHESTRATOR_IDEMPOTENCY_KEYS_KEPT", d.idempotency_keys_kept
        ),
        idempotency_keys_bytes=_int(
            e, "ORCHESTRATOR_IDEMPOTENCY_KEYS_BYTES", d.idempotency_keys_bytes
        ),
        card_fingerprint_key=e.get("CARD_FINGERPRINT_KEY") or d.card_fingerprint_key,
        unfinished_order_ttl_s=_float(
            e, "CHECKOUT_UNFINISHED_ORDER_TTL_S", d.unfinished_order_ttl_s
        ),
        lease_s=_float(e, "ORDER_QUEUE_LEASE_S", d.lease_s),
        group_commit_max=_int(e, "ORDER_QUEUE_GROUP_COMMIT_MAX", d.group_commit_max),
        heartbeat_s=_float(e, "ORDER_EXECUTOR_HEARTBEAT_S", d.heartbeat_s),
        leader_silence_s=_float(e, "ORDER_EXECUTOR_LEADER_SILENCE_S", d.leader_silence_s),
        failure_timeout_s=_float(e, "ORDER_EXECUTOR_FAILURE_TIMEOUT_S", d.failure_timeout_s),
        election_timeout_s=_float(e, "ORDER_EXECUTOR_ELECTION_TIMEOUT_S", d.election_timeout_s),
        coordinator_timeout_s=_float(
            e, "ORDER_EXECUTOR_COORDINATOR_TIMEOUT_S", d.coordinator_timeout_s
        ),
        queue_unreachable_s=_float(e, "ORDER_EXECUTOR_QUEUE_UNREACHABLE_S", d.queue_unreachable_s),
        execution_work_s=_float(e, "ORDER_EXECUTOR_WORK_S", d.execution_work_s),
        execution_concurrency=max(
            1, _int(e, "ORDER_EXECUTOR_CONCURRENCY", d.execution_concurrency)
        ),
        test_crash_at=e.get("BOOKSTORE_TEST_CRASH_AT", ""),
        gemini_api_key=e.get("GEMINI_API_KEY") or e.get("GOOGLE_API_KEY") or "",
        gemini_model=e.get("GEMINI_MODEL") or d.gemini_model,
        gemini_base_url=e.get("GEMINI_BASE_URL") or d.gemini_base_url,
        gemini_api_version=e.get("GEMINI_API_VERSION") or d.gemini_api_version,
        ai_call_timeout_s=_float(e, "AI_CALL_TIMEOUT_S", d.ai_call_timeout_s),
        ai_order_budget_s=_float(e, "AI_ORDER_BUDGET_S", d.ai_order_budget_s),
        ai_breaker_failures=_int(e, "AI_BREAKER_FAILURES", d.ai_breaker_failures),
        ai_breaker_cooldown_s=_float(e, "AI_BREAKER_COOLDOWN_S", d.ai_breaker_cooldown_s),
        suggestions_count=_int(e, "SUGGESTIONS_COUNT", d.suggestions_count),
        # Service identity and retention
        tls=_bool(e, "BOOKSTORE_TLS", d.tls),
        tls_dir=_optional_path(e, "BOOKSTORE_TLS_DIR"),
        queue_retention_s=_float(e, "ORDER_QUEUE_RETENTION_S", d.queue_retention_s),
        queue_sweep_interval_s=_float(e, "ORDER_QUEUE_SWEEP_INTERVAL_S", d.queue_sweep_interval_s),
        # Observability
        metrics_port_offset=_int(e, "BOOKSTORE_METRICS_PORT_OFFSET", d.metrics_port_offset),
        otlp_endpoint=e.get("OTEL_EXPORTER_OTLP_ENDPOINT") or d.otlp_endpoint,
        # Payment
        payment_address=_address(e, "PAYMENT_ADDRESS", d.payment_address),
        payment_recovery_interval_s=_float(
            e, "PAYMENT_RECOVERY_INTERVAL_S", d.payment_recovery_interval_s
        ),
        # Books database
        books_database_addresses=_executor_addresses(
            e, "BOOKS_DATABASE_ADDRESSES", d.books_database_addresses
        ),
        books_initial_stock=_optional_int(e, "BOOKS_INITIAL_STOCK"),
        books_heartbeat_s=_float(e, "BOOKS_DATABASE_HEARTBEAT_S", d.books_heartbeat_s),
        books_election_min_s=_float(e, "BOOKS_DATABASE_ELECTION_MIN_S", d.books_election_min_s),
        books_election_max_s=_float(e, "BOOKS_DATABASE_ELECTION_MAX_S", d.books_election_max_s),
        chaos=_bool(e, "BOOKSTORE_CHAOS", d.chaos),
        chaos_allow_remote=_bool(e, "BOOKSTORE_CHAOS_ALLOW_REMOTE", d.chaos_allow_remote),
    )
    if settings.max_in_flight < 1 or settings.min_in_flight < 1:
        raise SettingsError(
            "ORCHESTRATOR_MAX_IN_FLIGHT and ORCHESTRATOR_MIN_IN_FLIGHT must be at least 1"
        )
    if settings.admission_target_s <= 0:
        raise SettingsError("ORCHESTRATOR_ADMISSION_TARGET_S must be more than 0")
    if settings.admission_wait_s < 0 or settings.admission_queue < 0:
        raise SettingsError(
            "ORCHESTRATOR_ADMISSION_WAIT_S and ORCHESTRATOR_ADMISSION_QUEUE must not be negative"
        )
    if settings.admission_interval_s <= 0:
        raise SettingsError("ORCHESTRATOR_ADMISSION_INTERVAL_S must be more than 0")
    if settings.heartbeat_s >= settings.leader_silence_s:
        raise SettingsError(
            "ORDER_EXECUTOR_HEARTBEAT_S must be shorter than ORDER_EXECUTOR_LEADER_SILENCE_S"
        )
    if not (
        settings.books_heartbeat_s < settings.books_election_min_s <= settings.books_election_max_s
    ):
        raise SettingsError(
            "BOOKS_DATABASE_HEARTBEAT_S < BOOKS_DATABASE_ELECTION_MIN_S"
            " <= BOOKS_DATABASE_ELECTION_MAX_S must hold"
        )
    return settings


# -- books database ----------------------------------------------------------


def _replica_address(addresses: Mapping[int, str], replica_id: int | None, variable: str) -> str:
    if replica_id is None:
        raise SettingsError(f"{variable} names replicas: a replica id is needed")
    try:
        return addresses[replica_id]
    except KeyError:
        known = ", ".join(str(i) for i in sorted(addresses))
        raise SettingsError(f"replica id {replica_id} is not in {variable} ({known})") from None


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    return _int(env, name, 0) if env.get(name) else None


@cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return from_env()
