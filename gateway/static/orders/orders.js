// The orders page (seed 002's flow, made visible): a signed-in person keeps a customer profile
// (POST /v1/clients), places orders (POST /v1/orders) and watches each one move from placed to paid or
// payment failed live (WatchOrder over a WebSocket, replayed from sequence 0), with the notifications
// the mesh sent about it (ListNotifications, then WatchNotifications live). The /v1 routes show a
// user only their own clients, orders and notifications.
"use strict";

const { api, socket, hang, el, money, minor, time, uuid } = window.Agora;
const $ = (id) => document.getElementById(id);

const STATUS = {
  ORDER_STATUS_PENDING: ["placed · awaiting payment", "wait"],
  ORDER_STATUS_PAID: ["paid", "ok"],
  ORDER_STATUS_PAYMENT_FAILED: ["payment failed", "bad"],
  ORDER_STATUS_CANCELLED: ["cancelled", "bad"],
  ORDER_STATUS_REFUNDED: ["refunded", "wait"],
};
const NOTE = {
  NOTIFICATION_STATUS_QUEUED: ["queued", "wait"], NOTIFICATION_STATUS_SENT: ["sent", "ok"],
  NOTIFICATION_STATUS_FAILED: ["failed", "bad"], NOTIFICATION_STATUS_RETRYING: ["retrying", "wait"],
};

let me = null;
let client = null;
const orders = new Map();        // order id -> {order, node, ws, seq}
const notes = new Map();         // notification id -> notification
let noteStream = null;
let shown = null;               // whose orders are on the page
let generation = 0;              // bumps on sign-in / sign-out: late answers of the old session are dropped

function badge([text, kind]) { return el("span", { class: `badge ${kind}`, text }); }
const statusBadge = (s) => badge(STATUS[s] || [s.replace("ORDER_STATUS_", "").toLowerCase(), "wait"]);
// In the history a PENDING entry is simply the moment the order was placed.
const stepBadge = (s) => (s === "ORDER_STATUS_PENDING" ? badge(["placed", "wait"]) : statusBadge(s));

// -- the customer profile and the catalog

async function loadClient() {
  const list = (await api("GET", "/v1/clients?pageSize=10")).clients || [];
  client = list[0] || null;
  $("client-summary").hidden = !client;
  $("client-form").hidden = !!client;
  $("order-form").querySelectorAll("select, input, button").forEach((c) => (c.disabled = !client));
  if (client) {
    $("client-summary").textContent = `${client.name} · ${client.email}${client.phone ? ` · ${client.phone}` : ""}`;
  } else {
    $("client-form").email.value = me.email || "";
  }
}

async function loadProducts(select) {
  const products = (await api("GET", "/v1/products?pageSize=100")).products || [];
  const options = products.filter((p) => Number(p.stock || 0) > 0).map((p) =>
    new Option(`${p.name} · ${money(p.price)} · ${p.stock} in stock`, p.id));
  $("product").replaceChildren(...(options.length ? options : [new Option("none yet: add one below", "")]));
  if (select) $("product").value = select;
}

$("client-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("client-error").textContent = "";
  const body = { name: form.name.value.trim(), email: form.email.value.trim() };
  if (form.phone.value.trim()) body.phone = form.phone.value.trim();
  try {
    await api("POST", "/v1/clients", body);
    await loadClient();
  } catch (err) { $("client-error").textContent = err.message; }
});

$("product-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("product-error").textContent = "";
  try {
    // A product needs a seller: the signed-in person's own, made on first use.
    const sellers = (await api("GET", "/v1/sellers?pageSize=500")).sellers || [];
    let seller = sellers.find((s) => s.userId === me.id);
    if (!seller) seller = (await api("POST", "/v1/sellers", { name: me.userName, email: me.email })).seller;
    const { product } = await api("POST", "/v1/products", {
      sellerId: seller.id, name: form.name.value.trim(),
      price: { currencyCode: "USD", amountMinor: minor(form.price.value) }, stock: String(form.stock.value),
    });
    form.reset();
    await loadProducts(product.id);
  } catch (err) { $("product-error").textContent = err.message; }
});

// -- orders, live

