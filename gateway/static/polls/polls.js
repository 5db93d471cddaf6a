// The live poll board: create a poll, vote, watch the bars move. Plain JS over the bridge's
// REST routes (/v1/polls...) and the
// WatchResults stream as Server-Sent Events (/v1/polls/{id}:watch).
"use strict";

const $ = (id) => document.getElementById(id);
const voterKey = localStorage.getItem("agora.voterKey") || (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
localStorage.setItem("agora.voterKey", voterKey);

let current = null;   // {poll, source, timer, sequence}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.message || `${response.status} ${response.statusText}`);
  return data;
}

async function loadPolls() {
  try {
    const data = await api("GET", "/v1/polls?status=POLL_STATUS_OPEN&pageSize=20");
    const list = $("polls");
    list.replaceChildren(...(data.polls || []).map((poll) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `#${poll.id}`;
      a.textContent = poll.question;
      li.append(a);
      return li;
    }));
  } catch (err) {
    $("polls").textContent = `cannot list polls: ${err.message}`;
  }
}

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("create-error").textContent = "";
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
    row.querySelector(".count").textContent = votes;
    row.querySelector(".fill").style.width = total ? `${(100 * votes) / total}%` : "0";
  }
  if (final || results.final) closed();
}

function closed() {
  $("status").textContent = "closed (final results)";
  $("bars").classList.add("closed");
  document.querySelectorAll("#bars button").forEach((b) => (b.disabled = true));
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
  try {
    if (poll.votePolicy === "VOTE_POLICY_ONE_PER_VOTER_KEY") {
      await api("POST", `/v1/polls/${encodeURIComponent(poll.id)}/votes`, { option: index, voterKey });
    } else {
      await api("POST", `/v1/polls/${encodeURIComponent(poll.id)}/votes`, { option: index });
    }
  } catch (err) {
    $("vote-error").textContent = err.message;
  }
}

async function open(id) {
  stopWatching();
  current = null;
  if (!id) { $("board").hidden = true; return; }
  let data;
  try {
    data = await api("GET", `/v1/polls/${encodeURIComponent(id)}`);
  } catch (err) {
    $("board").hidden = false;
    $("question").textContent = "";
    $("vote-error").textContent = err.message;
    return;
  }
  current = { poll: data.poll, source: null, timer: null, sequence: -1 };
  $("board").hidden = false;
  $("question").textContent = data.poll.question;
  $("status").textContent = data.poll.status === "POLL_STATUS_CLOSED" ? "closed" : "open";
  $("vote-error").textContent = "";
  $("bars").classList.remove("closed");
  $("bars").replaceChildren(...data.poll.options.map((option) => {
    const li = document.createElement("li");
    li.dataset.index = option.index || 0;
    li.innerHTML = '<span class="label"></span><div class="track"><div class="fill"></div></div><span class="count">0</span><button type="button">Vote</button>';
    li.querySelector(".label").textContent = option.text;
    li.querySelector("button").addEventListener("click", () => vote(option.index || 0));
    return li;
  }));
  render(data.results || {}, (data.results || {}).final);
  if (data.poll.status !== "POLL_STATUS_CLOSED") watch();
}

window.addEventListener("hashchange", () => open(location.hash.slice(1)));
loadPolls();
open(location.hash.slice(1));
