"""The outgoing gRPC metadata of a bridged call, built in one place for HTTP and WebSocket alike.

Credentials and Grpc-Metadata-* (auth.py), then what the bridge vouches for: the request id, the
trace context, the caller's address. Its size is checked before the call leaves.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.rpc import code_pb2

from gateway import auth, telemetry
from gateway.edge import metadata_size
from gateway.errors import BridgeError
from gateway.request_id import request_id
from services.kit.auth import EDGE_ADDRESS, edge_address

Metadata = list[tuple[str, str | bytes]]


class OutgoingMetadata:
    def __init__(self, csrf: auth.CsrfGuard, max_bytes: int, *, edge_key: str = ""):
        """`edge_key`: the mesh's service credential, which signs the caller's address for the servers
        that limit by address (services.kit.auth.EDGE_ADDRESS); '' sends the bare address only."""
        self.csrf = csrf
        self.max_bytes = max_bytes
        self.edge_key = edge_key

    def build(self, scope, method: str, *, websocket: bool = False,
              extra: Iterable[tuple[str, str]] = ()) -> Metadata:
        """The metadata for a call made on behalf of the request in `scope`; `extra` follows the
        caller's own entries. Raises 403 when a cookie session's unsafe request lacks CSRF proof."""
        headers = scope["headers"]
        metadata = auth.outbound_metadata(method, headers, websocket=websocket, csrf=self.csrf)
        metadata.extend(extra)
        rid = request_id(scope)
        if rid:
            metadata.append(("x-request-id", rid))
        metadata.extend(telemetry.outbound(headers))
        client = scope.get("client")
        if client:
            metadata.append(("x-forwarded-for", client[0]))
            if self.edge_key:
                metadata.append((EDGE_ADDRESS, edge_address(self.edge_key, client[0])))
        return metadata

    def check_size(self, metadata: Metadata) -> None:
        """431 here rather than a RESOURCE_EXHAUSTED from the upstream's own limit (8 KiB in gRPC),
        which reads as a rate limit (429) and comes after a round trip."""
        size = metadata_size(metadata)
        if self.max_bytes and size > self.max_bytes:
            raise BridgeError(
                code_pb2.RESOURCE_EXHAUSTED,
                f"request headers forwarded as gRPC metadata (Authorization, Grpc-Metadata-*, cookies) "
                f"take {size} bytes; the limit is {self.max_bytes}",
                http=431,
            )
