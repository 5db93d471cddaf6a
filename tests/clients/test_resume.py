"""The typed client's watch survives its server restarting: every bid arrives exactly once, in order.

identity and auctions run as two `agora serve` processes on a persistent SQLite data dir; the
auctions process is killed mid-stream and started again, bids are placed while the watcher is
disconnected (the watcher is held in its reconnect hook until they are in), and the watcher
resumes from its last sequence.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from agora.auctions.v1 import auctions_pb2
from agora.client import Agora, AgoraError
from agora.client import aio as agora_aio
from agora.common.v1.money_pb2 import Money
from agora.identity.v1 import identity_pb2

from tests.clients.conftest import AGORA, ROOT, wait_for_line
from tests.ports import free_mesh_ports


class Served:
    """One `agora serve DOMAIN` process that can be killed and started again on the same data."""

    def __init__(self, domain: str, data: Path, offset: int) -> None:
        self.domain, self.data, self.offset = domain, data, offset
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.data / f"{self.domain}-{self.starts}.log"
        env = {**os.environ, "AGORA_PORT_OFFSET": str(self.offset), "AGORA_LOG_FORMAT": "text",
               "AGORA_LOG_LEVEL": "WARNING", "AGORA_BACKENDS": "embedded",
               "AGORA_SERVICE_API_KEY": "resume-test-key"}  # two processes of one mesh share the credential
        with open(log, "w") as out:
            self.proc = subprocess.Popen([*AGORA, "serve", self.domain, "--data-dir", str(self.data)],
                                         cwd=ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for_line(self.proc, log, "ready", timeout=60)

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture()
def servers(tmp_path: Path):
    offset, _ = free_mesh_ports()
    identity, auctions = Served("identity", tmp_path, offset), Served("auctions", tmp_path, offset)
    identity.start()
    auctions.start()
    yield offset, auctions
    auctions.close()
    identity.close()


def _user(agora: Agora) -> str:
    name = f"u{uuid.uuid4().hex[:10]}"
    agora.identity.SignUp(identity_pb2.SignUpRequest(user_name=name, email=f"{name}@example.com",
                                                     password="a long password"))
    return agora.identity.Login(identity_pb2.LoginRequest(user_name=name,
                                                          password="a long password")).session_token


def _setup(offset: int) -> tuple[str, Agora]:
    seller = Agora("127.0.0.1", port_offset=offset)
    seller.token = _user(seller)
    end = auctions_pb2.CreateAuctionRequest().auction_end
    end.FromSeconds(int(time.time()) + 600)
    auction = seller.auctions.CreateAuction(auctions_pb2.CreateAuctionRequest(
        product_name="Resumable", starting_price=Money(currency_code="USD", amount_minor=100),
        auction_end=end)).auction
    bidder = Agora("127.0.0.1", port_offset=offset)
    bidder.token = _user(bidder)
    seller.close()
    return auction.id, bidder


def _bid(bidder: Agora, auction_id: str, sequence: int) -> None:
    amount = Money(currency_code="USD", amount_minor=100 + sequence * 10)
    deadline = time.monotonic() + 30
    while True:  # just after a restart the port may not accept yet; the channel retries, this bounds it
        try:
            reply = bidder.auctions.PlaceBid(auctions_pb2.PlaceBidRequest(auction_id=auction_id,
                                                                          amount=amount))
            assert reply.bid.sequence == sequence
            return
        except AgoraError as error:
            if error.code.name != "UNAVAILABLE" or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _check_exactly_once(frames: list[auctions_pb2.WatchAuctionResponse], last: int) -> None:
    kinds = [f.WhichOneof("event") for f in frames]
    assert kinds[0] == "snapshot" and frames[0].sequence == 0
    bids = [f.bid.bid.sequence for f in frames[1:]]
    assert kinds[1:] == ["bid"] * len(bids)
    assert bids == list(range(1, last + 1)), f"bids delivered: {bids}"


def test_sync_watch_resumes_after_the_server_is_killed(servers):
    offset, auctions = servers
    auction_id, bidder = _setup(offset)
    watcher = Agora("127.0.0.1", port_offset=offset)
    frames: list[auctions_pb2.WatchAuctionResponse] = []
    disconnected, carry_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_on_first_retry(error: AgoraError, attempt: int, delay: float) -> None:
        disconnected.set()
        assert carry_on.wait(60), "the test never let the watcher reconnect"

    def watch() -> None:
        try:
            for frame in watcher.watch_auction(auction_id, on_retry=hold_on_first_retry):
                frames.append(frame)
                if frame.WhichOneof("event") == "bid" and frame.bid.bid.sequence == 8:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    _wait(lambda: len(frames) == 1, "the snapshot")
    for sequence in (1, 2, 3):
        _bid(bidder, auction_id, sequence)
    _wait(lambda: len(frames) == 4, "bids 1-3 live")

    auctions.stop(signal.SIGKILL)  # the connection drops mid-stream
    assert disconnected.wait(30), "the watcher did not notice the dropped connection"
    auctions.start()
    for sequence in (4, 5, 6):  # placed while the watcher is away: replayed from the store
        _bid(bidder, auction_id, sequence)
    carry_on.set()
    _wait(lambda: len(frames) == 7 or bool(errors), "bids 4-6 replayed")
    for sequence in (7, 8):  # live again
        _bid(bidder, auction_id, sequence)
    thread.join(30)
    assert not errors, errors
    _check_exactly_once(frames, 8)
    watcher.close()
    bidder.close()


async def test_asyncio_watch_resumes_after_a_graceful_restart(servers):
    offset, auctions = servers
    auction_id, bidder = _setup(offset)
    frames: list[auctions_pb2.WatchAuctionResponse] = []
    disconnected, carry_on = asyncio.Event(), asyncio.Event()

    async def hold_on_first_retry(error: AgoraError, attempt: int, delay: float) -> None:
        assert error.code.name == "UNAVAILABLE", error
        disconnected.set()
        await asyncio.wait_for(carry_on.wait(), 60)

    async def watch() -> None:
        async with agora_aio.Agora("127.0.0.1", port_offset=offset) as watcher:
            async for frame in watcher.watch_auction(auction_id, on_retry=hold_on_first_retry):
                frames.append(frame)
                if frame.WhichOneof("event") == "bid" and frame.bid.bid.sequence == 6:
                    return

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    task = asyncio.create_task(watch())
    await until(lambda: len(frames) == 1, "the snapshot")
    for sequence in (1, 2):
        await asyncio.to_thread(_bid, bidder, auction_id, sequence)
    await until(lambda: len(frames) == 3, "bids 1-2 live")

    await asyncio.to_thread(auctions.stop, signal.SIGTERM)  # drains: the stream ends UNAVAILABLE
    await asyncio.wait_for(disconnected.wait(), 30)
    await asyncio.to_thread(auctions.start)
    for sequence in (3, 4):
        await asyncio.to_thread(_bid, bidder, auction_id, sequence)
    carry_on.set()
    await until(lambda: len(frames) == 5 or task.done(), "bids 3-4 replayed")
    for sequence in (5, 6):
        await asyncio.to_thread(_bid, bidder, auction_id, sequence)
    await asyncio.wait_for(task, 30)
    _check_exactly_once(frames, 6)
    bidder.close()
