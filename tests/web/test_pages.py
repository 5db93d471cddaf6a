"""Every page, at phone and desktop width: one header with the same navigation, the signed-in user
with sign in / sign out, no sideways scroll, labelled controls, a favicon, no console errors and no
failed requests. Writes a screenshot of each page at each width."""

from __future__ import annotations

import pytest

from tests.browser import PHONE, WAIT_MS, WIDTHS, assert_fits, new_page, shot
from tests.web.conftest import make_user, signed_in_context

PAGES = {"chat": "/", "polls": "/polls/", "auctions": "/auctions/", "orders": "/orders/", "docs": "/docs/"}
NAV = ["Chat", "Polls", "Auctions", "Orders", "API docs"]

# Every visible form control has a name a screen reader reads out: a <label>, or aria-label(ledby).
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
    .filter(c => c.type !== 'hidden' && c.offsetParent !== null && !c.closest('#swagger-ui'))
    .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && \
!c.getAttribute('aria-labelledby'))
    .map(c => c.outerHTML.slice(0, 120))"""


async def ready(page, name: str) -> None:
    await page.wait_for_selector(".site-header nav a", timeout=WAIT_MS)
    await page.wait_for_selector(".site-header .account button", timeout=WAIT_MS)
    if name == "docs":
        await page.wait_for_selector(".opblock", timeout=20_000)
    elif name == "chat":
        await page.wait_for_selector("#rooms button[data-room=general]", timeout=WAIT_MS)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(PAGES))
async def test_every_page_has_the_shared_header_and_fits(browser, base, name, width):
    page, seen = await new_page(browser, width)
    try:
        await page.goto(base + PAGES[name])
        await ready(page, name)
        links = page.locator(".site-header nav a")
        assert await links.all_inner_texts() == NAV
        current = page.locator(".site-header nav a[aria-current=page]")
        assert await current.count() == 1
        assert await current.get_attribute("href") == PAGES[name]
        assert await page.locator("#sign-in").inner_text() == "Sign in"
        # The navigation is one row at both widths (on a phone, below the brand and the account).
        tops = await links.evaluate_all("links => links.map(a => Math.round(a.getBoundingClientRect().top))")
        assert len(set(tops)) == 1, tops
        icon = await page.eval_on_selector("link[rel=icon]", "l => l.href")
        assert (await page.request.get(icon)).ok and (await page.request.get(f"{base}/favicon.ico")).ok
        assert await page.evaluate(UNLABELLED) == []
        await assert_fits(page)
        await shot(page, name, full_page=name != "docs")  # the API docs are 30,000 px long
        seen.assert_clean()
    finally:
        await page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
async def test_signed_in_header_stays_on_one_line(browser, mesh, base, width):
    user = await make_user(mesh, prefix="longername_")
    context = await signed_in_context(browser, base, user, width)
    page, seen = await new_page(browser, width, context=context)
    try:
        for name, path in PAGES.items():
            await page.goto(base + path)
            await page.wait_for_selector("#sign-out", timeout=WAIT_MS)
            who = page.locator(".site-header .who")
            assert await who.get_attribute("title") == f"Signed in as {user['name']}"
            assert user["name"].startswith(await who.inner_text() or "-") \
                or (await who.inner_text()) == user["name"]
            # Brand, user and "Sign out" share one row; nothing in the account area wraps.
            rows = await page.evaluate("""() => ['.brand', '.who', '#sign-out'].map(s => {
                const r = document.querySelector('.site-header ' + s).getBoundingClientRect();
                return [Math.round(r.top + r.height / 2), Math.round(r.height)]; })""")
            middles = [m for m, _ in rows]
            assert max(middles) - min(middles) <= 4, rows
            assert rows[1][1] <= 30 and rows[2][1] <= 36, rows   # one line of text each
            header = await page.eval_on_selector(".site-header", "h => h.getBoundingClientRect().height")
            assert header <= (100 if width == PHONE else 60), header
            await assert_fits(page)
            if name != "docs":
                await shot(page, f"{name}-signed-in")
        seen.assert_clean()
    finally:
        await context.close()


async def test_the_navigation_works_from_the_keyboard(browser, base):
    page, seen = await new_page(browser, PHONE)
    try:
        await page.goto(base + "/polls/")
        await ready(page, "polls")
        await page.keyboard.press("Tab")   # the brand
        await page.keyboard.press("Tab")   # the first link
        assert await page.evaluate("document.activeElement.textContent") == "Chat"
        for _ in range(3):
            await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Orders"
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/orders/", timeout=WAIT_MS)
        await page.wait_for_selector("#orders-sign-in", timeout=WAIT_MS)
        seen.assert_clean()
    finally:
        await page.context.close()
