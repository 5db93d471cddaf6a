"""The auctions page at phone and desktop width: the open auctions with live prices, an auction's bid
history that survives a reload (replayed from sequence 0, then live), bidding and selling after a
sign-in prompt, labelled duration and increment, and clear states for ended and unknown auctions."""

from __future__ import annotations

import uuid

import pytest

from tests.browser import DESKTOP, WAIT_MS, WIDTHS, assert_fits, new_page, shot
from tests.web.conftest import create_auction, make_user, place_bid, signed_in_context

CLOSE_WAIT_MS = 20_000   # the auctions below end 6 s after the module starts (the mesh's minimum is 5 s)


@pytest.fixture(scope="module")
async def people(mesh, base):
    return {name: await make_user(mesh, prefix=name) for name in ("seller", "alice", "bob")}


@pytest.fixture(scope="module", autouse=True)
async def ending(base, people):
    """Two auctions that end while this module runs: one sold to bob, one without bids."""
    sold = await create_auction(base, people["seller"], f"Clock {uuid.uuid4().hex[:4]}", seconds=6)
    await place_bid(base, people["bob"], sold["id"], 1200)
    unsold = await create_auction(base, people["seller"], f"Vase {uuid.uuid4().hex[:4]}", seconds=6)
    return {"sold": sold, "unsold": unsold}


def rows(page):
    return page.eval_on_selector_all("#bids li", "l => l.map(li => li.textContent)")


