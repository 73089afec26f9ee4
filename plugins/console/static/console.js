// voxpipe browser console: the page's side of plugins/console/protocol.ts.
// Plain JavaScript served as is (no build step); uPlot comes from /vendor/uplot.js (the global `uPlot`).

const $ = (sel) => document.querySelector(sel);
const token = new URLSearchParams(location.search).get("token");
const withToken = (
  path,
) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);

// ---- connection ------------------------------------------------------------------------------

let ws;
let nextReq = 1;
const pending = new Map();

function connect() {
  setConn("connecting", "connecting…");
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${withToken("/ws")}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => setConn("open", "connected");
  ws.onclose = () => {
    setConn("closed", "disconnected — retrying");
    for (const p of pending.values()) p.reject(new Error("the connection to the console was lost"));
    pending.clear();
    setTimeout(connect, 1000);
  };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") onMessage(JSON.parse(e.data));
    else onAudio(e.data);
  };
}

function setConn(state, text) {
  const el = $("#conn");
  el.dataset.state = state;
  el.textContent = text;
}

function request(op, fields = {}) {
  return new Promise((resolve, reject) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected to the console"));
      return;
    }
    const req = nextReq++;
    pending.set(req, { resolve, reject });
    ws.send(JSON.stringify({ op, req, ...fields }));
  });
}

function onMessage(m) {
  switch (m.type) {
    case "hello":
      $("#auto-answer").checked = m.autoAnswer;
      $("#auto-answer").disabled = !m.decideIncoming;
      renderFiles(m.files);
      sendPage();
      if (selectedId) request("select", { id: selectedId }).catch(() => select(null));
      break;
    case "reply": {
      const p = pending.get(m.req);
      if (!p) break;
      pending.delete(m.req);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
      break;
    }
    case "calls":
      renderTable(m);
      break;
    case "incoming":
      renderIncoming(m);
      break;
    case "event":
      onCallEvent(m.event);
      break;
    case "selected":
      onSelected(m);
      break;
    case "sample":
      if (m.id === selectedId) addSample(m.sample);
      break;
    case "ladder":
      if (m.id === selectedId) addLadder(m.entry);
      break;
    case "log":
      if (m.id === selectedId) addLogs(m.entries);
      break;
    case "audio":
      onAudioState(m);
      break;
    case "settings":
      $("#auto-answer").checked = m.autoAnswer;
      break;
    case "record":
      if (m.error && m.id === selectedId) alertBox(new Error(m.error));
      break;
  }
}

// ---- time and text helpers ---------------------------------------------------------------------

const fmtClock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
function fmtDuration(s) {
  if (!(s >= 0)) return "";
  const m = Math.floor(s / 60), r = Math.floor(s % 60);
  return `${m}:${String(r).padStart(2, "0")}`;
}
function callTime(c) {
  if (c.answeredAt) return fmtDuration(((c.endedAt ?? Date.now()) - c.answeredAt) / 1000);
  return c.state === "ended" ? "—" : fmtDuration((Date.now() - c.startedAt) / 1000);
}
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
function showError(where, e) {
  const box = $(where);
  box.hidden = false;
  box.textContent = e instanceof Error ? e.message : String(e);
}

// ---- caller panel ------------------------------------------------------------------------------

let fileOk = null; // the probed file of the selection, or null
let callerCall = null; // id of the call this page placed
const stateText = {
  dialing: "INVITE sent, waiting for an answer",
  ringing: "Ringing",
  answered: "Answered",
  ended: "Ended",
};

function renderFiles(files, choose) {
  const sel = $("#file-select");
  const current = choose ?? sel.value;
  sel.replaceChildren(el("option", { value: "", textContent: "— choose a file —" }));
  for (const src of ["library", "upload"]) {
    const list = files.filter((f) => f.source === src);
    if (!list.length) continue;
    const group = el("optgroup", { label: src === "library" ? "library" : "uploaded" });
    for (const f of list) group.append(el("option", { value: f.file, textContent: f.name }));
    sel.append(group);
  }
  if ([...sel.options].some((o) => o.value === current)) sel.value = current;
}

function fileMessage(state, text) {
  const m = $("#file-message");
  m.dataset.state = state;
  m.textContent = text;
}

function describeFile(f) {
  return `${f.name}: ${f.format}, ${f.seconds.toFixed(1)} s — ready to play`;
}

