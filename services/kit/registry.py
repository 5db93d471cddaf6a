"""The ten domains of the mesh as the server sees them: name, gRPC service, default port."""

from __future__ import annotations

from dataclasses import dataclass

from agora.client.mesh import DOMAINS as LISTED


@dataclass(frozen=True)
class Domain:
    name: str
    service: str  # fully qualified gRPC service name
    port: int  # default gRPC port (the same locally and in the cluster)

    @property
    def module(self) -> str:
        return f"services.{self.name}"


# The one list lives in agora-client, which installs without the server and which the server depends on.
DOMAINS: dict[str, Domain] = {name: Domain(name, d.full_service, d.port) for name, d in LISTED.items()}

GATEWAY_PORT = 8080
