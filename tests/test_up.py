"""`agora up`: all ten services and the bridge in one process, healthy, reflective, and quick to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.kit.registry import DOMAINS
from tests.ports import free_mesh_ports

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    offset, http_port = free_mesh_ports()
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_HTTP_PORT": str(http_port),
           "AGORA_LOG_FORMAT": "text", "AGORA_BACKENDS": "embedded"}
    data = tmp_path_factory.mktemp("mesh")
    log = open(data / "up.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agora.cli", "up", "--data-dir", str(data)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while "ready" not in (data / "up.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"agora up did not start:\n{(data / 'up.log').read_text()[-3000:]}")
        time.sleep(0.1)
    yield proc, offset, http_port, data / "up.log"
    if proc.poll() is None:
        proc.kill()
    log.close()


def test_every_service_and_the_bridge_start_and_say_where(mesh):
    _, offset, http_port, log_path = mesh
    printed = log_path.read_text()
    for name, domain in DOMAINS.items():
        assert f"127.0.0.1:{domain.port + offset}" in printed, f"{name} did not announce its address"
    assert f":{http_port}" in printed


def test_health_check_on_every_port_is_serving(mesh):
    _, offset, _, _ = mesh
    for name, domain in DOMAINS.items():
        with grpc.insecure_channel(f"127.0.0.1:{domain.port + offset}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", domain.service):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (name, service)


def test_reflection_lists_every_service(mesh):
    _, offset, _, _ = mesh
    for name, domain in DOMAINS.items():
        with grpc.insecure_channel(f"127.0.0.1:{domain.port + offset}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            reply = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
            names = {s.name for s in reply.list_services_response.service}
            assert domain.service in names and "grpc.health.v1.Health" in names, name
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=domain.service)
            reply = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
            assert reply.file_descriptor_response.file_descriptor_proto, \
                f"{name}: no descriptor by reflection"


def test_bridge_answers_health_openapi_and_docs(mesh):
    _, _, http_port, _ = mesh
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as http:
        health = http.get("/health")
        assert health.status_code == 200, health.text
        spec = http.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        assert any(p.startswith("/v1/polls") for p in spec["paths"])
        assert http.get("/docs/").status_code == 200


def test_cli_health_reports_every_service(mesh):
    _, offset, _, _ = mesh
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset)}
    out = subprocess.run([sys.executable, "-m", "agora.cli", "health", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"SERVING"' in out.stdout and out.stdout.count('"SERVING"') == len(DOMAINS)


def test_sigterm_stops_everything_within_five_seconds_with_exit_zero(mesh):
    proc, _, _, log_path = mesh
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=15)
    took = time.monotonic() - sent
    assert code == 0, log_path.read_text()[-2000:]
    assert took < 5, f"stopping took {took:.1f}s"