async function chooseFile() {
  const file = $("#file-select").value;
  fileOk = null;
  if (!file) return fileMessage("none", "No file chosen.");
  fileMessage("checking", `Checking ${file}…`);
  try {
    const r = await request("probe", { file });
    if ($("#file-select").value !== file) return;
    fileOk = r.file;
    fileMessage("ok", describeFile(r.file));
  } catch (e) {
    fileMessage("error", e.message);
  }
}

async function uploadFile() {
  const input = $("#upload");
  const f = input.files[0];
  input.value = "";
  if (!f) return;
  fileOk = null;
  fileMessage("checking", `Uploading ${f.name} (${(f.size / 1024).toFixed(0)} KB)…`);
  try {
    const res = await fetch(withToken(`/api/upload?name=${encodeURIComponent(f.name)}`), { method: "POST", body: f });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ?? `upload failed: HTTP ${res.status}`);
    const list = await request("files");
    renderFiles(list.files, body.file.file);
    fileOk = body.file;
    fileMessage("ok", describeFile(body.file));
  } catch (e) {
    $("#file-select").value = "";
    fileMessage("error", e.message);
  }
}

async function startCall() {
  $("#caller-error").hidden = true;
  if (!fileOk) {
    showError("#caller-error", "Choose an audio file the console can play before starting a call.");
    return;
  }
  const target = $("#target").value.trim();
  if (!target) {
    showError("#caller-error", "Type the SIP URI to call, e.g. sip:bob@127.0.0.1:5062.");
    return;
  }
  $("#start").disabled = true;
  $("#caller-timeline").replaceChildren();
  try {
    const r = await request("dial", { target, file: fileOk.file, loop: $("#loop").checked });
    callerCall = r.call.id;
    localStorage.setItem("voxpipe.target", target);
    timeline(`calling ${target} with ${r.file.name}`);
    for (const entry of r.ladder) callerMessage(entry);
    setCallerState(r.call);
    select(r.call.id);
  } catch (e) {
    showError("#caller-error", e);
    $("#start").disabled = false;
  }
}

function timeline(text, time = Date.now()) {
  const list = $("#caller-timeline");
  list.append(el("li", {}, el("span", { className: "t", textContent: fmtClock(time) }), text));
  list.scrollTop = list.scrollHeight;
}

function callerMessage(entry) {
  const sent = entry.direction === "sent";
  let text = `${entry.label} ${sent ? "sent" : "received"}`;
  if (entry.label === "INVITE" && sent) text = `INVITE sent to ${entry.remote ?? "the peer"}`;
  if (entry.sdp) text += " (SDP)";
  if (entry.retransmission) text += " (retransmission)";
  timeline(text, entry.t);
}

function setCallerState(call) {
  const box = $("#caller-state");
  box.dataset.state = call.state;
  box.dataset.id = call.id;
  let text = stateText[call.state];
  if (call.state === "answered" && call.codec) text += ` — ${call.codec}`;
  if (call.state === "ended") text += ` — ${call.reason ?? "no reason given"}`;
  box.textContent = text;
  $("#end").disabled = call.state === "ended";
  $("#start").disabled = call.state !== "ended";
}

function onCallEvent(e) {
  if (e.id === callerCall) {
    if (e.type === "message") {
      callerMessage({ t: e.time, ...e.detail });
    } else if (e.type === "answered") {
      timeline(`answered${e.call.codec ? ` (${e.call.codec})` : ""}`, e.time);
    } else if (e.type === "ended") {
      timeline(`ended: ${e.call.reason ?? "no reason given"}`, e.time);
    }
    setCallerState(e.call);
  }
  if (e.id === selectedId) setSelectedCall(e.call);
}

// ---- callee panel ------------------------------------------------------------------------------

function act(op, id, fields = {}) {
  return request(op, { id, ...fields }).catch((e) => alertBox(e));
}
function alertBox(e) {
  const box = $("#selected-reason");
  box.textContent = e.message;
  box.classList.add("error");
  setTimeout(() => box.classList.remove("error"), 4000);
}

