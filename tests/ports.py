"""Ports for the meshes tests start as processes: free now, and below the kernel's ephemeral range.

A port inside net.ipv4.ip_local_port_range (32768-60999 here) can be taken at any moment by an
outgoing connection's source port, which made fixed-offset meshes fail to bind now and then.
Offsets are negative so the ten gRPC ports (50051+offset ...) and the bridge land in 12000-31999.
"""

from __future__ import annotations

import random
import socket

from services.kit.registry import DOMAINS

_BRIDGE_AFTER_DOMAINS = 30  # the bridge port sits just above the domain ports: 50081 + offset


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_mesh_ports() -> tuple[int, int]:
    """(AGORA_PORT_OFFSET, AGORA_HTTP_PORT) for one mesh; every port free right now."""
    top = max(d.port for d in DOMAINS.values())
    for _ in range(500):
        offset = random.randrange(-38000, -19000, 20)
        http_port = top + _BRIDGE_AFTER_DOMAINS + offset
        if all(_free(d.port + offset) for d in DOMAINS.values()) and _free(http_port):
            return offset, http_port
    raise RuntimeError("no free port range for a mesh below the ephemeral range")
