"""The chat page in headless Chromium: two pages talk, presence updates, HTML stays text."""

from __future__ import annotations

import pytest

from services.kit.config import Settings
from tests.browser import WAIT_MS as TIMEOUT_MS
from tests.browser import watch
from tests.logcheck import no_error_logged  # noqa: F401 - the fixture
from tests.services.chat.support import bridge, chat_server

# No ERROR in normal use, the sockets' teardown included (issue 18, finding 6, in RELIABILITY.md).
pytestmark = pytest.mark.usefixtures("no_error_logged")


async def join(page, base: str, name: str) -> None:
    await page.goto(f"http://{base}/")
    await page.fill("#name", name)
    await page.wait_for_selector("#rooms button[data-room=general]", timeout=TIMEOUT_MS)
    await page.click("#join-button")
    await page.wait_for_function("!document.querySelector('#text').disabled", timeout=TIMEOUT_MS)


async def test_two_pages_talk_and_see_each_other(browser, tmp_path):
    async with chat_server(Settings(data_dir=tmp_path)) as server, bridge(server.address) as base:
        contexts = [await browser.new_context() for _ in range(3)]
        try:
            ann = await contexts[0].new_page()
            bob = await contexts[1].new_page()
            seen = watch(ann)
            await join(ann, base, "ann")
            await join(bob, base, "bob")
            await ann.wait_for_function(
                "[...document.querySelectorAll('#members li')].some(li => li.textContent === 'bob')",
                timeout=TIMEOUT_MS)
            await ann.fill("#text", "hello bob")
            await ann.click("#send")
            await bob.wait_for_selector("#log li.message >> text=hello bob", timeout=TIMEOUT_MS)
            nasty = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold</b>'
            await bob.fill("#text", nasty)
            await bob.press("#text", "Enter")
            shown = ann.locator("#log li.message .text").last
            await shown.wait_for(timeout=TIMEOUT_MS)
            await ann.wait_for_function(
                "document.querySelector('#log li.message:last-child .text')?.textContent.includes('bold')",
                timeout=TIMEOUT_MS)
            assert await shown.text_content() == nasty  # shown as the characters typed
            assert await ann.locator("#log img, #log script, #log b").count() == 0
            assert await ann.evaluate("window.pwned") is None
            await bob.close()
            await ann.wait_for_function(
                "![...document.querySelectorAll('#members li')].some(li => li.textContent === 'bob')",
                timeout=TIMEOUT_MS)
            await ann.wait_for_selector("#log li.presence >> text=bob left", timeout=TIMEOUT_MS)
            # History on load: a fresh page shows what was said.
            carol = await contexts[2].new_page()
            await join(carol, base, "carol")
            await carol.wait_for_selector("#log li.message >> text=hello bob", timeout=TIMEOUT_MS)
            seen.assert_clean()
        finally:
            for context in contexts:
                await context.close()
