"""Tracing into an in-memory exporter for one test, and off again after it."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.kit.telemetry import tracing


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


def one(spans, name: str, kind=None):
    """The one finished span called `name` (of `kind`, if given)."""
    found = [s for s in spans.get_finished_spans() if s.name == name and (kind is None or s.kind is kind)]
    assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in spans.get_finished_spans()]}"
    return found[0]
