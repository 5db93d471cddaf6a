"""The one outgoing-metadata builder: the same entries, in the same order, for HTTP and WebSocket calls."""

from __future__ import annotations

import pytest

from gateway.auth import SESSION_COOKIE, CsrfGuard
from gateway.errors import BridgeError
from gateway.metadata import OutgoingMetadata
from gateway.request_id import SCOPE_KEY
from services.kit.auth import EDGE_ADDRESS, edge_address

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def scope(*headers: tuple[bytes, bytes], rid: str = "req-1") -> dict:
    return {"headers": list(headers), "client": ("10.0.0.7", 5123), SCOPE_KEY: rid}


def test_credentials_then_extra_then_what_the_bridge_vouches_for():
    builder = OutgoingMetadata(CsrfGuard(b"k" * 32), max_bytes=7 * 1024)
    request = scope((b"authorization", b"Bearer tok"), (b"grpc-metadata-tenant", b"t1"),
                    (b"traceparent", TRACEPARENT.encode()))
    assert builder.build(request, "GET", extra=[("agora-csrf-token", "x")]) == [
        ("tenant", "t1"),
        ("authorization", "Bearer tok"),
        ("agora-csrf-token", "x"),
        ("x-request-id", "req-1"),
        ("traceparent", TRACEPARENT),
        ("x-forwarded-for", "10.0.0.7"),
    ]


def test_a_websocket_upgrade_with_a_session_cookie_needs_no_csrf_token():
    builder = OutgoingMetadata(CsrfGuard(b"k" * 32), max_bytes=7 * 1024)
    cookie = (b"cookie", f"{SESSION_COOKIE}=tok".encode())
    assert builder.build(scope(cookie, rid=""), "GET", websocket=True) == [
        ("authorization", "Bearer tok"), ("x-forwarded-for", "10.0.0.7")]
    with pytest.raises(BridgeError, match="CSRF token missing"):
        builder.build(scope(cookie), "POST")


def test_oversized_metadata_is_refused_with_431_before_the_call():
    builder = OutgoingMetadata(CsrfGuard(), max_bytes=100)
    metadata = builder.build(scope((b"grpc-metadata-big", b"x" * 200)), "GET")
    with pytest.raises(BridgeError) as refused:
        builder.check_size(metadata)
    assert refused.value.http == 431 and "the limit is 100" in refused.value.message
    OutgoingMetadata(CsrfGuard(), max_bytes=0).check_size(metadata)  # 0: no limit


def test_the_callers_address_is_signed_with_the_service_credential():
    builder = OutgoingMetadata(CsrfGuard(b"k" * 32), max_bytes=7 * 1024, edge_key="svc-key")
    metadata = builder.build(scope(rid=""), "GET")
    assert metadata == [("x-forwarded-for", "10.0.0.7"), (EDGE_ADDRESS, edge_address("svc-key", "10.0.0.7"))]
    assert edge_address("svc-key", "10.0.0.7") != edge_address("other-key", "10.0.0.7")
    # a client cannot send its own: the name is the bridge's to write
    with pytest.raises(BridgeError, match="not a valid gRPC metadata key"):
        builder.build(scope((b"grpc-metadata-agora-edge-address", b"10.9.9.9 forged"), rid=""), "GET")
