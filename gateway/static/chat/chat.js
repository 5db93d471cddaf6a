// The chat page: the room list with live member counts (one WatchRoom stream per room: a join or a
// leave re-reads that room), the history of the room (GET /v1/rooms/{room}/messages) and its live
// entries over the Chat WebSocket, resumed with `resume_from` after a reload or a dropped socket.
// The name and the room are remembered, so a reload rejoins where the person was. Everything people
// type is shown with textContent: never parsed as HTML.
"use strict";

const { api, socket, hang, el, time, uuid } = window.Agora;
const $ = (id) => document.getElementById(id);
const ui = {
  join: $("join"), name: $("name"), status: $("status"), log: $("log"), title: $("room-title"),
  say: $("say"), text: $("text"), file: $("file"), send: $("send"), members: $("members"),
  presentCount: $("present-count"), rooms: $("rooms"), create: $("create"), newTitle: $("title"),
  createHint: $("create-hint"),
};
const NAME_KEY = "agora.chat.name";
const ROOM_KEY = "agora.chat.room";
const rooms = new Map();   // id -> {room, button, count, watch}
let room = new URLSearchParams(location.hash.slice(1)).get("room") || localStorage.getItem(ROOM_KEY) || "general";
let ws = null;
let lastSeq = 0;
let wanted = false;        // reconnect when the socket drops
let retryDelay = 500;
let me = null;
let started = false;

function setStatus(text, kind) {
  ui.status.textContent = text;
  ui.status.className = `badge ${kind || "wait"}`;
}

function line(cls, parts) {
  const li = el("li", { class: cls }, ...parts);
  ui.log.append(li);
  ui.log.scrollTop = ui.log.scrollHeight;
  return li;
}

function showError(text) { line("error", [text]); }

function attachmentLink(message) {
  const a = message.attachment;
  return el("a", {
    href: "#", class: "attachment", text: `📎 ${a.filename} (${a.contentType}, ${a.sizeBytes} bytes)`,
    onclick: async (event) => {
      event.preventDefault();
      try {
        const body = await api("GET", `/v1/rooms/${encodeURIComponent(message.roomId)}/attachments/${encodeURIComponent(a.id)}`);
        const bytes = Uint8Array.from(atob(body.attachment.data), (c) => c.charCodeAt(0));
        window.open(URL.createObjectURL(new Blob([bytes], { type: body.attachment.contentType })), "_blank", "noopener");
      } catch (err) { showError(err.message); }
    },
  });
}

function render(message) {
  const seq = Number(message.sequence);
  if (seq <= lastSeq) return;  // already shown (history and live overlap)
  lastSeq = seq;
  const when = el("span", { class: "time", text: time(message.sentAt) });
  if (message.kind === "MESSAGE_KIND_JOIN" || message.kind === "MESSAGE_KIND_LEAVE") {
    const verb = message.kind === "MESSAGE_KIND_JOIN" ? "joined" : "left";
    line("presence", [when, `${message.username} ${verb}`]).dataset.sequence = String(seq);
    return;
  }
  const parts = [when, el("span", { class: "who", text: message.username }), el("span", { class: "text", text: message.text })];
  if (message.attachment && message.attachment.id) parts.push(attachmentLink(message));
  line("message", parts).dataset.sequence = String(seq);
}

// -- the room list and its live counts

function showMembers(members) {
  ui.members.replaceChildren(...members.map((m) => el("li", {},
    el("span", { text: m.username }),
    m.connections > 1 ? el("span", { class: "muted", text: `${m.connections} tabs` }) : null)));
  ui.presentCount.textContent = String(members.length);
}

function setCount(id, n) {
  const entry = rooms.get(id);
  if (!entry) return;
  entry.count.textContent = String(n);
  entry.button.setAttribute("aria-label", `${entry.room.title}, ${n} present`);
}

const asked = new Map();   // room id -> number of the latest GetRoom: an older answer never wins

async function refreshRoom(id) {
  const ticket = (asked.get(id) || 0) + 1;
  asked.set(id, ticket);
  try {
    const body = await api("GET", `/v1/rooms/${encodeURIComponent(id)}`);
    if (asked.get(id) !== ticket) return;
    const members = body.members || [];
    setCount(id, members.length);
    if (id === room) showMembers(members);
  } catch (err) {
    if (id === room) showError(err.message);
  }
}

function watchRoom(id) {
  const entry = rooms.get(id);
  entry.watch = socket(`/v1/rooms/${encodeURIComponent(id)}:watch`, {
    open: () => refreshRoom(id),   // counts that changed while this stream was away
    frame: (frame) => {
      const kind = frame.message && frame.message.kind;
      if (kind === "MESSAGE_KIND_JOIN" || kind === "MESSAGE_KIND_LEAVE") refreshRoom(id);
    },
    close: () => {
      if (rooms.get(id) === entry) setTimeout(() => { if (rooms.get(id) === entry) watchRoom(id); }, 2000);
    },
  });
}

