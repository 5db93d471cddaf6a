"""Agora's REST/SSE/WebSocket bridge: transcodes HTTP to gRPC from google.api.http annotations."""

from gateway.app import create_app
from gateway.server import make_gateway_server, serve_gateway

__all__ = ["create_app", "make_gateway_server", "serve_gateway"]
