"""The poll board at phone and desktop width: create a poll, vote, and watch bars that keep their
labels and proportions; an unknown poll says so and shows nothing else; a signed-in creator closes
their poll early."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.browser import PHONE, WAIT_MS, WIDTHS, assert_fits, new_page, shot
from tests.web.conftest import make_user, signed_in_context

BARS = """() => [...document.querySelectorAll('#bars li')].map(li => ({
    label: li.querySelector('.label').textContent,
    labelWidth: li.querySelector('.label').getBoundingClientRect().width,
    track: li.querySelector('.track').getBoundingClientRect().width,
    fill: li.querySelector('.fill').getBoundingClientRect().width,
    count: li.querySelector('.count').textContent }))"""


@pytest.mark.parametrize("width", WIDTHS)
async def test_create_vote_and_the_bars_keep_labels_and_proportions(browser, base, width):
    question = f"Which room first? {uuid.uuid4().hex[:4]}"
    page, seen = await new_page(browser, width)
    try:
        await page.goto(f"{base}/polls/")
        await page.fill("input[name=question]", question)
        await page.fill("textarea[name=options]",
                        "Kitchen\nA much longer option label that has to wrap somewhere\nGarden")
        await page.select_option("select[name=policy]", "VOTE_POLICY_UNRESTRICTED")
        await page.click("#create-form button[type=submit]")
        await page.wait_for_selector(f"#question >> text={question}", timeout=WAIT_MS)
        await page.wait_for_selector("#mode >> text=live", timeout=WAIT_MS)
        await page.wait_for_selector(f"#polls a >> text={question}", timeout=WAIT_MS)
        poll_id = page.url.rsplit("#", 1)[1]
        async with httpx.AsyncClient(base_url=base, timeout=20.0) as http:   # someone else votes
            for option in (0, 0, 0, 1):
                r = await http.post(f"/v1/polls/{poll_id}/votes", json={"option": option})
                assert r.status_code == 200, r.text
        await page.click("#bars li[data-index='2'] button")   # and this page votes too: 3, 1, 1
        await page.wait_for_selector("#total >> text=5", timeout=WAIT_MS)
        await page.wait_for_function(
            "document.querySelector(\"#bars li[data-index='0'] .fill\").getBoundingClientRect().width > 0"
            " && !document.querySelector('#bars .fill').getAnimations().length", timeout=WAIT_MS)
        bars = await page.evaluate(BARS)
        assert [b["label"] for b in bars] == ["Kitchen",
                                              "A much longer option label that has to wrap somewhere",
                                              "Garden"]
        assert [b["count"] for b in bars] == ["3", "1", "1"]
        for bar in bars:
            assert bar["labelWidth"] > 40, bar       # the label is readable, not squeezed away
            assert bar["track"] > (150 if width == PHONE else 250), bar
            assert abs(bar["fill"] / bar["track"] - int(bar["count"]) / 5) < 0.03, bar  # its share of votes
        assert await page.inner_text("#bars li[data-index='0'] .pct") == "60%"
        await assert_fits(page)
        await shot(page, "polls-voting")
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_an_unknown_poll_replaces_the_board_with_a_clear_message(browser, base, width):
    async with httpx.AsyncClient(base_url=base, timeout=20.0) as http:
        poll = (await http.post("/v1/polls", json={"question": "Known poll?",
                                                   "options": ["yes", "no"]})).json()["poll"]
    missing = f"nope-{uuid.uuid4().hex[:6]}"
    page, seen = await new_page(browser, width, allowed=(f"/v1/polls/{missing}",))
    try:
        await page.goto(f"{base}/polls/#{poll['id']}")
        await page.wait_for_selector("#question >> text=Known poll?", timeout=WAIT_MS)
        await page.evaluate(f"location.hash = '{missing}'")
        await page.wait_for_selector("#missing", state="visible", timeout=WAIT_MS)
        assert await page.inner_text("#missing") == f"There is no poll with the id “{missing}”."
        visible = await page.inner_text("#board")
        for gone in ("Known poll?", "votes", "connecting", "Vote"):
            assert gone not in visible, visible
        await assert_fits(page)
        await shot(page, "polls-unknown")
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_owning_a_poll_asks_for_sign_in_and_the_creator_closes_it(browser, mesh, base, width):
    user = await make_user(mesh)
    page, seen = await new_page(browser, width)
    try:
        await page.goto(f"{base}/polls/")
        await page.fill("input[name=question]", "Close me early?")
        await page.fill("textarea[name=options]", "yes\nno")
        await page.check("#owned")
        await page.click("#create-form button[type=submit]")
        reason = page.locator("#signin-reason")
        await reason.wait_for(timeout=WAIT_MS)
        assert "creator may close it early" in await reason.inner_text()
        await page.fill("dialog input[name=user_name]", user["name"])
        await page.fill("dialog input[name=password]", user["password"])
        await page.click("#signin-submit")
        await page.wait_for_selector("#question >> text=Close me early?", timeout=WAIT_MS)
        await page.click("#close-poll")
        await page.wait_for_selector("#status >> text=closed · final results", timeout=WAIT_MS)
        assert await page.is_disabled("#bars li[data-index='0'] button")
        assert await page.inner_text("#mode") == "final"
        seen.assert_clean()
    finally:
        await page.context.close()
    # Someone else sees no close button on it.
    other = await make_user(mesh)
    context = await signed_in_context(browser, base, other, width)
    async with httpx.AsyncClient(base_url=base, timeout=20.0) as http:
        poll = (await http.post("/v1/polls", json={"question": "Not yours",
                                                   "options": ["a", "b"]})).json()["poll"]
    page, seen = await new_page(browser, width, context=context)
    try:
        await page.goto(f"{base}/polls/#{poll['id']}")
        await page.wait_for_selector("#sign-out", timeout=WAIT_MS)
        await page.wait_for_selector("#mode >> text=live", timeout=WAIT_MS)
        assert await page.is_hidden("#close-poll")
        seen.assert_clean()
    finally:
        await context.close()
