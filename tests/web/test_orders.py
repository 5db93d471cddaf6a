"""The orders page (seed 002's flow) at phone and desktop width: signed out it asks for a sign-in;
signed in, a person saves a customer profile, adds a product, places orders and watches each move from
placed to paid or payment failed live, with the notifications sent about it; nobody else sees them."""

from __future__ import annotations

import uuid

import pytest

from tests.browser import WAIT_MS, WIDTHS, assert_fits, new_page, shot
from tests.web.conftest import make_user, signed_in_context

LIVE_MS = 30_000   # payment and notification go through the bus and the payment provider


@pytest.mark.parametrize("width", WIDTHS)
async def test_signed_out_the_page_asks_for_a_sign_in(browser, mesh, base, width):
    user = await make_user(mesh)
    page, seen = await new_page(browser, width)
    try:
        await page.goto(f"{base}/orders/")
        await page.wait_for_selector("#signed-out", timeout=WAIT_MS)
        assert "sign in to see yours" in (await page.inner_text("#signed-out")).lower()
        assert await page.is_hidden("#signed-in")
        await page.click("#orders-sign-in")
        await page.fill("dialog input[name=user_name]", user["name"])
        await page.fill("dialog input[name=password]", user["password"])
        await page.click("#signin-submit")
        await page.wait_for_selector("#client-form", timeout=WAIT_MS)
        assert await page.input_value("#client-form input[name=email]") == f"{user['name']}@example.com"
        await page.wait_for_selector("#orders >> text=No orders yet", timeout=WAIT_MS)
        seen.assert_clean()
    finally:
        await page.context.close()


async def order_with(page, card: str) -> str:
    before = await page.locator("#orders li.order").count()
    await page.select_option("#order-form select[name=card]", card)
    await page.click("#place")
    await page.wait_for_function(f"document.querySelectorAll('#orders li.order').length === {before + 1}",
                                 timeout=WAIT_MS)
    return await page.locator("#orders li.order").first.get_attribute("data-order")


@pytest.mark.parametrize("width", WIDTHS)
async def test_orders_move_from_placed_to_paid_or_failed_live_with_their_notifications(
        browser, mesh, base, width):
    user = await make_user(mesh)
    context = await signed_in_context(browser, base, user, width)
    page, seen = await new_page(browser, width, context=context)
    product = f"Teapot {uuid.uuid4().hex[:4]}"
    try:
        await page.goto(f"{base}/orders/")
        await page.wait_for_selector("#client-form", timeout=WAIT_MS)
        await page.fill("#client-form input[name=name]", "Ana Souza")
        await page.click("#client-form button[type=submit]")
        await page.wait_for_selector("#client-summary >> text=Ana Souza", timeout=WAIT_MS)
        await page.fill("#product-form input[name=name]", product)
        await page.fill("#product-form input[name=price]", "12.50")
        await page.fill("#product-form input[name=stock]", "5")
        await page.click("#product-form button[type=submit]")
        await page.wait_for_function(
            f"document.querySelector('#product').selectedOptions[0].textContent.startsWith('{product} · "
            f"12.50 USD')",
            timeout=WAIT_MS)
        await page.wait_for_selector("#live >> text=live", timeout=WAIT_MS)

        await page.fill("#order-form input[name=quantity]", "2")
        paid = await order_with(page, "tok_ok")
        card = page.locator(f"li.order[data-order='{paid}']")
        assert f"2 × {product}" in await card.inner_text()
        assert "Total 25.00 USD" in await card.inner_text()
        await page.wait_for_selector(f"li.order[data-order='{paid}'][data-status=ORDER_STATUS_PAID]",
                                     timeout=LIVE_MS)
        timeline = await card.locator(".timeline li .badge").all_inner_texts()
        assert timeline == ["placed", "paid"], timeline
        await card.locator(".mails li").first.wait_for(timeout=LIVE_MS)
        mails = await card.locator(".mails").inner_text()
        assert f"{user['name']}@example.com" in mails, mails

        await page.fill("#order-form input[name=quantity]", "1")
        failed = await order_with(page, "tok_decline")
        await page.wait_for_selector(
            f"li.order[data-order='{failed}'][data-status=ORDER_STATUS_PAYMENT_FAILED]", timeout=LIVE_MS)
        card = page.locator(f"li.order[data-order='{failed}']")
        assert "payment failed" in await card.locator(".top .badge").inner_text()
        await card.locator(".mails li").first.wait_for(timeout=LIVE_MS)
        await assert_fits(page)
        await shot(page, "orders-live")

        # After a reload the orders, their history and their notifications are all still there.
        await page.reload()
        await page.wait_for_selector(f"li.order[data-order='{paid}'][data-status=ORDER_STATUS_PAID]",
                                     timeout=WAIT_MS)
        await page.wait_for_selector(f"li.order[data-order='{failed}'] .mails li", timeout=WAIT_MS)
        seen.assert_clean()
    finally:
        await context.close()

    # Someone else sees none of it.
    other = await make_user(mesh)
    context = await signed_in_context(browser, base, other, width)
    page, seen = await new_page(browser, width, context=context)
    try:
        await page.goto(f"{base}/orders/")
        await page.wait_for_selector("#orders >> text=No orders yet", timeout=WAIT_MS)
        assert await page.locator("#orders li.order").count() == 0
        assert await page.is_visible("#client-form")
        seen.assert_clean()
    finally:
        await context.close()