function markCurrent() {
  for (const [id, entry] of rooms) entry.button.setAttribute("aria-current", String(id === room));
}

async function loadRooms() {
  let list;
  try {
    list = (await api("GET", "/v1/rooms?pageSize=100")).rooms || [];
  } catch (err) {
    showError(`cannot list the rooms: ${err.message}`);
    list = [{ id: "general", title: "General", memberCount: 0 }];
  }
  for (const entry of rooms.values()) hang(entry.watch);
  rooms.clear();
  ui.rooms.replaceChildren(...list.map((r) => {
    const count = el("span", { class: "count", text: String(r.memberCount || 0) });
    const button = el("button", { type: "button", "data-room": r.id, onclick: () => choose(r.id) },
      el("span", { class: "room-name", text: r.title }), count);
    rooms.set(r.id, { room: r, button, count, watch: null });
    return el("li", {}, button);
  }));
  for (const id of rooms.keys()) watchRoom(id);
  if (!rooms.has(room)) room = "general";
  markCurrent();
}

// -- joining and talking

function myName() { return me ? me.userName : ui.name.value.trim(); }

async function loadHistory() {
  ui.log.replaceChildren();
  lastSeq = 0;
  try {
    const body = await api("GET", `/v1/rooms/${encodeURIComponent(room)}/messages?limit=50`);
    for (const message of (body.messages || []).reverse()) render(message);
  } catch (err) { showError(err.message); }
}

function connect() {
  const params = new URLSearchParams();
  if (!me) params.set("username", myName());
  if (lastSeq > 0) params.set("resume_from", String(lastSeq));  // what was missed, then live
  setStatus("connecting…");
  ws = socket(`/v1/rooms/${encodeURIComponent(room)}/chat?${params}`, {
    open: (s) => s.send("{}"),
    frame: (frame) => {
      if (frame.joined) {
        retryDelay = 500;
        const who = frame.joined.you ? frame.joined.you.username : myName();
        setStatus(`joined as ${who}`, "ok");
        setEnabled(true);
        showMembers(frame.joined.members || []);
        setCount(room, (frame.joined.members || []).length);
      } else if (frame.message) {
        render(frame.message);
      } else if (frame.rejected) {
        showError(`not sent: ${frame.rejected.message}`);
      }
    },
    close: (event, s) => {
      if (ws !== s) return;
      setEnabled(false);
      if (event.reason) showError(event.reason);
      // A refusal (a bad name, no such room) is not retried; falling behind or a restart is.
      if (!wanted || (event.code >= 4000 && event.code !== 4000 + 8 && event.code !== 4000 + 14)) {
        setStatus("not connected");
        return;
      }
      setStatus(`reconnecting in ${retryDelay / 1000}s…`);
      setTimeout(() => { if (wanted && ws === s) connect(); }, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    },
  });
}

function setEnabled(on) { ui.text.disabled = ui.file.disabled = ui.send.disabled = !on; }

async function enter(id) {
  wanted = false;
  hang(ws);
  ws = null;
  setEnabled(false);
  room = rooms.has(id) ? id : "general";
  localStorage.setItem(ROOM_KEY, room);
  history.replaceState(null, "", `#room=${encodeURIComponent(room)}`);
  ui.title.textContent = rooms.has(room) ? rooms.get(room).room.title : room;
  markCurrent();
  setStatus("connecting…");   // nothing of the previous room stays on screen
  showMembers([]);
  await loadHistory();
  refreshRoom(room);
  if (!myName()) {
    setStatus("enter your name to join");
    return;
  }
  wanted = true;
  connect();
}

function choose(id) {
  if (id === room && ws) return;
  enter(id);
}

ui.join.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = myName();
  if (!name) { ui.name.focus(); return; }
  if (!me) localStorage.setItem(NAME_KEY, name);
  enter(room);
});

ui.say.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const frame = { text: ui.text.value, clientMessageId: uuid() };
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
  const title = ui.newTitle.value.trim();
  if (!title) return;
  if (!(await window.Agora.requireUser("Creating a room needs an account. Log in or create one."))) return;
  try {
    const body = await api("POST", "/v1/rooms", { title });
    ui.newTitle.value = "";
    await loadRooms();
    enter(body.room.id);
  } catch (err) {
    showError(`cannot create the room: ${err.message}`);
  }
});

window.Agora.onUser(async (user) => {
  const changed = started && (user ? user.userName : "") !== (me ? me.userName : "");
  me = user;
  ui.name.readOnly = !!user;
  ui.name.value = user ? user.userName : localStorage.getItem(NAME_KEY) || "";
  ui.createHint.hidden = !!user;
  document.getElementById("join-button").textContent = user ? "Rejoin" : "Join";
  if (!started) {
    started = true;
    await loadRooms();
    enter(room);   // rejoin after a reload: the name and the room are remembered
  } else if (changed && ws) {
    enter(room);   // the same room under the new identity
  }
});
