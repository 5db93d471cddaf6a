// The frame every Agora page shares: the header (navigation, the signed-in user, sign in / sign out),
// the sign-in dialog (sign-up, login and logout over the session cookie and the CSRF token), the JSON
// helper every page calls the bridge with, and WebSocket streams. Pages use window.Agora.
"use strict";

(function () {
  const NAV = [["/", "Chat"], ["/polls/", "Polls"], ["/auctions/", "Auctions"], ["/orders/", "Orders"], ["/docs/", "API docs"]];
  const SAFE = new Set(["GET", "HEAD"]);
  // A hint only (the session cookie is HttpOnly): ask who we are only when we may be signed in,
  // so an anonymous visit makes no request that answers 401.
  const HINT = "agora.signedIn";
  let csrfToken = "";
  let me = null;
  let known = false;
  const watchers = [];
  let pending = [];  // resolvers of requireUser()

  class ApiError extends Error {
    constructor(status, body) {
      super(body.message || `HTTP ${status}`);
      this.status = status;
      this.code = body.code;
      this.details = body.details || [];
    }
  }

  async function csrf() {
    // The token is bound to the bridge's signed CSRF cookie: fetched once, valid across login.
    if (!csrfToken) {
      const reply = await fetch("/v1/auth/csrftoken", { credentials: "same-origin", headers: { accept: "application/json" } });
      csrfToken = (await reply.json()).csrfToken || "";
    }
    return csrfToken;
  }

  async function api(method, path, body) {
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (!SAFE.has(method)) headers["x-csrf-token"] = await csrf();
    const reply = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new ApiError(reply.status, data);
    return data;
  }

  // A server stream or a bidi stream over the bridge's WebSocket: JSON frames in, a close code out
  // (1000 when the stream ended, 4000 + the gRPC code when it failed).
  function socket(path, handlers) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${path}`);
    ws.onopen = () => handlers.open && handlers.open(ws);
    ws.onmessage = (event) => handlers.frame(JSON.parse(event.data), ws);
    ws.onclose = (event) => handlers.close && handlers.close(event, ws);
    return ws;
  }

  function hang(ws) {
    // Close without a console warning: a socket still connecting is closed once it opens.
    if (!ws) return;
    ws.onmessage = null;
    ws.onclose = null;
    if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000);
    else if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== undefined && c !== null));
    return node;
  }

  const money = (m) => m ? `${(Number(m.amountMinor || 0) / 100).toFixed(2)} ${m.currencyCode || ""}`.trim() : "—";
  const minor = (text) => String(Math.round(Number(text) * 100));
  const time = (ts) => ts ? new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "";
  const uuid = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

  // -- who is signed in

  function setUser(user) {
    me = user || null;
    known = true;
    if (me) localStorage.setItem(HINT, "1"); else localStorage.removeItem(HINT);
    renderAccount();
    for (const fn of watchers) fn(me);
    if (me) { for (const resolve of pending) resolve(me); pending = []; }
  }

  async function whoami() {
    if (!localStorage.getItem(HINT)) { setUser(null); return; }
    try { setUser((await api("GET", "/v1/auth/whoami")).user); } catch { setUser(null); }
  }

  function onUser(fn) {
    watchers.push(fn);
    if (known) fn(me);
  }

  // Resolves with the user once signed in, or null when the person closes the dialog.
  function requireUser(reason) {
    if (me) return Promise.resolve(me);
    return new Promise((resolve) => { pending.push(resolve); openDialog(reason); });
  }

  async function signOut() {
    try { await api("POST", "/v1/auth/logout", {}); } catch (err) { if (err.status !== 401) throw err; }
    setUser(null);
  }

  // -- the header

  let account = null;
  function renderHeader() {
    const header = document.getElementById("site-header");
    if (!header) return;
    const here = location.pathname.startsWith("/docs") ? "/docs/" : location.pathname.replace(/index\.html$/, "");
    const nav = el("nav", { "aria-label": "Main" }, ...NAV.map(([href, label]) =>
      el("a", { href, text: label, "aria-current": href === here ? "page" : undefined })));
    account = el("div", { class: "account" });
    header.classList.add("site-header");
    header.replaceChildren(el("div", { class: "bar" }, el("a", { class: "brand", href: "/", text: "Agora" }), nav, account));
    renderAccount();
  }

  function renderAccount() {
    if (!account) return;
    if (!known) { account.replaceChildren(); return; }
    if (me) {
      account.replaceChildren(
        el("span", { class: "who", id: "who", title: `Signed in as ${me.userName}`, text: me.userName }),
        el("button", { type: "button", id: "sign-out", text: "Sign out", onclick: () => signOut() }));
    } else {
      account.replaceChildren(el("button", { type: "button", id: "sign-in", text: "Sign in", onclick: () => openDialog("") }));
    }
  }

  // -- the sign-in dialog

  let dialog = null;
  function buildDialog() {
    const form = el("form", { method: "dialog", id: "signin-form" });
    const reason = el("p", { class: "notice info", id: "signin-reason" });
    const error = el("p", { class: "notice error", id: "signin-error", role: "alert" });
    const tabLogin = el("button", { type: "button", id: "tab-login", "aria-pressed": "true", text: "Log in" });
    const tabSignup = el("button", { type: "button", id: "tab-signup", "aria-pressed": "false", text: "Create account" });
    const emailField = el("label", { class: "field", hidden: true },
      el("span", { text: "E-mail" }), el("input", { name: "email", type: "email", autocomplete: "email" }));
    const submit = el("button", { type: "submit", id: "signin-submit", text: "Log in" });
    let mode = "login";
    function setMode(next) {
      mode = next;
      tabLogin.setAttribute("aria-pressed", String(mode === "login"));
      tabSignup.setAttribute("aria-pressed", String(mode === "signup"));
      emailField.hidden = mode === "login";
      emailField.querySelector("input").required = mode === "signup";
      form.password.autocomplete = mode === "login" ? "current-password" : "new-password";
      submit.textContent = mode === "login" ? "Log in" : "Create account";
      error.textContent = "";
    }
    tabLogin.addEventListener("click", () => setMode("login"));
    tabSignup.addEventListener("click", () => setMode("signup"));
    form.append(
      el("h2", { id: "signin-title", text: "Sign in to Agora" }), reason,
      el("div", { class: "tabs", role: "group", "aria-label": "I have an account / I am new" }, tabLogin, tabSignup),
      el("div", { class: "stack" },
        el("label", { class: "field" }, el("span", { text: "User name" }),
          el("input", { name: "user_name", required: true, autocomplete: "username", minlength: "3", maxlength: "32" })),
        emailField,
        el("label", { class: "field" }, el("span", { text: "Password" }),
          el("input", { name: "password", type: "password", required: true, minlength: "8", maxlength: "128" })),
        el("small", { class: "hint", text: "At least 8 characters." })),
      error,
      el("div", { class: "actions" },
        el("button", { type: "button", class: "secondary", id: "signin-cancel", text: "Cancel", onclick: () => dialog.close() }),
        submit));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      const name = form.user_name.value.trim();
      try {
        if (mode === "signup") {
          await api("POST", "/v1/users", { userName: name, email: form.email.value.trim(), password: form.password.value });
        }
        const reply = await api("POST", "/v1/auth/login", { userName: name, password: form.password.value });
        form.reset();
        setMode("login");
        dialog.close();
        setUser(reply.user);
      } catch (err) {
        error.textContent = err.status === 401 ? "That user name and password do not match." : err.message;
      } finally {
        submit.disabled = false;
      }
    });
    dialog = el("dialog", { class: "signin agora", "aria-labelledby": "signin-title" }, form);
    dialog.addEventListener("close", () => {
      if (!me) { for (const resolve of pending) resolve(null); pending = []; }
    });
    document.body.append(dialog);
    return { reason, setMode };
  }

  let parts = null;
  function openDialog(why) {
    if (!parts) parts = buildDialog();
    parts.reason.textContent = why || "";
    if (!dialog.open) dialog.showModal();
    dialog.querySelector("input[name=user_name]").focus();
  }

  window.Agora = { api, ApiError, socket, hang, el, money, minor, time, uuid, onUser, requireUser, signOut,
                   user: () => me };
  renderHeader();
  whoami();
})();
