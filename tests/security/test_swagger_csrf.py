"""Swagger UI's "Try it out" from a signed-in browser: the session cookie goes with every request,
so an unsafe one needs CSRF proof. The page's request interceptor fetches a token and sends it;
without it the same request is refused 403 (gateway/static/swagger/swagger-initializer.js)."""

from __future__ import annotations

from urllib.parse import urlparse

from tests.security.conftest import sign_up

# What Swagger UI does on Execute: its request object, through the configured interceptor, to fetch.
SEND = """async ([path, body, intercept]) => {
    let request = {url: path, method: "POST", headers: {"Content-Type": "application/json"}, body};
    if (intercept) request = await window.ui.getConfigs().requestInterceptor(request);
    const reply = await fetch(request.url, {method: request.method, headers: request.headers, \
body: request.body,
                                            credentials: "same-origin"});
    return [reply.status, await reply.text()];
}"""


async def test_try_it_out_sends_the_csrf_token_for_a_cookie_session(browser, secure_mesh, http):
    user = await sign_up(http)
    session = user["cookies"]["agora_session"]
    host = urlparse(secure_mesh.base_url).hostname
    context = await browser.new_context()
    try:
        await context.add_cookies([{"name": "agora_session", "value": session, "domain": host, "path": "/"}])
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{secure_mesh.base_url}/docs/")
        await page.wait_for_selector(".opblock", timeout=20_000)  # the document loaded and rendered
        body = '{"question": "from the docs?", "options": ["yes", "no"]}'
        status, text = await page.evaluate(SEND, ["/v1/polls", body, False])
        assert status == 403 and "CSRF" in text, (status, text)
        status, text = await page.evaluate(SEND, ["/v1/polls", body, True])
        assert status == 200, text
        assert '"creatorId"' in text or user["user_id"] in text, text  # made as the signed-in user
        assert errors == []
    finally:
        await context.close()
