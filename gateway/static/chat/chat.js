// The chat page: history over GET /v1/rooms/{room}/messages, live entries over the Chat WebSocket
// (/v1/rooms/{room}/chat), presence from GetRoom. Everything people type is shown with textContent:
// never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  join: $("join"), name: $("name"), room: $("room"), status: $("status"), log: $("log"),
  say: $("say"), text: $("text"), file: $("file"), send: $("send"), members: $("members"),
  create: $("create"), title: $("title"),
};
let ws = null;
let room = "general";
let lastSeq = 0;
let wanted = false;   // reconnect when the socket drops
let retryDelay = 500;

function setStatus(text) { ui.status.textContent = text; }

function line(cls, parts) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  for (const part of parts) li.append(part);
  ui.log.append(li);
  ui.log.scrollTop = ui.log.scrollHeight;
  return li;
}

function span(cls, text) {
  const s = document.createElement("span");
  s.className = cls;
  s.textContent = text;
  return s;
}

function attachmentLink(message) {
  const a = message.attachment;
  const link = document.createElement("a");
  link.href = "#";
  link.textContent = ` [${a.filename} · ${a.contentType} · ${a.sizeBytes} bytes]`;
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    const reply = await fetch(`/v1/rooms/${encodeURIComponent(message.roomId)}/attachments/${encodeURIComponent(a.id)}`);
    if (!reply.ok) return showError((await reply.json()).message);
    const body = await reply.json();
    const bytes = Uint8Array.from(atob(body.attachment.data), (c) => c.charCodeAt(0));
    window.open(URL.createObjectURL(new Blob([bytes], { type: body.attachment.contentType })), "_blank", "noopener");
  });
  return link;
}

function render(message) {
  const seq = Number(message.sequence);
  if (seq <= lastSeq) return;  // already shown (history and live overlap)
  lastSeq = seq;
  const when = new Date(message.sentAt).toLocaleTimeString();
  if (message.kind === "MESSAGE_KIND_JOIN" || message.kind === "MESSAGE_KIND_LEAVE") {
    const verb = message.kind === "MESSAGE_KIND_JOIN" ? "joined" : "left";
    line("presence", [`${when} ${message.username} ${verb}`]);
    refreshMembers();
    return;
  }
  const parts = [span("time", when + " "), span("who", message.username), span("text", message.text)];
  if (message.attachment && message.attachment.id) parts.push(attachmentLink(message));
  line("message", parts).dataset.sequence = String(seq);
}

function showError(text) { line("error", [text]); }

async function refreshMembers() {
  const reply = await fetch(`/v1/rooms/${encodeURIComponent(room)}`);
  if (!reply.ok) return;
  const body = await reply.json();
  ui.members.replaceChildren(...(body.members || []).map((m) => {
    const li = document.createElement("li");
    li.textContent = m.connections > 1 ? `${m.username} (${m.connections} tabs)` : m.username;
    return li;
  }));
}

async function loadRooms() {
  const reply = await fetch("/v1/rooms?page_size=100");
  const rooms = reply.ok ? (await reply.json()).rooms || [] : [{ id: "general", title: "General" }];
  const current = ui.room.value || new URLSearchParams(location.hash.slice(1)).get("room") || "general";
  ui.room.replaceChildren(...rooms.map((r) => new Option(`${r.title} (${r.memberCount || 0})`, r.id)));
  ui.room.value = rooms.some((r) => r.id === current) ? current : "general";
}

async function loadHistory() {
  ui.log.replaceChildren();
  lastSeq = 0;
  const reply = await fetch(`/v1/rooms/${encodeURIComponent(room)}/messages?limit=50`);
  if (!reply.ok) return showError((await reply.json()).message);
  const body = await reply.json();
  for (const message of (body.messages || []).reverse()) render(message);
}

function connect() {
  const params = new URLSearchParams({ username: ui.name.value.trim() });
  if (lastSeq > 0) params.set("resume_from", String(lastSeq));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/rooms/${encodeURIComponent(room)}/chat?${params}`);
  ws = socket;
  setStatus("connecting…");
  socket.onopen = () => socket.send("{}");  // the first frame joins the room
  socket.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.joined) {
      retryDelay = 500;
      setStatus(`in ${frame.joined.room.title} as ${frame.joined.you ? frame.joined.you.username : ui.name.value}`);
      setEnabled(true);
      refreshMembers();
    } else if (frame.message) {
      render(frame.message);
    } else if (frame.rejected) {
      showError(`not sent: ${frame.rejected.message}`);
    }
  };
  socket.onclose = (event) => {
    if (ws !== socket) return;
    setEnabled(false);
    if (event.reason) showError(event.reason);
    if (!wanted || (event.code >= 4000 && event.code !== 4000 + 8 && event.code !== 4000 + 14)) {
      setStatus("disconnected");
      return;  // a refusal (bad name, no such room) is not retried; falling behind or a restart is
    }
    setStatus(`reconnecting in ${retryDelay / 1000}s…`);
    setTimeout(() => { if (wanted && ws === socket) connect(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  };
}

function setEnabled(on) { ui.text.disabled = ui.file.disabled = ui.send.disabled = !on; }

ui.join.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!ui.name.value.trim()) { ui.name.focus(); return; }
  localStorage.setItem("agora.chat.name", ui.name.value.trim());
  wanted = false;
  if (ws) ws.close();
  room = ui.room.value || "general";
  location.hash = `room=${encodeURIComponent(room)}`;
  await loadHistory();
  wanted = true;
  connect();
});

ui.say.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const frame = { text: ui.text.value, clientMessageId: crypto.randomUUID ? crypto.randomUUID() : String(Math.random()) };
  const file = ui.file.files[0];
  if (file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    frame.attachment = { filename: file.name, contentType: file.type, data: btoa(binary) };
  }
  if (!frame.text.trim() && !frame.attachment) return;
  ws.send(JSON.stringify(frame));
  ui.text.value = "";
  ui.file.value = "";
});

ui.create.addEventListener("submit", async (event) => {
  event.preventDefault();
  const reply = await fetch("/v1/rooms", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ title: ui.title.value }),
  });
  const body = await reply.json();
  if (!reply.ok) return showError(`cannot create the room: ${body.message}`);
  ui.title.value = "";
  await loadRooms();
  ui.room.value = body.room.id;
});

ui.name.value = localStorage.getItem("agora.chat.name") || "";
loadRooms();
