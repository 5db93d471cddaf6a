"""Headless Chromium: two people on the auction page bid against each other and each sees the
other's bid arrive without a reload (embedded backends, an in-process mesh)."""

from __future__ import annotations

import pytest

from tests.browser import WAIT_MS, watch
from tests.logcheck import no_error_logged  # noqa: F401 - the fixture
from tests.services.identity.harness import create_auction, sign_up_and_login, start_mesh, stop_mesh

pytestmark = pytest.mark.usefixtures("no_error_logged")


@pytest.fixture(scope="module")
async def embedded_mesh(tmp_path_factory):
    mesh = await start_mesh("embedded", tmp_path_factory.mktemp("browser"))
    try:
        yield mesh
    finally:
        await stop_mesh(mesh)


async def test_two_pages_bid_against_each_other(browser, embedded_mesh):
    from playwright.async_api import expect

    mesh = embedded_mesh
    async with mesh.channel("identity") as ich, mesh.channel() as ach:
        _, _, seller = await sign_up_and_login(ich)
        _, alice, _ = await sign_up_and_login(ich)
        _, bob, _ = await sign_up_and_login(ich)
        auction = await create_auction(ach, seller, seconds=120)

    pages, seen, contexts = {}, [], []
    try:
        for name in (alice, bob):
            context = await browser.new_context()  # separate cookie jars: two people
            contexts.append(context)
            page = await context.new_page()
            seen.append(watch(page))
            await page.goto(f"{mesh.http_url}/auctions/?auction={auction.id}")
            await page.click("#sign-in")
            await page.fill("dialog input[name=user_name]", name)
            await page.fill("dialog input[name=password]", "correct horse battery")
            await page.click("#signin-submit")
            await expect(page.locator(".site-header .who")).to_have_text(name, timeout=WAIT_MS)
            await expect(page.locator("#title")).to_contain_text("lamp", timeout=WAIT_MS)
            pages[name] = page

        async def bid(name: str, amount: str) -> None:
            await pages[name].fill("#bid input[name=amount]", amount)
            await pages[name].click("#bid button[type=submit]")

        await bid(alice, "1.00")
        await expect(pages[bob].locator("#bids li")).to_have_count(1, timeout=WAIT_MS)
        await expect(pages[bob].locator("#bids li").first).to_contain_text(f"{alice}1.00 USD")
        await bid(bob, "1.50")
        await expect(pages[alice].locator("#bids li")).to_have_count(2, timeout=WAIT_MS)
        await expect(pages[alice].locator("#bids li").first).to_contain_text(f"{bob}1.50 USD")
        await expect(pages[alice].locator("#price")).to_have_text("1.50 USD")
        await bid(alice, "1.55")  # below the minimum next bid (1.60): refused, to alice only
        await expect(pages[alice].locator("#notice")).to_contain_text("refused", timeout=WAIT_MS)
        await expect(pages[bob].locator("#bids li")).to_have_count(2)
        for s in seen:
            s.assert_clean()
    finally:
        for context in contexts:
            await context.close()
