"""The live poll board in headless Chromium: a vote cast through REST shows on the open page, no reload."""

from __future__ import annotations

import httpx
import pytest

from tests.logcheck import no_error_logged  # noqa: F401 - the fixture
from tests.services.polls.conftest import start_mesh

pytestmark = pytest.mark.usefixtures("no_error_logged")


@pytest.fixture(scope="module")
async def board_mesh(tmp_path_factory):
    mesh, stop = await start_mesh("embedded", tmp_path_factory.mktemp("board"))
    yield mesh
    await stop()


async def test_vote_through_rest_moves_the_bar_on_the_open_page(browser, board_mesh):
    async with httpx.AsyncClient(base_url=board_mesh.base_url, timeout=10) as http:
        created = await http.post("/v1/polls",
                                  json={"question": "Which bar moves?", "options": ["left", "right"]})
        poll = created.json()["poll"]
        context = await browser.new_context()
        try:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{board_mesh.base_url}/polls/#{poll['id']}")
            await page.wait_for_selector("#bars li[data-index='1'] .count")
            assert await page.text_content("#question") == "Which bar moves?"
            assert await page.text_content("#bars li[data-index='1'] .count") == "0"
            navigations = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))

            for _ in range(3):
                voted = await http.post(f"/v1/polls/{poll['id']}/votes", json={"option": 1})
                assert voted.status_code == 200
            await page.wait_for_function(
                "document.querySelector(\"#bars li[data-index='1'] .count\").textContent === '3'",
                timeout=15_000)
            width = await page.eval_on_selector("#bars li[data-index='1'] .fill", "e => e.style.width")
            assert width == "100%"
            # A vote from the page itself, through its own button, moves the other bar.
            await page.click("#bars li[data-index='0'] button")
            await page.wait_for_function(
                "document.querySelector('#total').textContent === '4'", timeout=15_000)
            assert navigations == [], "the page reloaded"
            assert errors == []
            assert await page.text_content("#mode") == "live"  # the bars moved over SSE, not by polling
        finally:
            await context.close()
