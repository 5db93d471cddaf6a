"""Telemetry every process shares: OpenTelemetry traces, Prometheus metrics, the /metrics endpoint.

    tracing.py     spans for RPCs, HTTP requests and events; W3C trace context in and out; off unless
                   AGORA_OTLP_ENDPOINT is set (or a test installs a provider), and then nearly free
    metrics.py     the Prometheus instruments (RPC, streams, bus, stores, HTTP) on the default registry,
                   which also carries the process and GC collectors
    messaging.py   a consumer's handling of one event: its span (child of the publish), lag, outcome
    endpoint.py    /metrics over HTTP for gRPC processes (the bridge serves it as a route)
"""
