"""Sign-up, login and logout in the browser, through the header's dialog: the session cookie and the
CSRF token, no gRPC hints; a reload keeps the person signed in; the dialog works from the keyboard."""

from __future__ import annotations

import uuid

import pytest

from tests.browser import WAIT_MS, WIDTHS, assert_fits, new_page, shot
from tests.web.conftest import PASSWORD, make_user


@pytest.mark.parametrize("width", WIDTHS)
async def test_sign_up_reload_sign_out_and_log_in_again(browser, base, width):
    name = f"new{uuid.uuid4().hex[:8]}"
    page, seen = await new_page(browser, width)
    try:
        await page.goto(f"{base}/polls/")
        await page.click("#sign-in")
        dialog = page.locator("dialog.signin")
        await dialog.wait_for(timeout=WAIT_MS)
        await page.click("#tab-signup")
        await page.fill("dialog input[name=user_name]", name)
        await page.fill("dialog input[name=email]", f"{name}@example.com")
        await page.fill("dialog input[name=password]", PASSWORD)
        await assert_fits(page)
        await shot(page, "signin-dialog")
        await page.click("#signin-submit")
        await page.wait_for_selector(f".site-header .who >> text={name}", timeout=WAIT_MS)
        assert not await dialog.is_visible()
        await page.reload()
        await page.wait_for_selector(f".site-header .who >> text={name}", timeout=WAIT_MS)
        await page.click("#sign-out")
        await page.wait_for_selector("#sign-in", timeout=WAIT_MS)
        await page.reload()
        await page.wait_for_selector("#sign-in", timeout=WAIT_MS)   # signed out for good
        await page.click("#sign-in")
        await page.fill("dialog input[name=user_name]", name)
        await page.fill("dialog input[name=password]", PASSWORD)
        await page.click("#signin-submit")
        await page.wait_for_selector(f".site-header .who >> text={name}", timeout=WAIT_MS)
        seen.assert_clean()
    finally:
        await page.context.close()


async def test_a_wrong_password_says_so_in_words(browser, mesh, base):
    user = await make_user(mesh)
    page, seen = await new_page(browser, 390, allowed=("/v1/auth/login",))
    try:
        await page.goto(f"{base}/auctions/")
        await page.click("#sign-in")
        await page.fill("dialog input[name=user_name]", user["name"])
        await page.fill("dialog input[name=password]", "not the password")
        await page.click("#signin-submit")
        error = page.locator("#signin-error")
        await error.wait_for(timeout=WAIT_MS)
        assert await error.inner_text() == "That user name and password do not match."
        assert "Bearer" not in await page.inner_text("dialog")
        seen.assert_clean()
    finally:
        await page.context.close()


async def test_the_dialog_is_usable_from_the_keyboard(browser, mesh, base):
    user = await make_user(mesh)
    page, seen = await new_page(browser, 1280)
    try:
        await page.goto(f"{base}/orders/")
        await page.focus("#sign-in")
        await page.keyboard.press("Enter")
        # Focus lands in the user name field; Tab walks to the password; Enter submits.
        assert await page.evaluate("document.activeElement.name") == "user_name"
        await page.keyboard.type(user["name"])
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.name") == "password"
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await page.wait_for_selector(f".site-header .who >> text={user['name']}", timeout=WAIT_MS)
        await page.click("#sign-out")
        await page.wait_for_selector("#sign-in", timeout=WAIT_MS)
        await page.focus("#sign-in")
        await page.keyboard.press("Enter")
        assert await page.locator("dialog.signin").is_visible()
        await page.keyboard.press("Escape")
        assert not await page.locator("dialog.signin").is_visible()
        seen.assert_clean()
    finally:
        await page.context.close()
