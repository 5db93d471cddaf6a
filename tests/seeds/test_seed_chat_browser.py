"""Seed 003 in a browser: a plain page that knows only the seed's protocol (`/ws?username=`,
{"content"} out, models.Message frames in, `GET /api/messages?limit=50`) lets two people chat.

The page is written here, in the seed's manner (no Agora code, no Agora field), and served from the
bridge's origin through playwright's routing, as the seed served its `web/index.html` next to `/ws`.
"""

from __future__ import annotations

from tests.logcheck import error_lines

# The page is fulfilled by playwright, so it has no server address: the session's one Chromium
# (tests/browser.py) runs with Local Network Access checks off, which would otherwise block its
# WebSocket to 127.0.0.1 (the seed's page came from the server itself).
TIMEOUT_MS = 10_000

SEED_PAGE = """<!doctype html>
<meta charset="utf-8"><title>seed chat</title>
<input id="username"><button id="join">Entrar</button>
<span id="online-count">0</span>
<ul id="messages"></ul>
<input id="message"><button id="send">Enviar</button>
<script>
let ws;
function addMessage(msg) {
  if (msg.onlineCount !== undefined) document.getElementById('online-count').innerText = msg.onlineCount;
  if (msg.type === 'count') return;
  const li = document.createElement('li');
  li.className = msg.type;
  li.textContent = msg.username + ': ' + msg.content;
  document.getElementById('messages').appendChild(li);
}
document.getElementById('join').onclick = () => {
  const username = document.getElementById('username').value.trim();
  ws = new WebSocket(`ws://${location.host}/ws?username=${encodeURIComponent(username)}`);
  ws.onmessage = (event) => addMessage(JSON.parse(event.data));
  ws.onopen = () => fetch('/api/messages?limit=50').then(r => r.json()).then(history => {
    window.historyLength = history.length;
    history.forEach(addMessage);
  });
};
document.getElementById('send').onclick = () => {
  const input = document.getElementById('message');
  ws.send(JSON.stringify({ content: input.value }));
  input.value = '';
};
</script>
"""


async def open_seed_page(browser, mesh, name: str, contexts: list):
    context = await browser.new_context()
    contexts.append(context)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.route("**/seed-chat.html",
                     lambda route: route.fulfill(body=SEED_PAGE, content_type="text/html"))
    await page.goto(f"{mesh.base_url}/seed-chat.html")
    await page.fill("#username", name)
    await page.click("#join")
    await page.wait_for_function("window.historyLength !== undefined", timeout=TIMEOUT_MS)
    return page, errors


async def test_two_people_chat_with_only_the_seed_protocol(browser, mesh):
    contexts: list = []  # a cookie jar each, in the session's one Chromium; closed at the end
    try:
        ana, ana_errors = await open_seed_page(browser, mesh, "ana-browser", contexts)
        await ana.wait_for_selector("#messages li.join >> text=ana-browser entrou no chat",
                                    timeout=TIMEOUT_MS)
        bia, bia_errors = await open_seed_page(browser, mesh, "bia-browser", contexts)
        await ana.wait_for_selector("#messages li.join >> text=bia-browser entrou no chat",
                                    timeout=TIMEOUT_MS)
        await ana.wait_for_function("Number(document.getElementById('online-count').innerText) >= 2",
                                    timeout=TIMEOUT_MS)
        await ana.fill("#message", "oi bia")
        await ana.click("#send")
        await bia.wait_for_selector("#messages li.message >> text=ana-browser: oi bia",
                                    timeout=TIMEOUT_MS)
        await bia.fill("#message", "oi ana")
        await bia.click("#send")
        await ana.wait_for_selector("#messages li.message >> text=bia-browser: oi ana",
                                    timeout=TIMEOUT_MS)
        assert await bia.evaluate("window.historyLength") >= 1  # the history loaded as an array
        assert "undefined" not in await ana.inner_text("#messages")
        await bia.close()
        await ana.wait_for_selector("#messages li.leave >> text=bia-browser saiu do chat",
                                    timeout=TIMEOUT_MS)
        assert ana_errors == [] and bia_errors == []
        bad = error_lines(mesh.up.log.read_text())  # the mesh's log: no ERROR line in normal use
        assert not bad, "ERROR lines in the mesh's log:\n" + "\n".join(bad[:20])
    finally:
        for context in contexts:
            await context.close()