function renderIncoming(m) {
  const list = $("#incoming");
  if (!m.calls.length) {
    list.replaceChildren(el("li", { className: "empty", textContent: "No incoming call." }));
  } else {
    list.replaceChildren(...m.calls.map((c) => {
      const li = el("li", { dataset: { id: c.id, state: c.state } });
      li.append(
        el("span", { className: "badge", dataset: { state: c.state }, textContent: c.state }),
        el("span", { className: "who", textContent: c.remote, title: c.id }),
      );
      if (c.state === "ringing") {
        li.append(
          el("button", { textContent: "Answer", className: "answer", onclick: () => act("answer", c.id) }),
          el("button", { textContent: "Reject", className: "danger reject", onclick: () => act("reject", c.id) }),
        );
      } else if (c.state === "answered") {
        const playing = audio.id === c.id && (audio.state === "playing" || audio.state === "waiting");
        li.append(
          el("button", {
            textContent: playing ? "Pause" : "Play",
            className: playing ? "pause secondary" : "play",
            onclick: () => (playing ? pause(c.id) : play(c.id)),
          }),
          el("button", { textContent: "Hang up", className: "danger hangup", onclick: () => act("hangup", c.id) }),
          el("button", { textContent: "Show", className: "secondary show", onclick: () => select(c.id) }),
        );
      }
      return li;
    }));
  }
  const more = $("#incoming-more");
  more.hidden = !m.more;
  more.textContent = m.more ? `and ${m.more} more (see the table)` : "";
  lastIncoming = m;
}
let lastIncoming = { calls: [], more: 0 };

// ---- audio ---------------------------------------------------------------------------------------

const audio = { ctx: null, node: null, id: null, state: "idle", received: 0, played: 0, buffered: 0, underruns: 0 };

async function ensureAudio() {
  if (!audio.ctx) {
    audio.ctx = new AudioContext({ latencyHint: "interactive" });
    await audio.ctx.audioWorklet.addModule("/audio_worklet.js");
    audio.node = new AudioWorkletNode(audio.ctx, "pcm-player", { outputChannelCount: [1] });
    audio.node.port.onmessage = (e) => {
      audio.played = e.data.played;
      audio.buffered = e.data.buffered;
      audio.underruns = e.data.underruns;
      renderAudio();
    };
    audio.node.connect(audio.ctx.destination);
  }
  if (audio.ctx.state !== "running") await audio.ctx.resume();
}

async function play(id) {
  try {
    await ensureAudio();
  } catch (e) {
    alertBox(new Error(`this browser cannot play audio: ${e.message}`));
  }
  audio.node?.port.postMessage({ reset: true });
  try {
    await request("play", { id });
    audio.id = id;
  } catch (e) {
    alertBox(e);
  }
}

function pause(id) {
  return act("pause", id);
}

function onAudioState(m) {
  audio.id = m.id;
  audio.state = m.state;
  if (m.sampleRate) audio.rate = m.sampleRate;
  if (m.state !== "playing" && m.state !== "waiting") audio.node?.port.postMessage({ reset: true });
  renderAudio();
  renderIncoming(lastIncoming);
  if (audio.id === selectedId) renderSelectedButtons();
}

function onAudio(buf) {
  const v = new DataView(buf);
  if (v.getUint8(0) !== 1) return;
  const channels = v.getUint8(1), rate = v.getUint32(4, true);
  const n = (buf.byteLength - 8) / 2 / channels;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < channels; c++) s += v.getInt16(8 + (i * channels + c) * 2, true);
    out[i] = s / channels / 32768;
  }
  audio.received += n;
  audio.node?.port.postMessage({ rate, samples: out }, [out.buffer]);
  if (audio.received % 8000 < n) renderAudio();
}

function renderAudio() {
  const box = $("#audio-status");
  box.dataset.state = audio.state;
  box.dataset.id = audio.id ?? "";
  box.dataset.received = String(audio.received);
  box.dataset.played = String(audio.played);
  const what = {
    idle: "not playing",
    waiting: "waiting for the call's audio",
    playing: "playing",
    paused: "paused",
    ended: "the call's audio ended",
  }[audio.state] ?? audio.state;
  const rate = audio.rate ?? 8000;
  box.textContent = audio.id
    ? `Audio of ${audio.id}: ${what} — received ${(audio.received / rate).toFixed(1)} s, ` +
      `buffered ${Math.round(audio.buffered * 1000)} ms, ${audio.underruns} underruns`
    : "Audio: not playing.";
}

// ---- call table ------------------------------------------------------------------------------

const view = { page: 0, size: 10, filter: "all", pages: 1 };

function sendPage() {
  request("page", { page: view.page, size: view.size, filter: view.filter }).catch(() => {});
}

