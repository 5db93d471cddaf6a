"""The chat page in headless Chromium: two pages talk, presence updates, HTML stays text."""

from __future__ import annotations

import pytest

from services.kit.config import Settings
from tests.logcheck import no_error_logged  # noqa: F401 - the fixture
from tests.realservers import require_chromium
from tests.services.chat.support import bridge, chat_server

# No ERROR in normal use, the sockets' teardown included (issue 18, finding 6, in RELIABILITY.md).
pytestmark = pytest.mark.usefixtures("no_error_logged")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 10_000


@pytest.fixture(autouse=True)
def chromium() -> str:
    return require_chromium()


async def join(page, base: str, name: str) -> None:
    await page.goto(f"http://{base}/")
    await page.fill("#name", name)
    await page.wait_for_selector("#room option[value=general]", state="attached", timeout=TIMEOUT_MS)
    await page.click("#join button")
    await page.wait_for_function("!document.querySelector('#text').disabled", timeout=TIMEOUT_MS)


async def test_two_pages_talk_and_see_each_other(tmp_path):
    from playwright.async_api import async_playwright

    async with chat_server(Settings(data_dir=tmp_path)) as server, bridge(server.address) as base:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                ann = await browser.new_page()
                bob = await (await browser.new_context()).new_page()
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
                carol = await browser.new_page()
                await join(carol, base, "carol")
                await carol.wait_for_selector("#log li.message >> text=hello bob", timeout=TIMEOUT_MS)
            finally:
                await browser.close()
