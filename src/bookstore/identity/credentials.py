"""gRPC credentials from the certificate directory (see `certs`).

Servers demand a client certificate signed by the deployment's CA
(`require_client_auth=True`), so a plaintext client or one with a certificate
of another CA never completes the handshake; channels present the service's
own certificate and trust only that CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from bookstore.identity.certs import CA_NAME
from bookstore.settings import Settings


class MissingCertificate(RuntimeError):
    """A certificate or key is not where it should be; the message says where."""


def tls_dir(settings: Settings) -> Path:
    """Where `bookstore up` keeps the CA and the certificates (BOOKSTORE_DATA_DIR/tls)."""
    return settings.data_dir / "tls"


@dataclass(frozen=True)
class Material:
    ca: bytes
    cert: bytes
    key: bytes


def load(directory: Path, name: str) -> Material:
    """The CA certificate and `name`'s certificate and key, as PEM bytes."""
    try:
        return Material(
            ca=(directory / f"{CA_NAME}.pem").read_bytes(),
            cert=(directory / f"{name}.pem").read_bytes(),
            key=(directory / f"{name}.key").read_bytes(),
        )
    except FileNotFoundError as exc:
        raise MissingCertificate(
            f"{exc.filename} is missing: `bookstore up` makes the certificates;"
            " Compose and Kubernetes mount them (see README, service identity)"
        ) from None


def server_credentials(directory: Path, name: str) -> grpc.ServerCredentials:
    m = load(directory, name)
    return grpc.ssl_server_credentials(
        [(m.key, m.cert)], root_certificates=m.ca, require_client_auth=True
    )


def channel_credentials(directory: Path, name: str) -> grpc.ChannelCredentials:
    m = load(directory, name)
    return grpc.ssl_channel_credentials(
        root_certificates=m.ca, private_key=m.key, certificate_chain=m.cert
    )