function renderTable(m) {
  Object.assign(view, { page: m.page, pages: m.pages, size: m.pageSize, filter: m.filter });
  const c = m.counts;
  $("#counts").textContent = `${
    c.total - c.ended
  } active (${c.dialing} dialing, ${c.ringing} ringing, ${c.answered} answered), ${c.ended} ended`;
  $("#page-info").textContent = `page ${m.page + 1} of ${m.pages} (${m.matching} calls)`;
  $("#prev-page").disabled = m.page === 0;
  $("#next-page").disabled = m.page >= m.pages - 1;
  const body = $("#calls tbody");
  if (!m.rows.length) {
    body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: 12, textContent: "No call." })));
    return;
  }
  body.replaceChildren(...m.rows.map((r) => {
    const tr = el(
      "tr",
      {
        dataset: { id: r.id, state: r.state },
        className: r.id === selectedId ? "selected" : "",
        onclick: () => select(r.id),
      },
      el("td", { textContent: r.id.length > 18 ? `${r.id.slice(0, 16)}…` : r.id, title: r.id }),
      el("td", { textContent: r.direction === "in" ? "in" : "out" }),
      el(
        "td",
        {},
        el("span", {
          className: "badge",
          dataset: { state: r.state },
          textContent: r.state + (r.recording ? " ●" : ""),
        }),
      ),
      el("td", { className: "peer", textContent: r.remote, title: r.remote }),
      el("td", { textContent: r.codec ?? "" }),
      el("td", { textContent: callTime(r) }),
      el("td", { textContent: r.sent }),
      el("td", { textContent: r.received }),
      el("td", { textContent: r.lossPct.toFixed(1) }),
      el("td", { textContent: r.jitterMs.toFixed(1) }),
      el("td", { textContent: r.rttMs !== undefined ? r.rttMs.toFixed(1) : "" }),
      el("td", { className: "reason", textContent: r.reason ?? "", title: r.reason ?? "" }),
    );
    return tr;
  }));
  const sel = m.rows.find((r) => r.id === selectedId);
  if (sel) setSelectedCall(sel);
}

// ---- selected call: charts, ladder, logs -----------------------------------------------------

let selectedId = null;
let selectedCall = null;
const HISTORY = 300;

const CHARTS = [
  { id: "chart-packets", series: [["sent", "sendRate", "#2563eb"], ["received", "recvRate", "#16a34a"]] },
  {
    id: "chart-loss",
    series: [["received, last s", "lossPct", "#dc2626"], ["received, call", "lossPctCall", "#f59e0b"], [
      "peer (RTCP)",
      "remoteLossPct",
      "#7c3aed",
    ]],
  },
  { id: "chart-jitter", series: [["received", "jitterMs", "#0891b2"], ["peer (RTCP)", "remoteJitterMs", "#7c3aed"]] },
  { id: "chart-rtt", series: [["RTT", "rttMs", "#0f766e"]] },
  { id: "chart-delay", series: [["p50", "delayP50", "#2563eb"], ["p95", "delayP95", "#93c5fd"]] },
  { id: "chart-conceal", series: [["concealed", "concealedRate", "#db2777"]] },
];
const chartData = { t: [], samples: [] };

function makeCharts() {
  for (const c of CHARTS) {
    const box = document.getElementById(c.id);
    const width = Math.max(240, box.clientWidth - 14);
    c.plot = new uPlot(
      {
        width,
        height: 150,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true },
          y: { range: (_u, min, max) => [Math.min(0, min ?? 0), Math.max(1, (max ?? 1) * 1.1)] },
        },
        axes: [{ space: 60 }, { size: 44 }],
        series: [{}, ...c.series.map(([label, , stroke]) => ({ label, stroke, width: 1.5, spanGaps: false }))],
      },
      [[], ...c.series.map(() => [])],
      box,
    );
    box.dataset.points = "0";
  }
  addEventListener("resize", () => {
    for (const c of CHARTS) {
      c.plot.setSize({ width: Math.max(240, document.getElementById(c.id).clientWidth - 14), height: 150 });
    }
  });
}

function redrawCharts() {
  const s = chartData.samples;
  const xs = s.map((x) => x.t / 1000);
  for (const c of CHARTS) {
    c.plot.setData([xs, ...c.series.map(([, key]) => s.map((x) => x[key]))]);
    const box = document.getElementById(c.id);
    box.dataset.points = String(s.length);
    const last = s[s.length - 1];
    box.querySelector(".latest").textContent = last
      ? c.series.map(([label, key]) => `${label} ${last[key] === null ? "—" : last[key]}`).join(" · ")
      : "";
    if (last) box.dataset.last = JSON.stringify(Object.fromEntries(c.series.map(([, key]) => [key, last[key]])));
  }
}

