"""Headless Chromium: two people on the auction page bid against each other and each sees the
other's bid arrive without a reload (embedded backends)."""

from __future__ import annotations

import pytest

from tests.logcheck import no_error_logged  # noqa: F401 - the fixture
from tests.realservers import require_chromium
from tests.services.identity.harness import create_auction, sign_up_and_login, start_mesh, stop_mesh

pytestmark = pytest.mark.usefixtures("no_error_logged")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 15_000


@pytest.fixture(scope="module")
async def embedded_mesh(tmp_path_factory):
    mesh = await start_mesh("embedded", tmp_path_factory.mktemp("browser"))
    try:
        yield mesh
    finally:
        await stop_mesh(mesh)


async def test_two_pages_bid_against_each_other(embedded_mesh):
    require_chromium()
    from playwright.async_api import async_playwright, expect

    mesh = embedded_mesh
    async with mesh.channel("identity") as ich, mesh.channel() as ach:
        _, _, seller = await sign_up_and_login(ich)
        _, alice, _ = await sign_up_and_login(ich)
        _, bob, _ = await sign_up_and_login(ich)
        auction = await create_auction(ach, seller, seconds=120)

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pages = {}
            for name in (alice, bob):
                context = await browser.new_context()  # separate cookie jars: two people
                page = await context.new_page()
                await page.goto(f"{mesh.http_url}/auctions/?auction={auction.id}")
                await page.fill("#login input[name=user_name]", name)
                await page.fill("#login input[name=password]", "correct horse battery")
                await page.click("#login button[type=submit]")
                await expect(page.locator("#who")).to_contain_text(name, timeout=WAIT_MS)
                await expect(page.locator("#title")).to_contain_text("lamp", timeout=WAIT_MS)
                pages[name] = page

            async def bid(name: str, amount: str) -> None:
                await pages[name].fill("#bid input[name=amount]", amount)
                await pages[name].click("#bid button[type=submit]")

            await bid(alice, "1.00")
            await expect(pages[bob].locator("#bids li")).to_have_count(1, timeout=WAIT_MS)
            await expect(pages[bob].locator("#bids li").first).to_contain_text(f"{alice}: 1.00 USD")
            await bid(bob, "1.50")
            await expect(pages[alice].locator("#bids li")).to_have_count(2, timeout=WAIT_MS)
            await expect(pages[alice].locator("#bids li").first).to_contain_text(f"{bob}: 1.50 USD")
            await expect(pages[alice].locator("#price")).to_have_text("1.50 USD")
            await bid(alice, "1.55")  # below the minimum next bid (1.60): refused, to alice only
            await expect(pages[alice].locator("#notice")).to_contain_text("refused", timeout=WAIT_MS)
            await expect(pages[bob].locator("#bids li")).to_have_count(2)
        finally:
            await browser.close()
