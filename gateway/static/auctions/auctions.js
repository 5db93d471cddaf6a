// The auctions page: the open auctions with live prices (one WatchAuction stream each), the recently
// ended ones, a sell form, and the followed auction. Its bid history survives a reload: the page
// reads the auction (GET /v1/auctions/{id}), replays its bids from sequence 0 (ListBids), then opens
// the BidStream WebSocket with resume_from = the last bid it has, so live bids follow with no gap and
// no duplicate; the same socket places bids as the signed-in user. An unknown or ended auction
// gets a state of its own that replaces whatever was shown before.
"use strict";

const { api, socket, hang, el, money, minor, uuid } = window.Agora;
const $ = (id) => document.getElementById(id);

let me = null;
let followed = null;          // {id, auction, ws, lastSeq, ended, pending, retry}
const listed = new Map();     // auction id -> {ws, price}

// -- the lists

function link(a, right) {
  return el("a", { href: `?auction=${encodeURIComponent(a.id)}`, "data-auction": a.id,
                   "aria-current": followed && followed.id === a.id ? "true" : undefined,
                   onclick: (event) => { event.preventDefault(); go(a.id); } },
    el("span", { class: "name", text: a.productName }), right);
}

function watchListed(a, price) {
  const entry = { ws: null, price };
  listed.set(a.id, entry);
  entry.ws = socket(`/v1/auctions/${encodeURIComponent(a.id)}:watch`, {
    frame: (frame) => {
      if (frame.snapshot) price.textContent = money(frame.snapshot.currentPrice);
      else if (frame.bid) price.textContent = money(frame.bid.currentPrice);
      else if (frame.closed) setTimeout(loadLists, 300);
    },
    close: (event) => {
      if (listed.get(a.id) !== entry || event.code === 1000) return;
      setTimeout(() => { if (listed.get(a.id) === entry) watchListed(a, price); }, 3000);
    },
  });
}

async function loadLists() {
  let open = [];
  let ended = [];
  try {
    [open, ended] = await Promise.all([
      api("GET", "/v1/auctions?status=AUCTION_STATUS_OPEN&pageSize=30").then((r) => r.auctions || []),
      api("GET", "/v1/auctions?status=AUCTION_STATUS_CLOSED&pageSize=10").then((r) => r.auctions || []),
    ]);
  } catch (err) {
    $("open-list").replaceChildren(el("li", { class: "error", text: `cannot list auctions: ${err.message}` }));
    return;
  }
  for (const entry of listed.values()) hang(entry.ws);
  listed.clear();
  $("open-list").replaceChildren(...(open.length ? open.map((a) => {
    const price = el("span", { class: "price", text: money(a.currentPrice) });
    watchListed(a, price);
    return el("li", {}, link(a, price));
  }) : [el("li", { class: "muted", text: "No open auctions right now: sell something!" })]));
  $("ended-list").replaceChildren(...(ended.length ? ended.map((a) => el("li", {}, link(a,
    el("span", { class: "price", text: a.result && a.result.sold ? `sold ${money(a.result.price)}` : "no bids" }))))
    : [el("li", { class: "muted", text: "None yet." })]));
}

// -- the followed auction

function showView(which) {
  $("pick").hidden = which !== "pick";
  $("unknown").hidden = which !== "unknown";
  $("live").hidden = which !== "live";
  $("view").classList.toggle("has-auction", which !== "pick");
}

function remaining(ms) {
  if (ms <= 0) return "any second now";
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `in ${d}d ${h}h`;
  if (h) return `in ${h}h ${m}m`;
  return `in ${m}m ${String(s % 60).padStart(2, "0")}s`;
}