function addSample(sample) {
  chartData.samples.push(sample);
  if (chartData.samples.length > HISTORY) chartData.samples.shift();
  redrawCharts();
}

function select(id) {
  selectedId = id;
  $("#selected").dataset.id = id ?? "";
  for (const tr of document.querySelectorAll("#calls tbody tr")) tr.classList.toggle("selected", tr.dataset.id === id);
  if (id) request("select", { id }).catch((e) => alertBox(e));
  else onSelected({ id: null, call: null, history: [], ladder: [], logs: [] });
}

function onSelected(m) {
  if (m.id !== selectedId) return;
  chartData.samples = m.history.slice(-HISTORY);
  redrawCharts();
  ladder.entries = [];
  renderLadder();
  for (const e of m.ladder) addLadder(e, false);
  renderLadder();
  logLines.length = 0;
  $("#logs").replaceChildren();
  addLogs(m.logs);
  if (m.call) setSelectedCall(m.call);
  else {
    selectedCall = null;
    $("#selected-title").textContent = "No call selected";
    $("#selected-state").textContent = "";
    $("#selected-reason").textContent = "";
    renderSelectedButtons();
  }
}

function setSelectedCall(c) {
  selectedCall = c;
  const box = $("#selected");
  box.dataset.state = c.state;
  $("#selected-title").textContent = `${c.direction === "in" ? "From" : "To"} ${c.remote}`;
  $("#selected-title").title = c.id;
  const badge = $("#selected-state");
  badge.dataset.state = c.state;
  badge.textContent = c.state + (c.codec ? ` · ${c.codec}` : "") + (c.recording ? " · recording" : "");
  $("#selected-reason").textContent = c.state === "ended"
    ? `Ended: ${c.reason ?? "no reason given"}`
    : `Call ${c.id}, started ${fmtClock(c.startedAt)}`;
  renderSelectedButtons();
}

function renderSelectedButtons() {
  const c = selectedCall;
  const answered = c?.state === "answered";
  const playing = c && audio.id === c.id && (audio.state === "playing" || audio.state === "waiting");
  $("#sel-answer").hidden = $("#sel-reject").hidden = !(c && c.direction === "in" && c.state === "ringing");
  $("#sel-play").disabled = !answered || playing;
  $("#sel-pause").disabled = !playing;
  $("#sel-record").disabled = !answered;
  $("#sel-record").textContent = c?.recording ? "Stop recording" : "Record";
  $("#sel-hangup").disabled = !c || c.state === "ended";
}

// The ladder: our side on the left, the peer on the right, one arrow per message.
const ladder = { entries: [] };
function addLadder(entry, render = true) {
  ladder.entries.push(entry);
  if (ladder.entries.length > 200) ladder.entries.shift();
  if (render) renderLadder();
}
function renderLadder() {
  const box = $("#ladder");
  const list = ladder.entries;
  box.dataset.count = String(list.length);
  if (!list.length) {
    box.replaceChildren(el("p", { className: "empty", textContent: "No SIP message." }));
    return;
  }
  const NS = "http://www.w3.org/2000/svg";
  const W = 540, L = 120, R = 430, ROW = 26, TOP = 34;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", String(W));
  svg.setAttribute("height", String(TOP + list.length * ROW + 10));
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  const defs = add("defs", {});
  const marker = document.createElementNS(NS, "marker");
  for (
    const [k, v] of Object.entries({
      id: "arrow",
      viewBox: "0 0 10 10",
      refX: 9,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: "auto-start-reverse",
    })
  ) {
    marker.setAttribute(k, String(v));
  }
  const path = document.createElementNS(NS, "path");
  path.setAttribute("d", "M 0 0 L 10 5 L 0 10 z");
  path.setAttribute("fill", "#334155");
  marker.append(path);
  defs.append(marker);
  const peer = list.find((e) => e.remote)?.remote ?? "peer";
  add("text", { x: L, y: 16, "text-anchor": "middle", "font-weight": "bold" }, "voxpipe");
  add("text", { x: R, y: 16, "text-anchor": "middle", "font-weight": "bold" }, peer);
  add("line", { x1: L, y1: 22, x2: L, y2: TOP + list.length * ROW, stroke: "#94a3b8" });
  add("line", { x1: R, y1: 22, x2: R, y2: TOP + list.length * ROW, stroke: "#94a3b8" });
  const t0 = list[0].t;
  list.forEach((e, i) => {
    const y = TOP + i * ROW + 14;
    const sent = e.direction === "sent";
    const g = add("g", { class: "msg", "data-label": e.label, "data-direction": e.direction });
    const line = document.createElementNS(NS, "line");
    for (
      const [k, v] of Object.entries({
        x1: sent ? L : R,
        y1: y,
        x2: sent ? R : L,
        y2: y,
        stroke: "#334155",
        "marker-end": "url(#arrow)",
      })
    ) {
      line.setAttribute(k, String(v));
    }
    if (e.retransmission) line.setAttribute("stroke-dasharray", "4 3");
    g.append(line);
    const label = document.createElementNS(NS, "text");
    label.setAttribute("x", String((L + R) / 2));
    label.setAttribute("y", String(y - 4));
    label.setAttribute("text-anchor", "middle");
    label.textContent = e.label + (e.sdp ? " (SDP)" : "") + (e.retransmission ? " ↻" : "");
    g.append(label);
    const time = document.createElementNS(NS, "text");
    time.setAttribute("x", "4");
    time.setAttribute("y", String(y + 4));
    time.setAttribute("fill", "#64748b");
    time.textContent = `+${((e.t - t0) / 1000).toFixed(3)}s`;
    g.append(time);
  });
  const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.replaceChildren(svg);
  if (stick) box.scrollTop = box.scrollHeight;
}

