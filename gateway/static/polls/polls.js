// The live poll board: create a poll, vote, watch the bars move. Plain JS over the bridge's REST
// routes (/v1/polls...) and the WatchResults stream as Server-Sent Events (/v1/polls/{id}:watch).
// A poll made while signed in has a creator, who may close it early; asking for that signs in first.
"use strict";

const { api, el } = window.Agora;
const $ = (id) => document.getElementById(id);
const voterKey = localStorage.getItem("agora.voterKey") || window.Agora.uuid();
localStorage.setItem("agora.voterKey", voterKey);

let current = null;   // {poll, source, timer, sequence}
let me = null;

async function loadPolls() {
  try {
    const data = await api("GET", "/v1/polls?status=POLL_STATUS_OPEN&pageSize=20");
    const polls = data.polls || [];
    $("polls").replaceChildren(...(polls.length ? polls.map((poll) => el("li", {},
      el("a", { href: `#${poll.id}`, text: poll.question }))) : [el("li", { class: "muted", text: "No open polls yet." })]));
  } catch (err) {
    $("polls").replaceChildren(el("li", { class: "error", text: `cannot list polls: ${err.message}` }));
  }
}

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("create-error").textContent = "";
  if (form.owned.checked && !me && !(await window.Agora.requireUser("Sign in to own this poll: its creator may close it early."))) return;
  const body = {
    question: form.question.value,
    options: form.options.value.split("\n").map((s) => s.trim()).filter(Boolean),
    votePolicy: form.policy.value,
    allowChange: form.allowChange.checked && form.policy.value !== "VOTE_POLICY_UNRESTRICTED",
  };
  if (form.minutes.value) body.closesAt = new Date(Date.now() + form.minutes.value * 60000).toISOString();
  try {
    const { poll } = await api("POST", "/v1/polls", body);
    form.reset();
    location.hash = poll.id;
    loadPolls();
  } catch (err) {
    $("create-error").textContent = err.message;
  }
});

function render(results, final) {
  if (!current) return;
  const sequence = Number(results.sequence || 0);
  if (sequence < current.sequence && !final) return;   // an older snapshot: the newest wins
  current.sequence = sequence;
  const total = Number(results.totalVotes || 0);
  $("total").textContent = total;
  for (const tally of results.tallies || []) {
    const row = document.querySelector(`#bars li[data-index="${tally.index || 0}"]`);
    if (!row) continue;
    const votes = Number(tally.votes || 0);
    const share = total ? (100 * votes) / total : 0;
    row.querySelector(".count").textContent = votes;
    row.querySelector(".pct").textContent = `${Math.round(share)}%`;
    row.querySelector(".fill").style.width = total ? `${share}%` : "0";
    row.querySelector(".track").setAttribute("aria-valuenow", String(Math.round(share)));
  }
  if (final || results.final) closed();
}

function closed() {
  $("status").textContent = "closed · final results";
  $("status").className = "badge bad";
  $("bars").classList.add("closed");
  document.querySelectorAll("#bars button").forEach((b) => (b.disabled = true));
  $("close-poll").hidden = true;
  stopWatching();
  $("mode").textContent = "final";
}

function stopWatching() {
  if (current && current.source) current.source.close();
  if (current && current.timer) clearInterval(current.timer);
}

function watch() {
  const id = current.poll.id;
  const source = new EventSource(`/v1/polls/${encodeURIComponent(id)}:watch`);
  current.source = source;
  source.onopen = () => { $("mode").textContent = "live"; };
  source.onmessage = (event) => {
    const message = JSON.parse(event.data);
    render(message.results || {}, message.final);
  };
  source.addEventListener("error", (event) => {
    if (event.data) $("vote-error").textContent = JSON.parse(event.data).message || "stream error";
    if (source.readyState === EventSource.CLOSED && current && current.poll.id === id && !current.timer) {
      // The stream is refused (not merely interrupted: EventSource retries those itself):
      // keep the bars moving by asking for the results every second.
      $("mode").textContent = "refreshing every second";
      current.timer = setInterval(refresh, 1000);
    }
  });
}

async function refresh() {
  if (!current) return;
  try {
    const data = await api("GET", `/v1/polls/${encodeURIComponent(current.poll.id)}`);
    render(data.results || {}, (data.results || {}).final);
  } catch (err) {
    $("vote-error").textContent = err.message;
  }
}

async function vote(index) {
  $("vote-error").textContent = "";
  const poll = current.poll;
  const body = poll.votePolicy === "VOTE_POLICY_ONE_PER_VOTER_KEY" ? { option: index, voterKey } : { option: index };
  try {
    await api("POST", `/v1/polls/${encodeURIComponent(poll.id)}/votes`, body);
  } catch (err) {
    $("vote-error").textContent = err.message;
  }
}

$("close-poll").addEventListener("click", async () => {
  try {
    await api("POST", `/v1/polls/${encodeURIComponent(current.poll.id)}:close`, {});
    loadPolls();
  } catch (err) {
    $("vote-error").textContent = err.message;
  }
});

function showCloser() {
  $("close-poll").hidden = !(current && me && current.poll.creatorId === me.id && current.poll.status !== "POLL_STATUS_CLOSED");
}

function state(which) {
  $("empty").hidden = which !== "empty";
  $("missing").hidden = which !== "missing";
  $("shown").hidden = which !== "shown";
  $("board").classList.toggle("has-poll", which !== "empty");
}

async function open(id) {
  stopWatching();
  current = null;
  if (!id) { state("empty"); return; }
  let data;
  try {
    data = await api("GET", `/v1/polls/${encodeURIComponent(id)}`);
  } catch (err) {
    // An unknown poll replaces whatever was shown: no question, no bars, no "connecting".
    $("missing").textContent = err.status === 404 ? `There is no poll with the id “${id}”.` : err.message;
    state("missing");
    return;
  }
  current = { poll: data.poll, source: null, timer: null, sequence: -1 };
  state("shown");
  $("question").textContent = data.poll.question;
  $("status").textContent = data.poll.status === "POLL_STATUS_CLOSED" ? "closed" : "open";
  $("status").className = data.poll.status === "POLL_STATUS_CLOSED" ? "badge bad" : "badge ok";
  $("mode").textContent = "connecting…";
  $("vote-error").textContent = "";
  $("bars").classList.remove("closed");
  $("bars").replaceChildren(...data.poll.options.map((option) => {
    const index = option.index || 0;
    const label = el("span", { class: "label", id: `option-${index}`, text: option.text });
    return el("li", { "data-index": String(index) }, label,
      el("div", { class: "track", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
                  "aria-labelledby": `option-${index}` }, el("div", { class: "fill" })),
      el("span", { class: "tally" }, el("span", { class: "count", text: "0" }), el("span", { class: "pct", text: "0%" })),
      el("button", { type: "button", "aria-label": `Vote for ${option.text}`, text: "Vote", onclick: () => vote(index) }));
  }));
  showCloser();
  render(data.results || {}, (data.results || {}).final);
  if (data.poll.status !== "POLL_STATUS_CLOSED") watch();
}

window.Agora.onUser((user) => {
  me = user;
  $("owned-label").textContent = user ? `I (${user.userName}) can close it early` : "I want to close it early myself (needs sign-in)";
  $("owned").checked = !!user;
  showCloser();
});
window.addEventListener("hashchange", () => open(location.hash.slice(1)));
loadPolls();
open(location.hash.slice(1));
