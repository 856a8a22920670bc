"""Certificates for tests that talk gRPC to real processes.

With BOOKSTORE_TLS on (the default) every service demands a client
certificate of the deployment's CA. `make_certs(env)` makes the CA and every
service's certificate where the processes started with `env` look for them
(BOOKSTORE_DATA_DIR/tls), as `bookstore up` does; `transport(env, name)` is
how a test speaks as that identity ("orchestrator", "order-executor-3",
"launcher" for probes), or plaintext when `env` turns TLS off.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bookstore import grpcutil
from bookstore.identity import certs, identities_of, tls_dir
from bookstore.identity.credentials import transport_for
from bookstore.settings import from_env


def make_certs(env: Mapping[str, str]) -> Path:
    """The CA and every certificate of the deployment `env` configures."""
    settings = from_env(env)
    directory = tls_dir(settings)
    certs.ensure(directory, identities_of(settings))
    return directory


def transport(env: Mapping[str, str], name: str) -> grpcutil.Transport:
    """Mutual TLS as `name` (plaintext when `env` turns TLS off)."""
    return transport_for(from_env(env), name)


def plaintext() -> grpcutil.Transport:
    """No certificate at all: what an intruder without one has."""
    return grpcutil.PLAINTEXT
