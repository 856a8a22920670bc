"""gRPC credentials from the certificate directory (see `certs`; this module
does not load `cryptography`, so a health check starts fast).

Servers demand a client certificate signed by the deployment's CA
(`require_client_auth=True`), so a plaintext client or one with a certificate
of another CA never completes the handshake; channels present the service's
own certificate and trust only that CA.

`use_identity` is what a process does once at start: from then on every
server `grpcutil.create_server` makes and every channel `grpcutil.channel`
opens uses its certificate (or plaintext, when BOOKSTORE_TLS is off).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from bookstore import grpcutil
from bookstore.identity import CA_NAME, MissingCertificate, identity_of, tls_dir
from bookstore.identity.policy import server_interceptors
from bookstore.settings import Settings


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


def transport_for(settings: Settings, name: str) -> grpcutil.Transport:
    """Mutual TLS as `name` ("order-executor-3") with the policy's check, or
    plaintext when TLS is off. MissingCertificate when a file is absent."""
    if not settings.tls:
        return grpcutil.PLAINTEXT
    directory = tls_dir(settings)
    return grpcutil.Transport(
        channel_credentials=channel_credentials(directory, name),
        server_credentials=server_credentials(directory, name),
        interceptors=tuple(server_interceptors(settings)),
    )


def use_identity(settings: Settings, service: str, replica_id: int | None = None) -> None:
    """This process is `service` (replica `replica_id`): its servers and
    channels from now on use that identity's certificate."""
    try:
        name = identity_of(settings, service, replica_id).name
    except KeyError as exc:
        raise MissingCertificate(f"{exc.args[0]}: not a service of this deployment") from None
    grpcutil.use_transport(transport_for(settings, name))
