"""The typed client and the CLI against the raw generated stubs, measured in the same run.

    .venv/bin/python bench/client_bench.py [--calls 2000] [--bids 300] [--rounds 3] [--write]

Serves identity, polls and auctions as `agora serve` processes (embedded SQLite, a temp data dir,
free ports), then times, alternating legs in each round:
  unary   GetPoll through `agora.client.Agora` vs a bare PollServiceStub (same sync channel kind)
  stream  replaying N bids through `Agora.watch_auction` (resume bookkeeping, AgoraError mapping)
          vs a bare WatchAuction iteration
  cli     `agora polls show ID --json` (a whole process) vs `python -c` doing the same call
Ratios are client/raw throughput (1.00x = no cost) and raw/CLI wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agora.auctions.v1 import auctions_pb2, auctions_pb2_grpc  # noqa: E402
from agora.client import Agora  # noqa: E402
from agora.common.v1.money_pb2 import Money  # noqa: E402
from agora.identity.v1 import identity_pb2  # noqa: E402
from agora.polls.v1 import polls_pb2, polls_pb2_grpc  # noqa: E402

from tests.clients.conftest import AGORA, free_offset  # noqa: E402


def serve(domains: list[str], data: Path, offset: int) -> list[subprocess.Popen]:
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_LOG_LEVEL": "WARNING",
           "AGORA_LOG_FORMAT": "text",
           "AGORA_SERVICE_API_KEY": os.environ.get("AGORA_SERVICE_API_KEY") or os.urandom(16).hex()}  # shared
    procs = []
    for domain in domains:
        log = data / f"{domain}.log"
        with open(log, "w") as out:
            procs.append(subprocess.Popen([*AGORA, "serve", domain, "--data-dir", str(data)], env=env,
                                          cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"{domain} did not start:\n{log.read_text()}")
            time.sleep(0.1)
    return procs


def rate(n: int, seconds: float) -> float:
    return n / seconds


def unary_legs(agora: Agora, target: str, poll_id: str, calls: int) -> tuple[float, float]:
    request = polls_pb2.GetPollRequest(poll_id=poll_id)
    with grpc.insecure_channel(target) as channel:
        stub = polls_pb2_grpc.PollServiceStub(channel)
        stub.GetPoll(request, timeout=10)
        started = time.perf_counter()
        for _ in range(calls):
            stub.GetPoll(request, timeout=10)
        raw = rate(calls, time.perf_counter() - started)
    agora.polls.GetPoll(request)
    started = time.perf_counter()
    for _ in range(calls):
        agora.polls.GetPoll(request)
    return raw, rate(calls, time.perf_counter() - started)


def stream_legs(agora: Agora, target: str, auction_id: str, bids: int) -> tuple[float, float]:
    with grpc.insecure_channel(target) as channel:
        stub = auctions_pb2_grpc.AuctionServiceStub(channel)
        # connected, like the client
        stub.GetAuction(auctions_pb2.GetAuctionRequest(auction_id=auction_id), timeout=10)
        started = time.perf_counter()
        call = stub.WatchAuction(auctions_pb2.WatchAuctionRequest(auction_id=auction_id, resume_from=1))
        for frame in call:
            if frame.sequence == bids:
                break
        call.cancel()
        raw = rate(bids - 1, time.perf_counter() - started)
    started = time.perf_counter()
    for frame in agora.watch_auction(auction_id, resume_from=1):
        if frame.sequence == bids:
            break
    return raw, rate(bids - 1, time.perf_counter() - started)


def cli_legs(offset: int, poll_id: str) -> tuple[float, float]:
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset)}
    script = ("import grpc; from agora.polls.v1 import polls_pb2, polls_pb2_grpc; "
              f"c = grpc.insecure_channel('127.0.0.1:{50052 + offset}'); "
              f"print(polls_pb2_grpc.PollServiceStub(c).GetPoll(polls_pb2.GetPollRequest(poll_id='{poll_id}')))")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    raw = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([*AGORA, "polls", "show", poll_id, "--json"], env=env, check=True, capture_output=True,
                   cwd=ROOT)
    return raw, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--bids", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()

    offset, _ = free_offset()
    data = Path(tempfile.mkdtemp(prefix="client-bench-"))
    procs = serve(["identity", "polls", "auctions"], data, offset)
    try:
        agora = Agora("127.0.0.1", port_offset=offset)
        poll_id = agora.polls.CreatePoll(polls_pb2.CreatePollRequest(question="Bench?",
                                                                     options=["a", "b"])).poll.id
        tokens = []
        for _ in range(2):
            name = f"b{uuid.uuid4().hex[:10]}"
            agora.identity.SignUp(identity_pb2.SignUpRequest(user_name=name, email=f"{name}@example.com",
                                                             password="bench password"))
            tokens.append(agora.identity.Login(identity_pb2.LoginRequest(
                user_name=name, password="bench password")).session_token)
        end = auctions_pb2.CreateAuctionRequest().auction_end
        end.FromSeconds(int(time.time()) + 3600)
        agora.token = tokens[0]
        auction_id = agora.auctions.CreateAuction(auctions_pb2.CreateAuctionRequest(
            product_name="bench", starting_price=Money(currency_code="USD", amount_minor=1),
            auction_end=end)).auction.id
        agora.token = tokens[1]
        for i in range(1, args.bids + 1):
            agora.auctions.PlaceBid(auctions_pb2.PlaceBidRequest(
                auction_id=auction_id, amount=Money(currency_code="USD", amount_minor=1 + i)))
        agora.token = None

        rows: dict[str, list[tuple[float, float]]] = {"unary": [], "stream": [], "cli": []}
        for _ in range(args.rounds):
            rows["unary"].append(unary_legs(agora, agora.targets["polls"], poll_id, args.calls))
            rows["stream"].append(stream_legs(agora, agora.targets["auctions"], auction_id, args.bids))
            rows["cli"].append(cli_legs(offset, poll_id))
        agora.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)

    def med(leg: str, i: int) -> float:
        return statistics.median(r[i] for r in rows[leg])

    lines = [
        "| leg | raw stub | agora client / CLI | ratio | runs (raw / client) |",
        "|---|---:|---:|---:|---|",
        f"| unary GetPoll, calls/s | {med('unary', 0):,.0f} | {med('unary', 1):,.0f} | "
        f"{med('unary', 1) / med('unary', 0):.2f}x | "
        + ", ".join(f"{a:,.0f}/{b:,.0f}" for a, b in rows["unary"]) + " |",
        f"| WatchAuction replay of {args.bids - 1} bids, msgs/s | {med('stream', 0):,.0f} | "
        f"{med('stream', 1):,.0f} | "
        f"{med('stream', 1) / med('stream', 0):.2f}x | "
        + ", ".join(f"{a:,.0f}/{b:,.0f}" for a, b in rows["stream"]) + " |",
        f"| one call from a new process, s | {med('cli', 0):.2f} | {med('cli', 1):.2f} | "
        f"{med('cli', 0) / med('cli', 1):.2f}x | "
        + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in rows["cli"]) + " |",
    ]
    print("\n".join(lines))
    if args.write:
        command = (f"`.venv/bin/python bench/client_bench.py --calls {args.calls} --bids {args.bids} "
                   f"--rounds {args.rounds}`")
        section = (
            "\n## Typed client and CLI vs raw stubs (bench/client_bench.py)\n\n"
            f"Command: {command} (2 cores, shared with other sessions' tests; {time.strftime('%Y-%m-%d')}).\n"
            "identity, polls and auctions as `agora serve` processes on embedded SQLite; the load runs "
            "in this\n"
            "process on sync channels. Ratio = client throughput / raw stub throughput (1.00x = the client "
            "costs\n"
            "nothing); for the CLI row, raw wall time / CLI wall time of one `GetPoll` from a fresh process\n"
            "(`python -c` with the bare stub vs `agora polls show ID --json`: imports, config, rendering).\n"
            "Medians of the rounds.\n\n" + "\n".join(lines) + "\n"
        )
        with open(ROOT / "bench" / "RESULTS.md", "a") as out:
            out.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
