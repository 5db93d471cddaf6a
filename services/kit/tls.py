"""TLS from settings: server credentials for every gRPC port, channel credentials for calls between services.

Off unless AGORA_TLS_CERT/AGORA_TLS_KEY (serving) or AGORA_TLS_CA (calling) name PEM files; with a
certificate but no CA, clients trust that certificate itself (one self-signed cert for a small mesh).
"""

from __future__ import annotations

from pathlib import Path

import grpc

from services.kit.config import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert and not settings.tls_key:
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ValueError("TLS needs both AGORA_TLS_CERT and AGORA_TLS_KEY")
    chain, key = Path(settings.tls_cert).read_bytes(), Path(settings.tls_key).read_bytes()
    return grpc.ssl_server_credentials([(key, chain)])


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    roots = settings.tls_ca or settings.tls_cert
    if not roots:
        return None
    return grpc.ssl_channel_credentials(root_certificates=Path(roots).read_bytes())
