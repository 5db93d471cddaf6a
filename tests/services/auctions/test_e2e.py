"""End to end over real ports, embedded and real backends: REST (seed endpoints, cookies + CSRF),
WebSocket (the seed's bidding socket), SSE and gRPC; the 200-bid race; the security cases."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import httpx
import pytest
import websockets
from agora.auctions.v1 import auctions_pb2 as apb
from agora.auctions.v1 import auctions_pb2_grpc
from agora.common.v1.money_pb2 import Money
from agora.events.v1 import auctions_pb2 as events_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.kit.bus import unpack
from tests.services.identity import harness
from tests.services.identity.harness import bearer, create_auction, sign_up_and_login, usd

WAIT = 15.0  # bound on every wait for a frame or an event


def _end_in(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def _rest_user(mesh, client: httpx.AsyncClient) -> dict:
    name = f"u{uuid.uuid4().hex[:12]}"
    reply = await client.post("/v1/users", json={
        "user_name": name, "email": f"{name}@example.test", "password": "correct horse battery"})
    assert reply.status_code == 200, reply.text
    login = await harness.http_login(client, name)
    assert "agora_session" in client.cookies and "agora_csrf" in client.cookies
    assert "httponly" in login.headers.get_list("set-cookie")[0].lower()
    return {"id": reply.json()["userId"], "name": name, "token": login.json()["sessionToken"]}


def _csrf(client: httpx.AsyncClient) -> dict:
    return {"x-csrf-token": client.headers["x-csrf-token"]}  # what harness.http_login fetched


def _cookie_header(client: httpx.AsyncClient) -> dict:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}


class Socket:
    """One seed WebSocket client: collects every frame; `bid` sends one."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.frames: list[dict] = []
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            self.frames.append(json.loads(text))
            self.changed.set()

    async def bid(self, minor: int) -> None:
        await self.ws.send(json.dumps({"amount": usd(minor)}))

    async def until(self, predicate, what: str) -> None:
        async def wait() -> None:
            while not predicate(self.frames):
                self.changed.clear()
                if self.task.done():
                    self.task.result()
                    raise AssertionError(f"socket closed before {what}; frames: {self.frames}")
                await asyncio.wait({asyncio.ensure_future(self.changed.wait()), self.task},
                                   return_when=asyncio.FIRST_COMPLETED)

        try:
            await asyncio.wait_for(wait(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {WAIT}s; frames: {self.frames}") from None


def _bids(frames: list[dict]) -> list[tuple[int, int]]:
    return [(int(f["sequence"]), int(f["bid"]["bid"]["amount"]["amountMinor"])) for f in frames if "bid" in f]


async def test_signup_login_create_two_users_bid_over_websockets_close_and_winner(mesh):
    bus = await mesh.runtime.bus()
    closed_events: list = []
    group = f"t{uuid.uuid4().hex[:10]}.auctions-closed"
    subscription = await bus.subscribe(group, ["auctions.auction.closed"],
                                       lambda e: _append(closed_events, e))
    async with httpx.AsyncClient(base_url=mesh.http_url, timeout=WAIT) as seller_http, \
            httpx.AsyncClient(base_url=mesh.http_url, timeout=WAIT) as alice_http, \
            httpx.AsyncClient(base_url=mesh.http_url, timeout=WAIT) as bob_http:
        seller = await _rest_user(mesh, seller_http)
        alice = await _rest_user(mesh, alice_http)
        bob = await _rest_user(mesh, bob_http)
        created = await seller_http.post("/v1/auctions", headers=_csrf(seller_http), json={
            "product_name": "vintage lamp", "description": "brass", "starting_price": usd(100),
            "min_increment": usd(10), "auction_end": _end_in(4), "anti_sniping_window": "0s"})
        assert created.status_code == 200, created.text
        auction_id = created.json()["productId"]

        async with grpc.aio.insecure_channel(mesh.auctions.address) as channel:
            stub = auctions_pb2_grpc.AuctionServiceStub(channel)
            grpc_frames: list = []

            async def watch() -> None:
                async for frame in stub.WatchAuction(apb.WatchAuctionRequest(auction_id=auction_id)):
                    grpc_frames.append(frame)

            watcher = asyncio.ensure_future(watch())
            url = f"{mesh.ws_url}/v1/auctions/{auction_id}/bidstream"
            async with websockets.connect(url, additional_headers=_cookie_header(alice_http)) as a_ws, \
                    websockets.connect(url, additional_headers=_cookie_header(bob_http)) as b_ws:
                a, b = Socket(a_ws), Socket(b_ws)
                for s in (a, b):
                    await s.ws.send("{}")  # names the auction (the bridge fills product_id from the path)
                    await s.until(lambda fs: any("snapshot" in f for f in fs), "snapshot")
                amounts = [100, 110, 130, 140, 200]
                for i, amount in enumerate(amounts, start=1):
                    await (a if i % 2 else b).bid(amount)
                    for s in (a, b):
                        await s.until(lambda fs, i=i: len(_bids(fs)) >= i, f"bid {i}")
                await b.bid(150)  # too low now: only bob hears why
                await b.until(lambda fs: any("rejected" in f for f in fs), "rejection")
                for s in (a, b):
                    await s.until(lambda fs: any("closed" in f for f in fs), "the closing result")
                    assert _bids(s.frames) == list(enumerate(amounts, start=1))
                    closed = next(f["closed"] for f in s.frames if "closed" in f)
                    assert closed["winnerId"] == alice["id"] and closed["price"]["amountMinor"] == "200"
                    assert int(next(f for f in s.frames if "closed" in f)["sequence"]) == len(amounts) + 1
                rejected = next(f["rejected"] for f in b.frames if "rejected" in f)
                assert (rejected["reason"] == "BID_TOO_LOW"
                        and rejected["minimumNextBid"]["amountMinor"] == "210")
                assert not any("rejected" in f for f in a.frames)
            await asyncio.wait_for(watcher, WAIT)
            assert [f.sequence for f in grpc_frames] == list(range(len(amounts) + 2))
            assert grpc_frames[-1].closed.winner_name == alice["name"]

            # resume: what came after sequence 3, then the result, then the stream ends
            resumed = [f async for f in stub.WatchAuction(apb.WatchAuctionRequest(auction_id=auction_id,
                                                                                    resume_from=3))]
            assert [f.WhichOneof("event") for f in resumed] == ["bid", "bid", "closed"]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.WatchAuction(apb.WatchAuctionRequest(auction_id=auction_id,
                                                                         resume_from=99)):
                    pass
            assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE

        got = (await bob_http.get(f"/v1/auctions/{auction_id}")).json()["auction"]
        assert got["status"] == "AUCTION_STATUS_CLOSED" and got["result"]["winnerName"] == alice["name"]
        del seller, bob

    async def event_arrived() -> None:
        while not any(unpack(e, events_pb2.AuctionClosed).auction_id == auction_id for e in closed_events):
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(event_arrived(), WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"no auctions.auction.closed event within {WAIT}s") from None
    finally:
        await subscription.cancel()
        if hasattr(bus, "delete_group"):
            await bus.delete_group(group)
    event = next(unpack(e, events_pb2.AuctionClosed) for e in closed_events
                 if unpack(e, events_pb2.AuctionClosed).auction_id == auction_id)
    assert (event.sold and event.winner_id == alice["id"] and event.price.amount_minor == 200
            and event.bid_count == 5)


async def test_sse_watch_through_the_bridge_resumes_from_last_event_id(mesh):
    async with mesh.channel("identity") as ich, mesh.channel() as ach, \
            httpx.AsyncClient(base_url=mesh.http_url, timeout=WAIT) as http:
        _, _, seller = await sign_up_and_login(ich)
        _, _, bidder = await sign_up_and_login(ich)
        auction = await create_auction(ach, seller, seconds=1.5)
        stub = auctions_pb2_grpc.AuctionServiceStub(ach)
        for minor in (100, 110, 120):
            await stub.PlaceBid(apb.PlaceBidRequest(auction_id=auction.id,
                                                    amount=Money(currency_code="USD", amount_minor=minor)),
                                metadata=bearer(bidder))
        sse = await http.get(f"/v1/auctions/{auction.id}:watch",
                             headers={"accept": "text/event-stream", "last-event-id": "1"})
        assert sse.status_code == 200, sse.text
        ids = [line[4:] for line in sse.text.splitlines() if line.startswith("id: ")]
        assert ids == ["2", "3", "4"]  # bids 2 and 3, then the result when the auction closes


async def _append(into: list, envelope) -> None:
    into.append(envelope)


def _error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    status = rpc_status.from_call(exc)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


async def test_200_concurrent_equal_bids_exactly_one_wins_and_sequences_have_no_gaps(mesh):
    async with mesh.channel("identity") as ich, mesh.channel() as ach:
        _, _, seller = await sign_up_and_login(ich)
        bidders = [await sign_up_and_login(ich) for _ in range(10)]
        auction = await create_auction(ach, seller, seconds=120)
        stub = auctions_pb2_grpc.AuctionServiceStub(ach)

        async def bid(token: str, minor: int):
            try:
                return await stub.PlaceBid(apb.PlaceBidRequest(
                    auction_id=auction.id, amount=Money(currency_code="USD", amount_minor=minor)),
                    metadata=bearer(token), timeout=60)
            except grpc.aio.AioRpcError as exc:
                return exc

        results = await asyncio.gather(*(bid(bidders[i % 10][2], 500) for i in range(200)))
        accepted = [r for r in results if not isinstance(r, grpc.aio.AioRpcError)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(accepted) == 1 and len(refused) == 199
        for exc in refused:
            assert exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION), exc.details()
            info = _error_info(exc)
            assert info is not None and info.reason in ("OUTBID", "BID_TOO_LOW")
            assert info.metadata["current_price"] == "500" and info.metadata["minimum_next_bid"] == "510"

        # a second wave of 200 racing bids with different amounts: the store keeps the maximum accepted
        wave = await asyncio.gather(*(bid(bidders[i % 10][2], 510 + 7 * (i % 50)) for i in range(200)))
        amounts = [r.bid.amount.amount_minor for r in [accepted[0], *wave]
                   if not isinstance(r, grpc.aio.AioRpcError)]
        state = (await stub.GetAuction(apb.GetAuctionRequest(auction_id=auction.id))).auction
        assert state.current_price.amount_minor == max(amounts)
        assert state.bid_count == len(amounts)
        listed, token = [], ""
        while True:
            page = await stub.ListBids(apb.ListBidsRequest(auction_id=auction.id, page_size=37,
                                                           page_token=token))
            listed.extend(page.bids)
            token = page.next_page_token
            if not token:
                break
        assert [b.sequence for b in listed] == list(range(len(amounts), 0, -1))
        assert [b.amount.amount_minor for b in reversed(listed)] == sorted(amounts)


async def test_bidding_needs_a_live_session_and_not_your_own_auction(mesh):
    async with mesh.channel("identity") as ich, mesh.channel() as ach, \
            httpx.AsyncClient(base_url=mesh.http_url, timeout=WAIT) as anonymous, \
            httpx.AsyncClient(base_url=mesh.http_url, timeout=WAIT) as browser:
        seller_id, _, seller = await sign_up_and_login(ich)
        auction = await create_auction(ach, seller, seconds=120)
        bids = f"/v1/auctions/{auction.id}/bids"

        # no session: 401 over REST, UNAUTHENTICATED over gRPC
        reply = await anonymous.post(bids, json={"amount": usd(100)})
        assert reply.status_code == 401, reply.text
        stub = auctions_pb2_grpc.AuctionServiceStub(ach)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PlaceBid(apb.PlaceBidRequest(auction_id=auction.id,
                                                    amount=Money(currency_code="USD", amount_minor=100)))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # own auction: 403
        reply = await anonymous.post(bids, json={"amount": usd(100)},
                                     headers={"authorization": f"Bearer {seller}"})
        assert reply.status_code == 403 and "own auction" in reply.json()["message"]

        # a cookie session without the CSRF header: 403; with it: accepted
        user = await _rest_user(mesh, browser)
        reply = await browser.post(bids, json={"amount": usd(100)}, headers={"x-csrf-token": ""})
        assert reply.status_code == 403 and "CSRF" in reply.json()["message"]
        reply = await browser.post(bids, json={"amount": usd(100)}, headers=_csrf(browser))
        assert reply.status_code == 200, reply.text

        # revoked: logout, then the next bid is 401 (identity at once; auctions within its 2 s session cache)
        logout = await browser.post("/v1/auth/logout", json={}, headers=_csrf(browser))
        assert logout.status_code == 200, logout.text
        whoami = await anonymous.get("/v1/auth/whoami", headers={"authorization": f"Bearer {user['token']}"})
        assert whoami.status_code == 401

        async def rejected_after_revocation() -> httpx.Response:
            amount = 500
            while True:
                amount += 10  # each accepted one (still inside the cache window) must be beaten
                r = await anonymous.post(bids, json={"amount": usd(amount)},
                                         headers={"authorization": f"Bearer {user['token']}"})
                if r.status_code != 200:
                    return r
                await asyncio.sleep(0.2)

        reply = await asyncio.wait_for(rejected_after_revocation(), 5.0)
        assert reply.status_code == 401, reply.text
        # ... but the revoked token can still watch (watching needs no session)
        got = await anonymous.get(f"/v1/auctions/{auction.id}",
                                  headers={"authorization": f"Bearer {user['token']}"})
        assert got.status_code == 200
        del seller_id


async def test_bid_stream_over_grpc_rejects_without_ending_the_stream(mesh):
    async with mesh.channel("identity") as ich, mesh.channel() as ach:
        _, _, seller = await sign_up_and_login(ich)
        auction = await create_auction(ach, seller, seconds=120)
        stub = auctions_pb2_grpc.AuctionServiceStub(ach)
        outbox: asyncio.Queue = asyncio.Queue()

        async def frames():
            while True:
                item = await outbox.get()
                if item is None:
                    return
                yield item

        call = stub.BidStream(frames(), metadata=bearer(seller))
        await outbox.put(apb.BidStreamRequest(product_id=auction.id))
        first = await asyncio.wait_for(call.read(), WAIT)
        assert first.WhichOneof("event") == "snapshot"
        await outbox.put(apb.BidStreamRequest(amount=Money(currency_code="USD", amount_minor=100),
                                              request_id="r1"))
        reply = await asyncio.wait_for(call.read(), WAIT)
        assert reply.rejected.reason == "OWN_AUCTION" and reply.rejected.request_id == "r1"
        assert reply.rejected.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        await outbox.put(apb.BidStreamRequest(product_id="another-auction"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(call.read(), WAIT)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_input_gets_clear_statuses(mesh):
    async with mesh.channel("identity") as ich, \
            httpx.AsyncClient(base_url=mesh.http_url, timeout=WAIT) as http:
        _, _, seller = await sign_up_and_login(ich)
        auth = {"authorization": f"Bearer {seller}"}
        reply = await http.post("/v1/auctions", headers=auth,
                                json={"product_name": "", "auction_end": _end_in(0)})
        assert reply.status_code == 400
        fields = {v["field"] for d in reply.json()["details"] for v in d.get("fieldViolations", [])}
        assert {"product_name", "starting_price"} <= fields  # the declared rules, checked by the kit
        # The rules a declaration cannot state (the end's distance from now) are the domain's, next.
        reply = await http.post("/v1/auctions", headers=auth, json={
            "product_name": "lamp", "starting_price": {"currency_code": "USD", "amount_minor": 100},
            "auction_end": _end_in(0)})
        assert reply.status_code == 400
        assert "auction_end" in {v["field"] for d in reply.json()["details"]
                                 for v in d.get("fieldViolations", [])}
        assert (await http.get("/v1/auctions/nope")).status_code == 404
        assert (await http.get("/v1/auctions?page_token=garbage")).status_code == 400
        assert (await http.get("/v1/auctions?page_size=-1")).status_code == 400
        listed = await http.get("/v1/auctions?status=AUCTION_STATUS_OPEN&page_size=1")
        assert listed.status_code == 200
