"""OpenTelemetry tracing: set up once per process, or not at all.

`setup_tracing` installs the SDK only when an OTLP endpoint is configured
(`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`); otherwise it
installs nothing and does not even import the SDK, and every span the code starts is
the API's no-op span, so tracing off costs a function call. The SDK and the exporter
read every other standard variable themselves: `OTEL_TRACES_SAMPLER` / `_ARG`,
`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_INSECURE`, `OTEL_BSP_*`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`. The exporter speaks OTLP over gRPC
(port 4317). Every exported span passes `sdk.RedactingSpanProcessor` (no card number).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace

from bookstore.settings import SettingsError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def tracing_endpoint(env: Mapping[str, str] | None = None) -> str:
    """The OTLP endpoint spans go to; empty when tracing is off.

    Raises SettingsError, naming the variable, for a protocol other than gRPC.
    """
    e = os.environ if env is None else env
    if e.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    endpoint = next((e[name] for name in _ENDPOINT_VARIABLES if e.get(name)), "")
    for name in _PROTOCOL_VARIABLES:
        protocol = e.get(name, "")
        if endpoint and protocol and protocol != "grpc":
            raise SettingsError(f"{name}={protocol!r}: only 'grpc' is supported")
    return endpoint


def setup_tracing(service_name: str, replica_id: int | None = None) -> TracerProvider | None:
    """Install the SDK with OTLP export if an endpoint is set; else install nothing.

    Returns the installed provider (flushed and shut down at exit), or None.
    """
    if not tracing_endpoint():
        return None
    # Imported here: with tracing off, neither the SDK nor the exporter is loaded.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from bookstore.telemetry.sdk import make_tracer_provider

    provider = make_tracer_provider(service_name, OTLPSpanExporter(), replica_id)
    trace.set_tracer_provider(provider)
    return provider