function tick() {
  if (!followed || !followed.auction) return;
  const a = followed.auction;
  if (followed.ended) {
    $("ends-label").textContent = "Ended";
    const at = a.result && a.result.closedAt ? a.result.closedAt : a.endsAt;
    $("ends").textContent = new Date(at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  } else {
    $("ends-label").textContent = "Ends";
    $("ends").textContent = remaining(new Date(a.endsAt) - Date.now());
    $("ends").title = new Date(a.endsAt).toLocaleString();
  }
}
setInterval(tick, 1000);

function bidForm() {
  const a = followed && followed.auction;
  const own = !!(a && me && a.sellerId === me.id);
  $("bid").hidden = !a || followed.ended || own;
  if (own && !followed.ended) $("notice").textContent = "This is your auction: others bid on it.";
}

function showState(a) {
  followed.auction = a;
  $("title").textContent = a.productName;
  $("seller").textContent = `Sold by ${a.sellerName}`;
  $("description").textContent = a.description || "";
  $("price").textContent = money(a.currentPrice);
  $("minimum").textContent = money(a.minimumNextBid);
  $("bid").amount.placeholder = a.minimumNextBid ? (Number(a.minimumNextBid.amountMinor) / 100).toFixed(2) : "";
  if (a.status === "AUCTION_STATUS_CLOSED") ended(a.result || {});
  tick();
  bidForm();
}

function addBid(b, extended) {
  const seq = Number(b.sequence);
  if (seq <= followed.lastSeq) return;   // replayed and live overlap: shown once
  followed.lastSeq = seq;
  const mine = me && b.bidderId === me.id;
  $("bids").prepend(el("li", { "data-sequence": String(seq), class: mine ? "mine" : undefined },
    el("span", {}, el("span", { class: "seq", text: `#${seq}` }), `${b.bidderName}${mine ? " (you)" : ""}`),
    el("span", { class: "amount", text: `${money(b.amount)}${extended ? " · extended the end" : ""}` })));
  $("bid-count").textContent = String(seq);
}

function accepted(frame) {
  addBid(frame.bid, frame.extended);
  const a = followed.auction;
  a.currentPrice = frame.currentPrice;
  a.minimumNextBid = frame.minimumNextBid;
  if (frame.endsAt) a.endsAt = frame.endsAt;
  $("price").textContent = money(a.currentPrice);
  $("minimum").textContent = money(a.minimumNextBid);
  $("bid").amount.placeholder = (Number(a.minimumNextBid.amountMinor) / 100).toFixed(2);
  tick();
}

function ended(result) {
  followed.ended = true;
  followed.auction.result = result;
  $("state").textContent = "ended";
  $("price-label").textContent = result.sold ? "Winning bid" : "Starting price";
  $("minimum-box").hidden = true;
  $("state").className = "badge bad";
  $("result").textContent = result.sold
    ? `Sold to ${result.winnerName}${me && result.winnerId === me.id ? " (you!)" : ""} for ${money(result.price)}.`
    : "Ended without bids: nothing was sold.";
  $("notice").textContent = "";
  hang(followed.ws);
  followed.ws = null;
  tick();
  bidForm();
}

function connect() {
  const f = followed;
  const query = f.lastSeq > 0 ? `?resume_from=${f.lastSeq}` : "";
  f.ws = socket(`/v1/auctions/${encodeURIComponent(f.id)}/bidstream${query}`, {
    open: (ws) => {
      f.retry = 1000;
      if (f.pending) { ws.send(JSON.stringify(f.pending)); f.pending = null; }
    },
    frame: (frame) => {
      if (followed !== f) return;
      if (frame.snapshot) showState(frame.snapshot);
      else if (frame.bid) { accepted(frame.bid); $("notice").textContent = ""; }
      else if (frame.rejected) $("notice").textContent = `Bid refused: ${frame.rejected.message}`;
      else if (frame.closed) { ended(frame.closed); loadLists(); }
    },
    close: (event, ws) => {
      if (followed !== f || f.ws !== ws || f.ended || event.code === 1000) return;
      if (event.code === 4000 + 5) { unknown(f.id); return; }
      $("notice").textContent = "Connection lost; reconnecting…";
      setTimeout(() => { if (followed === f && f.ws === ws) connect(); }, f.retry);
      f.retry = Math.min((f.retry || 1000) * 2, 10000);
    },
  });
}

function unknown(id, message) {
  if (followed) hang(followed.ws);
  followed = null;
  $("unknown").textContent = message || `There is no auction with the id “${id}”. It may have been mistyped; pick one from the list.`;
  showView("unknown");
}

async function open(id) {
  if (followed) hang(followed.ws);
  followed = null;
  $("bids").replaceChildren();
  $("notice").textContent = "";
  $("result").textContent = "";
  $("bid-count").textContent = "0";
  $("state").textContent = "open";
  $("state").className = "badge ok";
  $("price-label").textContent = "Current price";
  $("minimum-box").hidden = false;
  document.querySelectorAll(".auction-list a").forEach((a) => a.setAttribute("aria-current", String(a.dataset.auction === id)));
  if (!id) { showView("pick"); return; }
  const f = { id, auction: null, ws: null, lastSeq: 0, ended: false, pending: null, retry: 1000 };
  followed = f;
  let auction;
  try {
    auction = (await api("GET", `/v1/auctions/${encodeURIComponent(id)}`)).auction;
  } catch (err) {
    if (followed === f) unknown(id, err.status === 404 ? undefined : err.message);
    return;
  }
  // The whole history, from sequence 0: ListBids pages come newest first.
  const bids = [];
  let token = "";
  try {
    do {
      const page = await api("GET", `/v1/auctions/${encodeURIComponent(id)}/bids?pageSize=500${token ? `&pageToken=${encodeURIComponent(token)}` : ""}`);
      bids.push(...(page.bids || []));
      token = page.nextPageToken || "";
    } while (token);
  } catch (err) {
    $("notice").textContent = `cannot load the bids: ${err.message}`;
  }
  if (followed !== f) return;
  showView("live");
  showState(auction);
  for (const b of bids.sort((x, y) => Number(x.sequence) - Number(y.sequence))) addBid(b, false);
  if (!f.ended) connect();
}

function go(id) {
  history.pushState(null, "", id ? `?auction=${encodeURIComponent(id)}` : location.pathname);
  open(id);
}

$("bid").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = followed;
  if (!f || f.ended) return;
  const frame = { amount: { currencyCode: f.auction.currentPrice.currencyCode, amountMinor: minor(event.target.amount.value) },
                  requestId: uuid() };
  event.target.amount.value = "";
  if (!me) {
    const user = await window.Agora.requireUser("Bidding needs an account. Log in or create one.");
    if (!user || followed !== f) return;
    f.pending = frame;   // sent as soon as the socket, reopened as this user, is up
    return;
  }
  if (!f.ws || f.ws.readyState !== WebSocket.OPEN) { f.pending = frame; return; }
  f.ws.send(JSON.stringify(frame));
});

$("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("create-error").textContent = "";
  if (!(await window.Agora.requireUser("Selling needs an account. Log in or create one."))) return;
  try {
    const reply = await api("POST", "/v1/auctions", {
      productName: form.product_name.value,
      description: form.description.value,
      startingPrice: { currencyCode: "USD", amountMinor: minor(form.starting_price.value) },
      minIncrement: { currencyCode: "USD", amountMinor: minor(form.min_increment.value) },
      auctionEnd: new Date(Date.now() + Number(form.minutes.value) * 60000).toISOString(),
    });
    form.reset();
    await loadLists();
    go(reply.productId);
  } catch (err) {
    $("create-error").textContent = err.message;
  }
});

window.Agora.onUser((user) => {
  const changed = (user ? user.id : "") !== (me ? me.id : "");
  me = user;
  $("sell-hint").hidden = !!user;
  if (changed && followed && followed.auction && !followed.ended) {
    // The socket's identity is the one it was opened with: reopen it as the new user, resuming.
    hang(followed.ws);
    $("notice").textContent = "";
    bidForm();
    connect();
  }
});
window.addEventListener("popstate", () => open(new URLSearchParams(location.search).get("auction") || ""));
loadLists();
open(new URLSearchParams(location.search).get("auction") || "");
