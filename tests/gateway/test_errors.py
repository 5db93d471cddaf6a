"""The grpc-gateway status table, code by code, and error bodies with google.rpc details over HTTP."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2

from gateway.errors import HTTP_STATUS, http_status

TABLE = [
    (code_pb2.OK, 200),
    (code_pb2.CANCELLED, 499),
    (code_pb2.UNKNOWN, 500),
    (code_pb2.INVALID_ARGUMENT, 400),
    (code_pb2.DEADLINE_EXCEEDED, 504),
    (code_pb2.NOT_FOUND, 404),
    (code_pb2.ALREADY_EXISTS, 409),
    (code_pb2.PERMISSION_DENIED, 403),
    (code_pb2.RESOURCE_EXHAUSTED, 429),
    (code_pb2.FAILED_PRECONDITION, 400),
    (code_pb2.ABORTED, 409),
    (code_pb2.OUT_OF_RANGE, 400),
    (code_pb2.UNIMPLEMENTED, 501),
    (code_pb2.INTERNAL, 500),
    (code_pb2.UNAVAILABLE, 503),
    (code_pb2.DATA_LOSS, 500),
    (code_pb2.UNAUTHENTICATED, 401),
]


@pytest.mark.parametrize(("code", "status"), TABLE)
def test_table(code, status):
    assert http_status(code) == status


def test_table_is_complete():
    assert set(HTTP_STATUS) == set(range(17))
    assert http_status(99) == 500


@pytest.mark.parametrize(("code", "status"), [t for t in TABLE if t[0] != code_pb2.OK])
async def test_status_over_http(client, code, status):
    r = await client.get(f"/v1/fail/{code}")
    assert r.status_code == status
    body = r.json()
    assert body["code"] == code
    assert body["message"] == f"failed with {code}"
    types = [d["@type"] for d in body["details"]]
    assert types == ["type.googleapis.com/google.rpc.BadRequest", "type.googleapis.com/google.rpc.ErrorInfo"]
    assert body["details"][0]["fieldViolations"] == [{"field": "code", "description": "asked for"}]
    assert body["details"][1]["metadata"] == {"k": "v"}


async def test_ok_status(client):
    r = await client.get("/v1/fail/0")
    assert r.status_code == 200 and r.json() == {}
