// Points the vendored Swagger UI at the bridge's own document; no network beyond this origin.
//
// "Try it out" from a signed-in browser sends the session cookie, and the bridge wants CSRF proof on
// every unsafe request a cookie session makes: the request interceptor fetches a token from
// GET /v1/auth/csrftoken once (kept in memory only) and sends it as X-CSRF-Token. A request that
// carries its own Authorization header needs none, and gets none added.
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);
let csrfToken = null;

async function csrf() {
  if (csrfToken === null) {
    try {
      const reply = await fetch("/v1/auth/csrftoken", { credentials: "same-origin", headers: { accept: "application/json" } });
      csrfToken = reply.ok ? (await reply.json()).csrfToken || "" : "";
    } catch (_) {
      csrfToken = "";
    }
  }
  return csrfToken;
}

function hasHeader(headers, name) {
  return Object.keys(headers || {}).some((key) => key.toLowerCase() === name);
}

async function withCsrf(request) {
  const method = (request.method || "GET").toUpperCase();
  if (SAFE_METHODS.has(method) || hasHeader(request.headers, "authorization") || hasHeader(request.headers, "x-csrf-token")) {
    return request;
  }
  const token = await csrf();
  if (token) {
    request.headers = { ...(request.headers || {}), "X-CSRF-Token": token };
  }
  return request;
}

window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    requestInterceptor: withCsrf,
  });
};
