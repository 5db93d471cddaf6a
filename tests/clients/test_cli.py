"""The `agora` verbs as a user runs them against a real `agora up`: output, --json, exit codes."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from tests.clients.conftest import OPERATOR_KEY, ROOT, Mesh

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_UNAUTHENTICATED = 1, 2, 3, 4


def test_login_saves_the_session_privately_and_whoami_reads_it(mesh: Mesh, alice: Path):
    assert stat.S_IMODE(alice.stat().st_mode) == 0o600, "the token file must be private"
    assert 'token = "' in alice.read_text()
    me = mesh.json("whoami", config=alice)
    assert me["user"]["userName"].startswith("alice_")
    table = mesh.run("whoami", config=alice)
    assert table.returncode == 0 and me["user"]["userName"] in table.stdout


def test_polls_create_list_vote_show_close(mesh: Mesh, alice: Path, tmp_path: Path):
    created = mesh.json("polls", "create", "Lunch?", "Pizza", "Sushi", "Salad", config=alice)["poll"]
    poll_id = created["id"]
    assert [o["text"] for o in created["options"]] == ["Pizza", "Sushi", "Salad"]

    listed = mesh.json("polls", "list", "--status", "open", config=alice)
    assert poll_id in [p["id"] for p in listed["polls"]]
    assert poll_id in mesh.run("polls", "list", config=alice).stdout  # the table shows whole ids

    vote = mesh.json("polls", "vote", poll_id, "Sushi", config=alice)
    assert vote["option"] == 1
    assert "counted for option 0" in mesh.run("polls", "vote", poll_id, "0", config=alice).stdout

    votes = tmp_path / "votes.csv"
    votes.write_text("option,voter_key\n2,a\n2,b\nPizza,c\n")
    summary = mesh.json("polls", "vote", poll_id, "--from-file", str(votes), config=alice)
    assert summary == {"pollId": poll_id, "votes": 3, "accepted": 3, "failed": 0, "failures": {}}

    results = _wait_for_total(mesh, alice, poll_id, 5)
    assert [int(t["votes"]) for t in results["tallies"]] == [2, 1, 2]
    shown = mesh.run("polls", "show", poll_id, config=alice)
    assert "total 5 votes" in shown.stdout and "Salad" in shown.stdout

    closed = mesh.json("polls", "close", poll_id, config=alice)
    assert closed["poll"]["status"] == "POLL_STATUS_CLOSED"
    final = mesh.json("polls", "watch", poll_id, config=alice)  # a closed poll: one final message, then done
    assert final["final"] is True and final["results"]["totalVotes"] == "5"


def _wait_for_total(mesh: Mesh, config: Path, poll_id: str, total: int) -> dict:
    import time

    deadline = time.monotonic() + 20
    while True:
        results = mesh.json("polls", "show", poll_id, config=config)["results"]
        if int(results.get("totalVotes", 0)) == total or time.monotonic() > deadline:
            assert int(results.get("totalVotes", 0)) == total, results
            return results
        time.sleep(0.2)


def test_bulk_vote_reports_bad_rows_and_exits_1(mesh: Mesh, alice: Path, tmp_path: Path):
    poll_id = mesh.json("polls", "create", "Tea or coffee?", "Tea", "Coffee", config=alice)["poll"]["id"]
    votes = tmp_path / "votes.csv"
    votes.write_text("0\n1\n7\n")
    out = mesh.run("polls", "vote", poll_id, "--from-file", str(votes), "--json", config=alice)
    assert out.returncode == EXIT_FAILED
    summary = json.loads(out.stdout)
    assert summary["accepted"] == 2 and summary["failed"] == 1
    assert any("INVALID_ARGUMENT" in reason for reason in summary["failures"])
    missing = mesh.run("polls", "vote", poll_id, "--from-file", str(tmp_path / "nope.csv"), config=alice)
    assert missing.returncode == EXIT_USAGE and "cannot read" in missing.stderr


def test_auctions_create_bid_show_and_watch_replays_the_bids(mesh: Mesh, alice: Path, bob: Path):
    auction = mesh.json("auctions", "create", "Brass lamp", "--price", "10.00", "--increment", "0.50",
                        "--ends-in", "10m", config=alice)["auction"]
    auction_id = auction["id"]
    assert auction["startingPrice"] == {"currencyCode": "USD", "amountMinor": "1000"}

    own = mesh.run("auctions", "bid", auction_id, "11", config=alice)
    assert own.returncode == EXIT_FAILED and "PERMISSION_DENIED" in own.stderr
    low = mesh.run("auctions", "bid", auction_id, "9.99", "--json", config=bob)
    assert low.returncode == EXIT_FAILED
    assert json.loads(low.stderr)["error"]["code"] == "FAILED_PRECONDITION"

    first = mesh.json("auctions", "bid", auction_id, "11.00", config=bob)
    assert first["bid"]["sequence"] == "1"
    second = mesh.run("auctions", "bid", auction_id, "12.50", config=bob)
    assert second.returncode == 0 and "bid #2 of 12.50 USD accepted" in second.stdout

    shown = mesh.run("auctions", "show", auction_id, config=bob)
    assert "12.50 USD" in shown.stdout and "13.00 USD" in shown.stdout
    assert auction_id in mesh.run("auctions", "list", config=bob).stdout

    frames = mesh.run("auctions", "watch", auction_id, "--from", "0", "--limit", "1", "--json", config=bob)
    assert frames.returncode == 0
    snapshot = json.loads(frames.stdout.splitlines()[0])
    assert snapshot["snapshot"]["bidCount"] == "2"
    replay = mesh.run("auctions", "watch", auction_id, "--from", "0", "--limit", "1", config=bob)
    assert "Brass lamp at 12.50 USD, 2 bids" in replay.stdout
    bids = mesh.run("auctions", "watch", auction_id, "--from", "1", "--limit", "1", "--json", config=bob)
    assert [json.loads(x)["sequence"] for x in bids.stdout.splitlines()] == ["2"]


def test_chat_rooms_say_and_join(mesh: Mesh, alice: Path):
    room = mesh.json("chat", "rooms", "--create", "Book club", config=alice)["room"]
    assert room["id"] in [r["id"] for r in mesh.json("chat", "rooms", config=alice)["rooms"]]
    said = mesh.json("chat", "say", room["id"], "hello from a script", config=alice)
    assert said["message"]["text"] == "hello from a script"
    anonymous = mesh.json("chat", "say", room["id"], "hi", "--username", "carol", "--token", "", config=alice)
    assert anonymous["message"]["username"] == "carol"

    # An interactive session fed from stdin: what is typed is posted, the room is shown, Ctrl-D leaves.
    session = mesh.run("chat", "join", room["id"], "--history", "5", config=alice,
                       input="typed in the session\n/quit\n")
    assert session.returncode == 0, session.stderr
    out = session.stdout
    assert "hello from a script" in out and "carol: hi" in out  # history first
    assert f"joined #{room['id']}" in out and "typed in the session" in out
    frames = mesh.run("chat", "join", room["id"], "--history", "0", "--json", config=alice, input="")
    joined = json.loads(frames.stdout.splitlines()[0])  # one JSON object per line
    assert joined["joined"]["room"]["id"] == room["id"] \
        and joined["joined"]["you"]["username"].startswith("alice_")


def test_orders_place_show_list_and_watch_to_paid(mesh: Mesh, alice: Path):
    import subprocess

    import tomllib

    token = tomllib.loads(alice.read_text())["token"]  # alice's client: hers to order for
    seeded = subprocess.run([sys.executable, str(ROOT / "examples" / "shop.py"), "--seed-only",
                             "--token", token],
                            env=mesh.env(), capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    ids = json.loads(seeded.stdout)
    order = mesh.json("orders", "place", "--client", ids["client_id"], "--item", f"{ids['product_id']}:3",
                      config=alice)["order"]
    assert order["items"][0]["quantity"] == "3" and order["total"]["amountMinor"] == "3750"

    updates = mesh.run("orders", "watch", order["id"], "--until", "paid", "--json", config=alice, timeout=60)
    assert updates.returncode == 0, updates.stderr
    statuses = [json.loads(line)["change"]["status"] for line in updates.stdout.splitlines()]
    assert statuses == ["ORDER_STATUS_PENDING", "ORDER_STATUS_PAID"]
    shown = mesh.run("orders", "show", order["id"], config=alice)
    assert "paid" in shown.stdout and "order placed" in shown.stdout
    listed = mesh.json("orders", "list", "--client", ids["client_id"], config=alice)
    assert [o["id"] for o in listed["orders"]] == [order["id"]]
    missing = mesh.run("orders", "place", "--client", ids["client_id"], "--item", "nope:x", config=alice)
    assert missing.returncode == EXIT_USAGE


def test_events_tail_shows_the_mesh_events_filtered(mesh: Mesh, alice: Path):
    poll_id = mesh.json("polls", "create", "Tail me?", "Yes", "No", config=alice)["poll"]["id"]
    lines = mesh.run("events", "tail", "--type", "polls.poll.*", "--key", poll_id, "--from", "1",
                     "--limit", "1", "--json", config=alice,
                     AGORA_SERVICE_API_KEY=OPERATOR_KEY)
    assert lines.returncode == 0, lines.stderr
    event = json.loads(lines.stdout.splitlines()[0])
    assert event["type"] == "polls.poll.created" and event["key"] == poll_id
    table = mesh.run("events", "tail", "--type", "polls.*", "--key", poll_id, "--from", "1", "--limit", "1",
                     config=alice, AGORA_SERVICE_API_KEY=OPERATOR_KEY)
    assert "polls.poll.created" in table.stdout and poll_id in table.stdout
    bad = mesh.run("events", "tail", "--type", "Bad Pattern!", "--limit", "1", config=alice,
                   AGORA_SERVICE_API_KEY=OPERATOR_KEY)
    assert bad.returncode == EXIT_USAGE and "INVALID_ARGUMENT" in bad.stderr
    user = mesh.run("events", "tail", "--limit", "1", config=alice)  # the audit log is the operators'
    assert user.returncode != 0 and "PERMISSION_DENIED" in user.stderr, user.stderr


def test_health_lists_every_service(mesh: Mesh):
    rows = mesh.json("health")
    assert len(rows) == 10 and all(r["status"] == "SERVING" for r in rows)


def test_exit_codes_for_not_found_unauthenticated_unavailable_and_usage(
        mesh: Mesh, alice: Path, tmp_path: Path):
    missing = mesh.run("polls", "show", "00000000-0000-0000-0000-000000000000", "--json", config=alice)
    assert missing.returncode == EXIT_FAILED
    error = json.loads(missing.stderr)["error"]
    assert error["code"] == "NOT_FOUND" and error["details"][0]["resourceType"] == "poll"
    assert mesh.run("orders", "show", "no-such-order", config=alice).returncode == EXIT_FAILED

    nobody = tmp_path / "nobody.toml"
    assert mesh.run("auctions", "create", "x", "--price", "1", config=nobody).returncode \
        == EXIT_UNAUTHENTICATED
    forged = mesh.run("auctions", "create", "x", "--price", "1", "--token", "forged", config=nobody)
    assert forged.returncode == EXIT_UNAUTHENTICATED and "UNAUTHENTICATED" in forged.stderr
    assert mesh.run("whoami", config=nobody).returncode == EXIT_UNAUTHENTICATED

    down = mesh.run("polls", "list", "--target", "127.0.0.1:1", config=alice)
    assert down.returncode == EXIT_UNAVAILABLE and "UNAVAILABLE" in down.stderr
    assert mesh.run("health", "--target", "127.0.0.1:1").returncode == EXIT_UNAVAILABLE

    assert mesh.run("polls", "frobnicate", config=alice).returncode == EXIT_USAGE
    invalid = mesh.run("polls", "create", "Only one?", "Yes", config=alice)
    assert invalid.returncode == EXIT_USAGE and "options" in invalid.stderr
    assert mesh.run("auctions", "create", "x", "--price", "ten", config=alice).returncode == EXIT_USAGE


def test_logout_revokes_the_session(mesh: Mesh, tmp_path: Path):
    config = tmp_path / "config.toml"
    mesh.json("signup", "carol_logout", "--email", "carol_logout@example.com", "--password", "carol-password",
              config=config)
    mesh.json("login", "--email", "carol_logout@example.com", "--password", "carol-password", config=config)
    token = next(line for line in config.read_text().splitlines() if line.startswith("token")).split('"')[1]
    assert mesh.run("logout", config=config).returncode == 0
    assert "token" not in config.read_text()
    assert mesh.run("whoami", f"--token={token}", config=config).returncode == EXIT_UNAUTHENTICATED