// Log lines of the selected call, filtered by level on the page.
const RANK = { debug: 10, info: 20, warn: 30, error: 40 };
const logLines = [];
function addLogs(entries) {
  for (const e of entries) {
    logLines.push(e);
    if (logLines.length > 500) logLines.shift();
  }
  renderLogs();
}
function renderLogs() {
  const min = RANK[$("#log-level").value] ?? 0;
  const box = $("#logs");
  const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  const shown = logLines.filter((e) => (RANK[e.level] ?? 0) >= min);
  box.replaceChildren(...shown.map((e) => el("div", { className: e.level, textContent: e.line })));
  box.dataset.count = String(shown.length);
  if (stick) box.scrollTop = box.scrollHeight;
}

// ---- wiring ------------------------------------------------------------------------------------

function wire() {
  $("#file-select").addEventListener("change", chooseFile);
  $("#upload").addEventListener("change", uploadFile);
  $("#start").addEventListener("click", startCall);
  $("#end").addEventListener("click", () => {
    if (callerCall) act("hangup", callerCall);
  });
  $("#target").value = localStorage.getItem("voxpipe.target") ?? "";
  $("#auto-answer").addEventListener("change", (e) => request("auto_answer", { on: e.target.checked }).catch(alertBox));
  $("#filter").addEventListener("change", (e) => {
    view.filter = e.target.value;
    view.page = 0;
    sendPage();
  });
  $("#page-size").addEventListener("change", (e) => {
    view.size = Number(e.target.value);
    view.page = 0;
    sendPage();
  });
  $("#prev-page").addEventListener("click", () => {
    view.page = Math.max(0, view.page - 1);
    sendPage();
  });
  $("#next-page").addEventListener("click", () => {
    view.page = Math.min(view.pages - 1, view.page + 1);
    sendPage();
  });
  $("#sel-answer").addEventListener("click", () => selectedCall && act("answer", selectedCall.id));
  $("#sel-reject").addEventListener("click", () => selectedCall && act("reject", selectedCall.id));
  $("#sel-play").addEventListener("click", () => selectedCall && play(selectedCall.id));
  $("#sel-pause").addEventListener("click", () => selectedCall && pause(selectedCall.id));
  $("#sel-record").addEventListener("click", async () => {
    if (!selectedCall) return;
    const on = !selectedCall.recording;
    try {
      const r = await request("record", { id: selectedCall.id, on });
      $("#selected-reason").textContent = r.recording ? `Recording to ${r.path}` : `Recorded to ${r.path}`;
    } catch (e) {
      alertBox(e);
    }
  });
  $("#sel-hangup").addEventListener("click", () => selectedCall && act("hangup", selectedCall.id));
  $("#log-level").addEventListener("change", renderLogs);
}

makeCharts();
wire();
connect();
