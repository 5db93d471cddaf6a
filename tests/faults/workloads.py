"""Workloads that run through the bridge while a fault is injected, and the invariant each checks after.

A client retries a write with the same request_id until it is accepted (what a real client does); a
write counts as accepted only when the mesh answered 200. Invariants: accepted == stored, no
duplicates, every order in a final state, no gap in a resumed stream.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx

FINAL_ORDER_STATES = {"ORDER_STATUS_PAID", "ORDER_STATUS_PAYMENT_FAILED", "ORDER_STATUS_CANCELLED",
                      "ORDER_STATUS_REFUNDED"}


def uid() -> str:
    return uuid.uuid4().hex[:10]


async def until(check, what: str, timeout: float = 90.0, delay: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        await asyncio.sleep(delay)
    raise AssertionError(f"{what}: not true within {timeout} s (last: {last!r})")


async def send_until_accepted(http: httpx.AsyncClient, method: str, url: str, body: dict, stop: asyncio.Event,
                              headers: dict | None = None) -> dict | None:
    """Retry the same request (same request_id inside `body`) until 200, or until told to stop."""
    while True:
        try:
            r = await http.request(method, url, json=body, headers=headers, timeout=10)
            if r.status_code == 200:
                return r.json()
            if r.status_code < 500 and r.status_code not in (409, 429):
                raise AssertionError(f"{method} {url} refused with {r.status_code}: {r.text}")
        except httpx.HTTPError:
            pass
        if stop.is_set():
            return None
        await asyncio.sleep(0.2)


async def signed_in(http: httpx.AsyncClient) -> dict:
    name, password = f"f{uid()}", f"pw-{uid()}-{uid()}"
    await until(lambda: _ok(http.post("/v1/users", json={"user_name": name, "email": f"{name}@example.com",
                                                            "password": password})), "sign-up")
    r = await http.post("/v1/auth/login", json={"user_name": name, "password": password})
    http.cookies.clear()
    return {"authorization": f"Bearer {r.json()['sessionToken']}"}


async def _ok(request) -> dict | None:
    r = await request
    return r.json() if r.status_code == 200 else None


class Workload:
    """Base: `prepare`, then `run` writes until `stop`, then `check` returns the figures it verified."""

    name = ""
    invariant = ""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.accepted: list[str] = []

    async def run(self, stop: asyncio.Event, pause: float = 0.02) -> None:
        n = 0
        while not stop.is_set():
            key = await self.write(n, stop)
            if key is not None:
                self.accepted.append(key)
            n += 1
            await asyncio.sleep(pause)


class Votes(Workload):
    name, invariant = "votes", "accepted == counted, none twice"

    async def prepare(self) -> None:
        poll = await until(lambda: _ok(self.http.post("/v1/polls", json={
            "question": f"faults {uid()}", "options": ["a", "b", "c"]})), "poll")
        self.poll_id = poll["poll"]["id"]

    async def write(self, n: int, stop: asyncio.Event) -> str | None:
        voter = f"v{n}-{uid()}"
        body = {"option": n % 3, "voter_key": voter, "request_id": voter}
        answer = await send_until_accepted(self.http, "POST", f"/v1/polls/{self.poll_id}/votes", body, stop)
        return voter if answer is not None else None

    async def check(self) -> str:
        want = len(self.accepted)
        assert len(set(self.accepted)) == want

        async def counted():
            r = await self.http.get(f"/v1/polls/{self.poll_id}")
            if r.status_code != 200:
                # polls still coming back after its SIGKILL (the bridge says UNAVAILABLE): not yet
                assert r.status_code == 503, f"reading the poll: {r.status_code} {r.text}"
                return False
            total = int(r.json()["results"]["totalVotes"])
            assert total <= want, f"counted {total} > accepted {want}: a vote counted twice"
            return total == want

        await until(counted, f"tally reaching the {want} accepted votes")
        return f"{want} votes accepted, {want} counted"


class Bids(Workload):
    name, invariant = "bids", "accepted == stored, sequences 1..n, no duplicates"

    async def prepare(self) -> None:
        seller = await signed_in(self.http)
        self.auth = await signed_in(self.http)  # the bidder: nobody bids on their own auction
        end = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        body = {"product_name": f"lot {uid()}",
                "starting_price": {"currency_code": "USD", "amount_minor": "100"},
                "min_increment": {"currency_code": "USD", "amount_minor": "1"}, "auction_end": end}
        r = await until(lambda: _ok(self.http.post("/v1/auctions", json=body, headers=seller)), "auction")
        self.auction_id = r["auction"]["id"]

    async def write(self, n: int, stop: asyncio.Event) -> str | None:
        rid = f"b{n}-{uid()}"
        body = {"amount": {"currency_code": "USD", "amount_minor": str(200 + n * 10)}, "request_id": rid}
        answer = await send_until_accepted(self.http, "POST", f"/v1/auctions/{self.auction_id}/bids", body,
                                           stop, headers=self.auth)
        return answer["bid"]["id"] if answer is not None else None

    async def check(self) -> str:
        bids, token = [], ""
        while True:
            r = await self.http.get(f"/v1/auctions/{self.auction_id}/bids",
                                    params={"page_size": 500, "page_token": token})
            assert r.status_code == 200, r.text
            page = r.json()
            bids += page["bids"]
            token = page.get("nextPageToken", "")
            if not token:
                break
        ids = [b["id"] for b in bids]
        assert len(ids) == len(set(ids)), "a bid stored twice"
        assert set(self.accepted) <= set(ids), f"accepted bids lost: {set(self.accepted) - set(ids)}"
        assert len(ids) == len(self.accepted), f"stored {len(ids)} bids, accepted {len(self.accepted)}"
        sequences = sorted(int(b["sequence"]) for b in bids)
        assert sequences == list(range(1, len(bids) + 1)), "bid sequence has a gap or a repeat"
        return f"{len(self.accepted)} bids accepted, {len(ids)} stored, sequence 1..{len(ids)}"


class Orders(Workload):
    name, invariant = "orders", "every order final (paid), none twice"

    async def prepare(self) -> None:
        # A shopper's session: the client, and so its orders, are theirs to place and to read back.
        self.http.headers.update(await signed_in(self.http))
        c = await until(lambda: _ok(self.http.post("/v1/clients",
                                                   json={"name": "F", "email": f"c{uid()}@example.com"})),
                        "client")
        s = await until(lambda: _ok(self.http.post("/v1/sellers",
                                                   json={"name": "S", "email": f"s{uid()}@example.com"})),
                        "seller")
        product = {"seller_id": s["seller"]["id"], "name": f"p{uid()}", "category": "tools", "stock": 100000,
                   "price": {"currency_code": "USD", "amount_minor": "500"}}
        p = await until(lambda: _ok(self.http.post("/v1/products", json=product)), "product")
        self.client_id, self.product_id = c["client"]["id"], p["product"]["id"]

    async def write(self, n: int, stop: asyncio.Event) -> str | None:
        body = {"client_id": self.client_id, "items": [{"product_id": self.product_id, "quantity": 1}],
                "card_token": "tok_ok", "request_id": f"o{n}-{uid()}"}
        answer = await send_until_accepted(self.http, "POST", "/v1/orders", body, stop)
        return answer["order"]["id"] if answer is not None else None

    async def check(self) -> str:
        assert len(set(self.accepted)) == len(self.accepted), "one request made two orders"
        states: dict[str, str] = {}

        async def all_final():
            for order_id in self.accepted:
                if states.get(order_id) in FINAL_ORDER_STATES:
                    continue
                r = await self.http.get(f"/v1/orders/{order_id}")
                assert r.status_code == 200, f"accepted order {order_id} lost: {r.status_code} {r.text}"
                states[order_id] = r.json()["order"]["status"]
            return all(states.get(o) in FINAL_ORDER_STATES for o in self.accepted)

        await until(all_final, f"{len(self.accepted)} orders reaching a final state", timeout=120)
        paid = sum(1 for s in states.values() if s == "ORDER_STATUS_PAID")
        assert paid == len(self.accepted), (
            f"only {paid} of {len(self.accepted)} orders paid: {set(states.values())}")
        return f"{len(self.accepted)} orders accepted, {paid} paid"


class ChatResume(Workload):
    """Messages while a watcher is cut mid-stream and comes back with Last-Event-ID: no gap, no repeat."""

    name, invariant = "chat", "no stream gap after resume, accepted == delivered"

    async def prepare(self) -> None:
        self.auth = await signed_in(self.http)
        self.room = f"faults-{uid()}"
        await until(lambda: _ok(self.http.post("/v1/rooms", json={"room_id": self.room, "title": "faults"},
                                               headers=self.auth)), "room")
        self.seen: dict[int, str] = {}

    async def write(self, n: int, stop: asyncio.Event) -> str | None:
        body = {"text": f"m{n}", "client_message_id": f"m{n}-{uid()}"}
        answer = await send_until_accepted(self.http, "POST", f"/v1/rooms/{self.room}/messages", body, stop,
                                           headers=self.auth)
        return answer["message"]["id"] if answer is not None else None

    async def watch(self, per_cut: int = 7) -> None:
        """Read `per_cut` events, drop the connection, resume with Last-Event-ID; until the "end" message."""
        last = 0
        while True:
            headers = {"accept": "text/event-stream"}
            if last:
                headers["last-event-id"] = str(last)
            read = 0
            try:
                async with self.http.stream("GET", f"/v1/rooms/{self.room}:watch", headers=headers,
                                            timeout=httpx.Timeout(10, read=60)) as r:
                    event_id, kind = None, "message"
                    async for line in r.aiter_lines():
                        if line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("id:"):
                            event_id = int(line[3:].strip())
                        elif line.startswith("data:") and kind == "error":
                            break  # the stream ended with a status (chat was killed): resume
                        elif line.startswith("data:") and event_id is not None:
                            data = json.loads(line[5:])
                            assert event_id not in self.seen, (
                                f"sequence {event_id} delivered twice after resuming from {last}: first "
                                f"{self.seen[event_id]}, now {data['message']['id']} "
                                f"({data['message'].get('text')})")
                            assert last == 0 or event_id == last + 1, (
                                f"gap after resume: {last} -> {event_id}")
                            self.seen[event_id] = data["message"]["id"]
                            last, read = event_id, read + 1
                            event_id, kind = None, "message"  # each SSE event carries its own id
                            if data["message"].get("text") == "end":
                                return
                            if read >= per_cut:
                                break  # the client cuts the connection mid-stream
            except httpx.HTTPError:
                await asyncio.sleep(0.2)  # the bridge or chat was down: come back and resume

    async def finish(self, stop: asyncio.Event) -> None:
        body = {"text": "end", "client_message_id": f"end-{uid()}"}
        await send_until_accepted(self.http, "POST", f"/v1/rooms/{self.room}/messages", body, asyncio.Event(),
                                  headers=self.auth)

    async def check(self) -> str:
        delivered = set(self.seen.values())
        assert set(self.accepted) <= delivered, (
            f"{len(set(self.accepted) - delivered)} messages never delivered")
        sequences = sorted(self.seen)
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "gap in sequences"
        # `delivered` holds the closing "end" message too, which `accepted` never does: say so, so the
        # figure is not read as a message delivered twice (finding 11 read "47 accepted, 48 delivered").
        return (f"{len(self.accepted)} messages accepted, {len(delivered) - 1} delivered (+ the closing one) "
                "across resumes, no gap")


class ChatExact(ChatResume):
    """ChatResume with exact counting: the writer never gives up on a message it sent (a message whose
    answer was lost in the kill is retried with its client_message_id until answered, so it counts as
    accepted), and the closing message is left out of the count: accepted == delivered, exactly."""

    name, invariant = "chat-exact", "accepted == delivered exactly, no gap, no repeat"

    async def write(self, n: int, stop: asyncio.Event) -> str | None:
        body = {"text": f"m{n}", "client_message_id": f"m{n}-{uid()}"}
        answer = await send_until_accepted(self.http, "POST", f"/v1/rooms/{self.room}/messages", body,
                                           asyncio.Event(), headers=self.auth)  # never abandoned
        return answer["message"]["id"]

    async def check(self) -> str:
        closing = [sid for sid, mid in self.seen.items() if mid not in set(self.accepted)]
        assert len(closing) == 1, f"delivered {len(closing)} messages nobody accepted: {closing}"
        delivered = [mid for sid, mid in sorted(self.seen.items()) if sid not in closing]
        assert len(delivered) == len(set(delivered)), "a message delivered twice"
        assert sorted(delivered) == sorted(self.accepted), (
            f"accepted {len(self.accepted)}, delivered {len(delivered)}: "
            f"missing {set(self.accepted) - set(delivered)}, extra {set(delivered) - set(self.accepted)}")
        sequences = sorted(self.seen)
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "gap in sequences"
        return (f"{len(self.accepted)} messages accepted, {len(delivered)} delivered (+ the closing one), "
                "no gap, no repeat")
