"""Traces and metrics for every service.

- `tracing`: OpenTelemetry set-up (OTLP export only when an endpoint is configured);
  `sdk`: the provider and the span processor that keeps card numbers out of every span.
- `propagation`: W3C trace context carried in a plain string field of our protobuf
  messages (one context per order), and the span helper for an order.
- `metrics`: every Prometheus metric, the metrics port of a gRPC service and the
  orchestrator's `/metrics` handler.

The cluster view's chart series are taken from these metrics in bookstore.cluster_view.
"""
