"""WatchNotifications over gRPC (embedded pipeline): live changes in sequence order, filtered, resumable."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import httpx
import pytest
from agora.notifications.v1 import notifications_pb2 as pb
from agora.notifications.v1 import notifications_pb2_grpc

from tests.services.orders import commerce as harness
from tests.services.payments import pipeline as harness_pipeline
from tests.services.payments.pipeline import wait_for


def operator(runtime) -> dict:
    """These tests watch the whole pipeline as an operator does: with the mesh's service credential
    (anonymous callers are never internal; tests/security checks what they may do)."""
    return {"x-api-key": runtime.settings.service_api_key}


@pytest.fixture(scope="module")
async def embedded(tmp_path_factory):
    patcher = pytest.MonkeyPatch()
    run_id = harness.new_run_id()
    harness.unique_names(patcher.setattr, run_id)
    p = await harness_pipeline.start("embedded", tmp_path_factory.mktemp("watch"), run_id)
    yield p
    await harness_pipeline.stop(p)
    patcher.undo()


async def test_watch_streams_each_change_and_resumes(embedded):
    tag = uuid.uuid4().hex[:8]
    address = f"watch-{tag}@example.com"
    async with httpx.AsyncClient(base_url=embedded.base_url, timeout=30,
                                 headers=operator(embedded.mesh.runtime)) as http:
        r = await http.post("/api/clients", json={"name": "W", "email": address})
        assert r.status_code == 200, r.text
        client = r.json()
        seller = (await http.post("/api/sellers", json={"name": "S", "email": f"s-{tag}@example.com"})).json()
        product = (await http.post("/api/products", json={"seller_id": seller["id"], "name": "P", "stock": 3,
                                                          "price": {"currency_code": "USD",
                                                                    "amount_minor": "5"}})).json()
        seen: list = []
        async with grpc.aio.insecure_channel(embedded.target("notifications")) as channel:
            stub = notifications_pb2_grpc.NotificationServiceStub(channel)

            async def watch():
                async for m in stub.WatchNotifications(
                        pb.WatchNotificationsRequest(recipient=address.upper()), timeout=30,
                        metadata=tuple(operator(embedded.mesh.runtime).items())):
                    seen.append(m)

            task = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            await http.post("/api/orders", json={"client_id": client["id"],
                                                 "items": [{"product_id": product["id"], "quantity": 1}]})

            async def done():
                sent = [m for m in seen if m.notification.status == pb.NOTIFICATION_STATUS_SENT]
                return len(sent) >= 2

            await wait_for(done, "QUEUED and SENT changes of both e-mails on the stream")
            task.cancel()
            sequences = [m.sequence for m in seen]
            assert sequences == sorted(set(sequences))
            assert {m.notification.recipient for m in seen} == {address}
            replayed = []  # resume_from 0 means "live only", so resume after the first change
            async for m in stub.WatchNotifications(pb.WatchNotificationsRequest(
                    recipient=address, resume_from=sequences[0]), timeout=5,
                    metadata=tuple(operator(embedded.mesh.runtime).items())):
                replayed.append(m.sequence)
                if len(replayed) == len(sequences) - 1:
                    break
            assert replayed == sequences[1:]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.WatchNotifications(
                        pb.WatchNotificationsRequest(resume_from=10**9), timeout=5,
                        metadata=tuple(operator(embedded.mesh.runtime).items())):
                    pass
            assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
