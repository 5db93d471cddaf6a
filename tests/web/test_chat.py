"""The chat page as people use it, at phone and desktop width: join with a name, talk, see who is
present and how many are in every room (live, from each room's stream), reload and be back in the room
with the log (resumed with `resume_from`), switch rooms, and create one after being asked to sign in."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.browser import DESKTOP, WAIT_MS, WIDTHS, assert_fits, new_page, shot
from tests.web.conftest import PASSWORD, bearer, make_user


async def make_room(mesh, title: str) -> str:
    owner = await make_user(mesh, prefix="owner")
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=20.0, headers=bearer(owner)) as client:
        r = await client.post("/v1/rooms", json={"title": title,
                                                 "roomId": f"{title.lower()}-{uuid.uuid4().hex[:6]}"})
        assert r.status_code == 200, r.text
        return r.json()["room"]["id"]


async def join(page, base: str, room: str, name: str) -> None:
    await page.goto(f"{base}/#room={room}")
    await page.fill("#name", name)
    await page.click("#join-button")
    await page.wait_for_selector(f"#status >> text=joined as {name}", timeout=WAIT_MS)


def count(room: str) -> str:
    return f"#rooms button[data-room='{room}'] .count"


@pytest.mark.parametrize("width", WIDTHS)
async def test_talk_see_live_counts_and_come_back_after_a_reload(browser, mesh, base, width):
    lobby = await make_room(mesh, "Lobby")
    side = await make_room(mesh, "Side")
    carol, carol_seen = await new_page(browser, width)
    ann, ann_seen = await new_page(browser, width)
    bob, bob_seen = await new_page(browser, width)
    try:
        await join(carol, base, side, "carol")   # in another room, watching the list
        await carol.wait_for_selector(f"{count(lobby)} >> text=0", timeout=WAIT_MS)
        await join(ann, base, lobby, "ann")
        await carol.wait_for_selector(f"{count(lobby)} >> text=1", timeout=WAIT_MS)
        await join(bob, base, lobby, "bob")
        await carol.wait_for_selector(f"{count(lobby)} >> text=2", timeout=WAIT_MS)
        await ann.wait_for_selector("#members li >> text=bob", timeout=WAIT_MS)
        assert await ann.inner_text("#present-count") == "2"

        await ann.fill("#text", "hello bob")
        await ann.press("#text", "Enter")
        await bob.wait_for_selector("#log li.message >> text=hello bob", timeout=WAIT_MS)
        nasty = '<img src=x onerror="window.pwned=1"><b>bold</b>'
        await bob.fill("#text", nasty)
        await bob.click("#send")
        await ann.wait_for_function(
            "[...document.querySelectorAll('#log li.message .text')].some(t => "
            "t.textContent.includes('bold'))",
            timeout=WAIT_MS)
        assert await ann.locator("#log img, #log b").count() == 0
        assert await ann.evaluate("window.pwned") is None
        await assert_fits(ann)
        await shot(ann, "chat-talking")

        # A reload: the name and the room are remembered, the log is back, and the socket resumes
        # after the last entry the page has (no Join click).
        sockets: list[str] = []
        ann.on("websocket", lambda ws: sockets.append(ws.url))
        await ann.reload()
        await ann.wait_for_selector("#status >> text=joined as ann", timeout=WAIT_MS)
        assert await ann.input_value("#name") == "ann"
        assert await ann.inner_text("#room-title") == "Lobby"
        await ann.wait_for_selector("#log li.message >> text=hello bob", timeout=WAIT_MS)
        await ann.wait_for_selector("#log li.presence >> text=ann joined", timeout=WAIT_MS)
        chat = [url for url in sockets if f"/v1/rooms/{lobby}/chat" in url]
        assert len(chat) == 1 and "resume_from=" in chat[0], chat
        resumed = int(chat[0].rsplit("resume_from=", 1)[1])
        shown = [int(s) for s in await ann.eval_on_selector_all("#log li[data-sequence]",
                                                                "l => l.map(e => e.dataset.sequence)")]
        assert shown == list(range(shown[0], shown[-1] + 1)), shown   # no gap, no duplicate
        # History up to `resumed`, then the stream from there on: this page's own join comes next.
        rejoined = await ann.locator("#log li.presence",
                                     has_text="ann joined").last.get_attribute("data-sequence")
        assert int(rejoined) == resumed + 1, (resumed, rejoined, shown)
        await bob.fill("#text", "welcome back")
        await bob.click("#send")
        await ann.wait_for_selector("#log li.message >> text=welcome back", timeout=WAIT_MS)

        await bob.context.close()   # bob leaves: the counts fall, live
        await carol.wait_for_selector(f"{count(lobby)} >> text=1", timeout=WAIT_MS)
        await ann.wait_for_selector("#log li.presence >> text=bob left", timeout=WAIT_MS)
        assert await ann.inner_text("#present-count") == "1"

        # Switching rooms from the list.
        await ann.click(f"#rooms button[data-room='{side}']")
        await ann.wait_for_selector("#room-title >> text=Side", timeout=WAIT_MS)
        await ann.wait_for_selector("#status >> text=joined as ann", timeout=WAIT_MS)
        await ann.wait_for_selector("#members li >> text=carol", timeout=WAIT_MS)
        await carol.wait_for_selector(f"{count(side)} >> text=2", timeout=WAIT_MS)
        await carol.wait_for_selector(f"{count(lobby)} >> text=0", timeout=WAIT_MS)
        for page, seen in ((carol, carol_seen), (ann, ann_seen)):
            await assert_fits(page)
            seen.assert_clean()
        bob_seen.assert_clean()
    finally:
        for page in (carol, ann, bob):
            await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_creating_a_room_asks_for_sign_in_then_creates_it(browser, mesh, base, width):
    user = await make_user(mesh)
    page, seen = await new_page(browser, width)
    title = f"Book club {uuid.uuid4().hex[:4]}"
    try:
        await page.goto(f"{base}/")
        await page.wait_for_selector("#rooms button[data-room=general]", timeout=WAIT_MS)
        await page.fill("#title", title)
        await page.click("#create button")
        reason = page.locator("#signin-reason")
        await reason.wait_for(timeout=WAIT_MS)
        assert "Creating a room needs an account" in await reason.inner_text()
        assert "Bearer" not in await page.inner_text("body")
        await page.fill("dialog input[name=user_name]", user["name"])
        await page.fill("dialog input[name=password]", PASSWORD)
        await page.click("#signin-submit")
        await page.wait_for_selector(f"#room-title >> text={title}", timeout=WAIT_MS)
        await page.wait_for_selector(f"#rooms button[aria-current=true] >> text={title}", timeout=WAIT_MS)
        # Signed in, the account's name is the chat name: joined without typing one.
        await page.wait_for_selector(f"#status >> text=joined as {user['name']}", timeout=WAIT_MS)
        assert await page.get_attribute("#name", "readonly") is not None
        await page.click("#rooms button[data-room=general]")
        await page.wait_for_selector("#room-title >> text=General", timeout=WAIT_MS)
        await assert_fits(page)
        seen.assert_clean()
    finally:
        await page.context.close()


async def test_attach_a_file_sits_beside_its_input_on_a_desktop(browser, base):
    page, seen = await new_page(browser, DESKTOP)
    try:
        await page.goto(f"{base}/")
        await page.wait_for_selector("#rooms button[data-room=general]", timeout=WAIT_MS)
        label = await page.locator(".attach span").bounding_box()
        field = await page.locator("#file").bounding_box()
        text = await page.locator("#text").bounding_box()
        middle = lambda box: box["y"] + box["height"] / 2  # noqa: E731
        assert abs(middle(label) - middle(field)) <= 4, (label, field)
        assert label["x"] + label["width"] <= field["x"]          # the label, then its input
        assert abs(middle(text) - middle(field)) <= 6, (text, field)   # one row with the message box
        seen.assert_clean()
    finally:
        await page.context.close()