function renderOrder(entry) {
  const o = entry.order;
  const items = (o.items || []).map((i) => `${i.quantity} × ${i.productName || i.productId}`).join(", ");
  const timeline = el("ol", { class: "timeline", "aria-label": "Status history" }, ...(o.history || []).map((h) =>
    el("li", {}, el("span", { class: "at", text: time(h.at) }), stepBadge(h.status),
      h.reason ? el("span", { class: "muted", text: h.reason }) : null)));
  const mine = [...notes.values()].filter((n) => n.orderId === o.id)
    .sort((a, b) => String(a.createdAt).localeCompare(String(b.createdAt)));
  const mails = mine.length
    ? el("ul", { class: "mails" }, ...mine.map((n) => el("li", { "data-notification": n.id },
      el("div", {}, el("span", { class: "subject", text: n.subject || n.template }), " ", badge(NOTE[n.status] || [n.status, "wait"])),
      el("div", { class: "to", text: `${n.channel === "NOTIFICATION_CHANNEL_SMS" ? "SMS" : "E-mail"} to ${n.recipient}` }))))
    : el("p", { class: "muted", text: "None yet." });
  entry.node.replaceChildren(
    el("div", { class: "top" }, el("span", { class: "what", text: items || "order" }), statusBadge(o.status)),
    el("div", { class: "top" }, el("span", { class: "total", text: `Total ${money(o.total)}` }),
      el("span", { class: "id", text: `placed ${time(o.createdAt)} · ${o.id.slice(0, 8)}` })),
    el("h3", { text: "Status" }), timeline,
    el("h3", { text: "Notifications" }), mails);
  entry.node.dataset.status = o.status;
}

function watchOrder(entry) {
  const gen = generation;
  entry.ws = socket(`/v1/orders/${encodeURIComponent(entry.order.id)}:watch${entry.seq ? `?resume_from=${entry.seq}` : ""}`, {
    frame: (frame) => {
      if (gen !== generation) return;
      const seq = Number(frame.sequence || 0);
      if (seq <= entry.seq) return;
      entry.seq = seq;
      if (frame.order) { entry.order = frame.order; renderOrder(entry); }
    },
    close: (event) => {
      // 1000: the order reached a final status and the stream ended; otherwise resume where it stopped.
      if (gen !== generation || event.code === 1000 || (event.code >= 4000 && event.code !== 4008 && event.code !== 4014)) return;
      setTimeout(() => { if (gen === generation) watchOrder(entry); }, 2000);
    },
  });
}

function addOrder(order, first) {
  if (orders.has(order.id)) return orders.get(order.id);
  const entry = { order, node: el("li", { class: "order", "data-order": order.id }), ws: null, seq: 0 };
  orders.set(order.id, entry);
  renderOrder(entry);
  if (first) $("orders").prepend(entry.node); else $("orders").append(entry.node);
  watchOrder(entry);
  return entry;
}

function watchNotes() {
  const gen = generation;
  noteStream = socket("/v1/notifications:watch", {
    open: () => { $("live").textContent = "live"; $("live").className = "badge ok"; },
    frame: (frame) => {
      if (gen !== generation || !frame.notification) return;
      const n = frame.notification;
      notes.set(n.id, n);
      const entry = orders.get(n.orderId);
      if (entry) renderOrder(entry);
    },
    close: () => {
      if (gen !== generation) return;
      $("live").textContent = "reconnecting…";
      $("live").className = "badge wait";
      setTimeout(() => { if (gen === generation) watchNotes(); }, 2000);
    },
  });
}

$("order-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("order-error").textContent = "";
  if (!client || !form.product.value) { $("order-error").textContent = "Pick a product first (or add one below)."; return; }
  try {
    const { order } = await api("POST", "/v1/orders", {
      clientId: client.id, items: [{ productId: form.product.value, quantity: String(form.quantity.value) }],
      cardToken: form.card.value, requestId: uuid(),
    });
    addOrder(order, true);
    $("orders").querySelector(".empty")?.remove();
    loadProducts(form.product.value);
  } catch (err) { $("order-error").textContent = err.message; }
});

function stopAll() {
  generation += 1;
  for (const entry of orders.values()) hang(entry.ws);
  orders.clear();
  notes.clear();
  hang(noteStream);
  noteStream = null;
  $("orders").replaceChildren();
}

async function start() {
  const gen = generation;
  watchNotes();   // first, so nothing sent while the list loads is missed
  try {
    const [, , list, sent] = await Promise.all([
      loadClient(), loadProducts(),
      api("GET", "/v1/orders?pageSize=50").then((r) => r.orders || []),
      api("GET", "/v1/notifications?pageSize=200").then((r) => r.notifications || []),
    ]);
    if (gen !== generation) return;
    for (const n of sent) if (!notes.has(n.id)) notes.set(n.id, n);
    list.sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
    for (const order of list) addOrder(order, false);
    if (!list.length) $("orders").append(el("li", { class: "muted empty", text: "No orders yet: place one." }));
  } catch (err) {
    $("order-error").textContent = err.message;
  }
}

$("orders-sign-in").addEventListener("click", () => window.Agora.requireUser("Sign in to see and place your orders."));

window.Agora.onUser((user) => {
  if (shown === (user ? user.id : "")) return;
  shown = user ? user.id : "";
  stopAll();
  me = user;
  $("signed-out").hidden = !!user;
  $("signed-in").hidden = !user;
  if (user) start();
});