async def test_an_open_page_sees_the_auction_end_and_its_result(browser, base, people, ending):
    page, seen = await new_page(browser, DESKTOP)
    try:
        await page.goto(f"{base}/auctions/?auction={ending['sold']['id']}")
        await page.wait_for_selector(f"#title >> text={ending['sold']['productName']}", timeout=WAIT_MS)
        result = page.locator("#result")
        await result.wait_for(timeout=CLOSE_WAIT_MS)
        assert await result.inner_text() == f"Sold to {people['bob']['name']} for 12.00 USD."
        assert await page.inner_text("#state") == "ended"
        assert await page.is_hidden("#bid")
        await page.wait_for_selector(f"#ended-list >> text={ending['sold']['productName']}", timeout=WAIT_MS)
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_ended_auctions_say_how_they_ended(browser, base, people, ending, width):
    page, seen = await new_page(browser, width)
    try:
        await page.goto(f"{base}/auctions/?auction={ending['sold']['id']}")
        await page.wait_for_selector(f"#result >> text=Sold to {people['bob']['name']} for 12.00 USD.",
                                     timeout=CLOSE_WAIT_MS)
        assert await page.is_hidden("#bid")
        assert await rows(page) == [f"#1{people['bob']['name']}12.00 USD"]
        assert await page.inner_text("#ends-label") == "Ended"
        await page.wait_for_selector("#ended-list li >> text=sold 12.00 USD", timeout=WAIT_MS)
        await assert_fits(page)
        await shot(page, "auctions-sold")
        await page.click(f"#ended-list a[data-auction='{ending['unsold']['id']}']")
        await page.wait_for_selector("#result >> text=Ended without bids: nothing was sold.",
                                     timeout=CLOSE_WAIT_MS)
        assert await page.inner_text("#title") == ending["unsold"]["productName"]
        assert await rows(page) == []
        assert await page.is_hidden("#bid")
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_list_shows_open_auctions_with_live_prices(browser, base, people, width):
    auction = await create_auction(base, people["seller"], f"Lamp {uuid.uuid4().hex[:4]}")
    page, seen = await new_page(browser, width)
    try:
        await page.goto(f"{base}/auctions/")
        price = page.locator(f"#open-list a[data-auction='{auction['id']}'] .price")
        await price.wait_for(timeout=WAIT_MS)
        await page.wait_for_function(
            f"document.querySelector(\"#open-list a[data-auction='{auction['id']}'] .price\").textContent "
            f"=== '10.00 USD'",
            timeout=WAIT_MS)
        await place_bid(base, people["bob"], auction["id"], 1500)
        await page.wait_for_function(
            f"document.querySelector(\"#open-list a[data-auction='{auction['id']}'] .price\").textContent "
            f"=== '15.00 USD'",
            timeout=WAIT_MS)
        await page.click(f"#open-list a[data-auction='{auction['id']}']")
        await page.wait_for_selector(f"#title >> text={auction['productName']}", timeout=WAIT_MS)
        assert await page.inner_text("#price") == "15.00 USD"
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_bid_history_survives_a_reload_and_new_bids_arrive_live(browser, base, people, width):
    auction = await create_auction(base, people["seller"], f"Chair {uuid.uuid4().hex[:4]}")
    await place_bid(base, people["bob"], auction["id"], 1000)
    await place_bid(base, people["bob"], auction["id"], 1100)
    alice, bob = people["alice"]["name"], people["bob"]["name"]
    context = await signed_in_context(browser, base, people["alice"], width)
    page, seen = await new_page(browser, width, context=context)
    try:
        await page.goto(f"{base}/auctions/?auction={auction['id']}")
        await page.wait_for_selector("#sign-out", timeout=WAIT_MS)
        await page.wait_for_selector("#bids li[data-sequence='2']", timeout=WAIT_MS)
        await page.fill("#bid input[name=amount]", "14.00")
        await page.click("#bid button[type=submit]")
        await page.wait_for_selector("#bids li[data-sequence='3']", timeout=WAIT_MS)
        history = [f"#3{alice} (you)14.00 USD", f"#2{bob}11.00 USD", f"#1{bob}10.00 USD"]
        assert await rows(page) == history
        await page.fill("#bid input[name=amount]", "14.50")   # below the minimum next bid (15.00)
        await page.click("#bid button[type=submit]")
        await page.wait_for_selector("#notice >> text=Bid refused", timeout=WAIT_MS)

        await page.reload()
        await page.wait_for_selector("#bids li[data-sequence='3']", timeout=WAIT_MS)
        assert await rows(page) == history                    # the whole history, once each
        assert await page.inner_text("#price") == "14.00 USD"
        assert await page.inner_text("#minimum") == "15.00 USD"
        await place_bid(base, people["bob"], auction["id"], 1600)
        await page.wait_for_selector("#bids li[data-sequence='4']", timeout=WAIT_MS)
        assert await rows(page) == [f"#4{bob}16.00 USD", *history]
        assert await page.inner_text("#price") == "16.00 USD"
        await assert_fits(page)
        await shot(page, "auctions-bidding")
        seen.assert_clean()
    finally:
        await context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_bidding_asks_for_sign_in_then_places_the_bid(browser, mesh, base, people, width):
    auction = await create_auction(base, people["seller"], f"Rug {uuid.uuid4().hex[:4]}")
    bidder = await make_user(mesh)
    page, seen = await new_page(browser, width)
    try:
        await page.goto(f"{base}/auctions/?auction={auction['id']}")
        await page.wait_for_selector(f"#title >> text={auction['productName']}", timeout=WAIT_MS)
        await page.fill("#bid input[name=amount]", "10.00")
        await page.click("#bid button[type=submit]")
        reason = page.locator("#signin-reason")
        await reason.wait_for(timeout=WAIT_MS)
        assert await reason.inner_text() == "Bidding needs an account. Log in or create one."
        await page.fill("dialog input[name=user_name]", bidder["name"])
        await page.fill("dialog input[name=password]", bidder["password"])
        await page.click("#signin-submit")
        await page.wait_for_selector("#bids li[data-sequence='1']", timeout=WAIT_MS)
        assert await rows(page) == [f"#1{bidder['name']} (you)10.00 USD"]
        assert "Bearer" not in await page.inner_text("body")
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_selling_uses_labelled_duration_and_increment(browser, mesh, base, width):
    seller = await make_user(mesh)
    page, seen = await new_page(browser, width)
    item = f"Bicycle {uuid.uuid4().hex[:4]}"
    try:
        await page.goto(f"{base}/auctions/")
        await page.get_by_label("Item").fill(item)
        await page.get_by_label("Starting price (USD)").fill("40.00")
        await page.get_by_label("Minimum raise (USD)").fill("2.50")
        await page.get_by_label("Duration (minutes)").fill("30")
        await page.click("#create button[type=submit]")
        await page.locator("#signin-reason").wait_for(timeout=WAIT_MS)   # selling needs an account
        await page.fill("dialog input[name=user_name]", seller["name"])
        await page.fill("dialog input[name=password]", seller["password"])
        await page.click("#signin-submit")
        await page.wait_for_selector(f"#title >> text={item}", timeout=WAIT_MS)
        assert await page.inner_text("#price") == "40.00 USD"
        assert await page.inner_text("#minimum") == "40.00 USD"
        assert (await page.inner_text("#ends")).startswith("in 29m") \
            or (await page.inner_text("#ends")).startswith("in 30m")
        await page.wait_for_selector("#notice >> text=This is your auction", timeout=WAIT_MS)
        await page.wait_for_selector(f"#open-list >> text={item}", timeout=WAIT_MS)
        await assert_fits(page)
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_an_unknown_auction_replaces_the_one_shown(browser, base, people, width):
    auction = await create_auction(base, people["seller"], f"Desk {uuid.uuid4().hex[:4]}")
    missing = str(uuid.uuid4())
    page, seen = await new_page(browser, width, allowed=(f"/v1/auctions/{missing}",))
    try:
        await page.goto(f"{base}/auctions/?auction={auction['id']}")
        await page.wait_for_selector(f"#title >> text={auction['productName']}", timeout=WAIT_MS)
        # The browser's back/forward way of changing the URL: no reload.
        await page.evaluate(f"history.pushState(null, '', '?auction={missing}'); dispatchEvent(new "
                            f"PopStateEvent('popstate'))")
        await page.wait_for_selector("#unknown", state="visible", timeout=WAIT_MS)
        assert missing in await page.inner_text("#unknown")
        view = await page.inner_text("#view")
        for gone in (auction["productName"], "Current price", "Place bid", "Connection closed"):
            assert gone not in view, view
        await assert_fits(page)
        await shot(page, "auctions-unknown")
        await page.goto(f"{base}/auctions/?auction={missing}")   # straight to it, too
        await page.wait_for_selector("#unknown", state="visible", timeout=WAIT_MS)
        assert await page.is_hidden("#live")
        seen.assert_clean()
    finally:
        await page.context.close()
