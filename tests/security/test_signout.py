"""Sign-out ends the session everywhere: its bid and chat sockets close with a clear code, nothing
they send afterwards is accepted, and the revoked token is refused on the next unary call.

Against `agora up` (tests/security/mesh.py): identity's `identity.session.revoked` event reaches the
process's revocation listener (services/kit/revocation.py), which ends the session's streams.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import websockets

from tests.security.conftest import bearer, sign_up

CLOSE_WAIT = 10.0  # seconds a socket may take to close after logout (documented bound: the event's latency)
SIGNED_OUT_CODE = 4016  # 4000 + UNAUTHENTICATED
SIGNED_OUT_REASON = "session ended: signed out"


def usd(minor: int) -> dict:
    return {"currency_code": "USD", "amount_minor": str(minor)}


async def _frames_until(ws, want, what: str, timeout: float = 10.0) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while not any(want(f) for f in seen):
        left = deadline - time.monotonic()
        assert left > 0, f"no {what} within {timeout} s: {seen[-5:]}"
        seen.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
    return seen


class Sender:
    """Keeps sending frames on a socket until it closes; keeps every frame received."""

    def __init__(self, ws, frame) -> None:
        self.ws, self.frame = ws, frame
        self.sent = 0
        self.received: list[dict] = []
        self.closed_at: float | None = None
        self._tasks = [asyncio.ensure_future(self._send()), asyncio.ensure_future(self._receive())]

    async def _send(self) -> None:
        try:
            while True:
                await self.ws.send(json.dumps(self.frame(self.sent)))
                self.sent += 1
                await asyncio.sleep(0.03)
        except websockets.ConnectionClosed:
            return

    async def _receive(self) -> None:
        try:
            async for raw in self.ws:
                self.received.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        self.closed_at = time.monotonic()

    async def closed(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the socket was still open {timeout} s after the logout "
                                 f"({self.sent} frames sent, last received {self.received[-2:]})") from None


async def test_logout_closes_bid_and_chat_sockets_and_refuses_the_token(secure_mesh, http):
    seller, bidder = await sign_up(http), await sign_up(http)
    end = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    r = await http.post("/v1/auctions", headers=bearer(seller), json={
        "product_name": f"lot {uuid.uuid4().hex[:6]}", "starting_price": usd(100), "min_increment": usd(1),
        "auction_end": end})
    assert r.status_code == 200, r.text
    auction_id = r.json()["auction"]["id"]
    room = f"signout-{uuid.uuid4().hex[:8]}"
    r = await http.post("/v1/rooms", headers=bearer(bidder), json={"room_id": room, "title": "sign-out"})
    assert r.status_code == 200, r.text

    ws_url = secure_mesh.base_url.replace("http", "ws", 1)
    headers = bearer(bidder)
    async with websockets.connect(f"{ws_url}/v1/auctions/{auction_id}/bidstream",
                                  additional_headers=headers) as bids_ws, \
            websockets.connect(f"{ws_url}/v1/rooms/{room}/chat", additional_headers=headers) as chat_ws:
        await bids_ws.send("{}")
        await _frames_until(bids_ws, lambda f: "snapshot" in f, "auction snapshot")
        await chat_ws.send(json.dumps({"room_id": room}))
        await _frames_until(chat_ws, lambda f: "joined" in f, "chat join")

        # Both sockets keep writing through the logout: a bid and a message every 30 ms.
        bidding = Sender(bids_ws, lambda n: {"amount": usd(200 + n), "request_id": f"b{n}"})
        chatting = Sender(chat_ws, lambda n: {"text": f"m{n}", "client_message_id": f"m{n}"})
        await asyncio.sleep(0.5)
        assert bidding.sent > 3 and chatting.sent > 3, "the sockets were not writing before the logout"

        r = await http.post("/v1/auth/logout", headers=headers, json={})
        assert r.status_code == 200, r.text
        logged_out = time.monotonic()
        await bidding.closed(CLOSE_WAIT)
        await chatting.closed(CLOSE_WAIT)

        for name, ws, sender in (("bid", bids_ws, bidding), ("chat", chat_ws, chatting)):
            assert ws.close_code == SIGNED_OUT_CODE, (name, ws.close_code, ws.close_reason)
            assert ws.close_reason == SIGNED_OUT_REASON, (name, ws.close_reason)
            print(f"{name} socket closed {sender.closed_at - logged_out:.3f} s after logout returned "
                  f"({sender.sent} frames sent)")

    # The revoked token is refused on the next unary call, on every domain.
    r = await http.post(f"/v1/rooms/{room}/messages", headers=headers, json={"text": "after"})
    assert r.status_code == 401, r.text
    r = await http.post(f"/v1/auctions/{auction_id}/bids", headers=headers, json={"amount": usd(10_000)})
    assert r.status_code == 401, r.text
    r = await http.get("/v1/auth/whoami", headers=headers)
    assert r.status_code == 401, r.text

    # Nothing sent after the close was accepted: what is stored is what the sockets saw accepted,
    # and it does not grow.
    async def stored_bids() -> list[dict]:
        r = await http.get(f"/v1/auctions/{auction_id}/bids", params={"page_size": 500})
        assert r.status_code == 200, r.text
        return r.json().get("bids", [])

    async def stored_messages() -> list[dict]:
        r = await http.get(f"/v1/rooms/{room}/messages", params={"limit": 500})
        assert r.status_code == 200, r.text
        return [m for m in r.json().get("messages", []) if m.get("kind") == "MESSAGE_KIND_MESSAGE"]

    bids_then, messages_then = await stored_bids(), await stored_messages()
    await asyncio.sleep(1.5)
    bids_now, messages_now = await stored_bids(), await stored_messages()
    assert len(bids_now) == len(bids_then) and len(messages_now) == len(messages_then)
    seen_bids = {f["bid"]["bid"]["id"] for f in bidding.received if "bid" in f}
    seen_messages = {f["message"]["id"] for f in chatting.received if "message" in f
                     and f["message"].get("kind") == "MESSAGE_KIND_MESSAGE"}
    assert {b["id"] for b in bids_now} == seen_bids, "a bid was stored that its socket never saw accepted"
    assert {m["id"] for m in messages_now} == seen_messages
    print(f"{len(bids_now)} bids and {len(messages_now)} messages accepted, all before the sockets closed")
