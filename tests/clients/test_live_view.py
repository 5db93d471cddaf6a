"""`agora polls watch` in a pseudo-terminal: the live bars change when votes arrive from another process."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pexpect

from tests.clients.conftest import AGORA, ROOT, Mesh

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _screen_until(child: pexpect.spawn, pattern: str, timeout: float = 30) -> str:
    """Read the terminal until `pattern` (a regex over the text without ANSI codes) shows up."""
    import time

    seen = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, ANSI.sub("", seen)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the live view never showed {pattern!r}; last "
                                 f"screen:\n{ANSI.sub('', seen)[-1500:]}")
        try:
            seen += child.read_nonblocking(65536, timeout=0.5)
        except pexpect.TIMEOUT:
            continue
    return ANSI.sub("", seen)


def test_poll_bars_move_when_votes_are_cast_elsewhere(mesh: Mesh, alice: Path):
    poll_id = mesh.json("polls", "create", "Best editor?", "Vim", "Emacs", config=alice)["poll"]["id"]
    env = mesh.env(AGORA_CONFIG=str(alice), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    child = pexpect.spawn(AGORA[0], [*AGORA[1:], "polls", "watch", poll_id], env=env, cwd=str(ROOT),
                          dimensions=(30, 100), encoding="utf-8", codec_errors="replace")
    child.logfile_read = None
    try:
        screen = _screen_until(child, r"total 0 votes")
        assert re.search(r"Vim\s+░+\s+0 votes", screen), screen

        for option in ("Vim", "Vim", "Emacs"):  # another process, as another user would
            assert mesh.run("polls", "vote", poll_id, option, config=alice).returncode == 0

        screen = _screen_until(child, r"total 3 votes")
        last = screen[screen.rindex("Best editor?"):]
        assert re.search(r"Vim\s+█+░*\s+2 votes\s+66\.7%", last), last
        assert re.search(r"Emacs\s+█+░*\s+1 vote\s+33\.3%", last), last

        assert mesh.run("polls", "close", poll_id, config=alice).returncode == 0
        _screen_until(child, r"total 3 votes · final")
        child.expect(pexpect.EOF, timeout=30)  # the poll closed: the stream ends and so does the view
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)


def test_auction_ladder_grows_with_bids(mesh: Mesh, alice: Path, bob: Path):
    auction_id = mesh.json("auctions", "create", "Clock", "--price", "5.00", "--ends-in", "10m",
                           config=alice)["auction"]["id"]
    env = mesh.env(AGORA_CONFIG=str(alice), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    child = pexpect.spawn(sys.executable, ["-m", "agora.cli", "auctions", "watch", auction_id], env=env,
                          cwd=str(ROOT), dimensions=(30, 120), encoding="utf-8", codec_errors="replace")
    try:
        _screen_until(child, r"Clock\s+price 5\.00 USD")
        assert mesh.run("auctions", "bid", auction_id, "6.00", config=bob).returncode == 0
        assert mesh.run("auctions", "bid", auction_id, "7.25", config=bob).returncode == 0
        screen = _screen_until(child, r"price 7\.25 USD")
        last = screen[screen.rindex("price 7.25 USD"):]
        assert re.search(r"2\s+7\.25 USD\s+bob_", last) and re.search(r"1\s+6\.00 USD\s+bob_", last), last
    finally:
        child.close(force=True)
