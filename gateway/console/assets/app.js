// Vigil control-room console. Plain JavaScript, no framework and nothing
// loaded from elsewhere (the page's CSP allows only this origin).
//
// State arrives over server-sent events (GET /api/events): a full snapshot on
// connect and after every change. Actions call the alert API with the session
// cookie; fetch from this origin sends the Origin header the API's CSRF check
// needs. Everything from the server is put in the page as text, never HTML:
// alert texts come from devices.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  const LABELS = {
    duress: "DURESS",
    duress_covert: "DURESS (covert)",
    man_down: "MAN DOWN",
    amber_overrun: "FAILED TO CHECK IN",
    arc_link_down: "ARC LINK DOWN",
    serial_port_down: "RECEIVER DOWN",
    device_offline: "DEVICE OFFLINE",
    low_battery: "LOW BATTERY",
  };
  const OUTCOME_LABELS = {
    genuine_no_harm: "Genuine: no harm",
    genuine_police_attended: "Genuine: police attended",
    genuine_injury: "Genuine: injury",
    false_alarm: "False alarm",
    test: "Test",
  };

  const state = {
    me: null, // {user, role}
    es: null, // the EventSource
    offset: 0, // server time minus this machine's time, ms
    outcomes: [],
    snap: null,
    seen: new Set(), // alert ids already announced
    first: true, // the first snapshot after login announces nothing old
    muted: false,
    audio: null,
    lastMessage: 0,
    incident: null, // id shown in the incident view
    incidentSig: null, // its alert as last seen in a snapshot
  };

  const serverNow = () => Date.now() + state.offset;

  function noteServerTime(data) {
    if (data && data.now) state.offset = Date.parse(data.now) - Date.now();
    state.lastMessage = Date.now();
  }

  // ---- formatting ----
  function ago(iso) {
    if (!iso) return "";
    let s = Math.max(0, Math.floor((serverNow() - Date.parse(iso)) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h > 0 ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
  }
  function left(iso) {
    const s = Math.floor((Date.parse(iso) - serverNow()) / 1000);
    if (s < 0) return `overdue by ${ago(iso)}`;
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }
  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleString("en-GB", { hour12: false });
  }
  // The timeline shows milliseconds: response times are data.
  function clockMs(iso) {
    return new Date(iso).toLocaleString("en-GB", { hour12: false, fractionalSecondDigits: 3 });
  }
  const label = (a) => LABELS[a.event] || a.event.replace(/_/g, " ").toUpperCase();
  const who = (a) => a.wearer || (a.verified ? a.device || "" : `UNVERIFIED device ${a.device || ""}`);
  function where(a) {
    const parts = [];
    if (a.zone) parts.push(`zone ${a.zone}`);
    if (a.location) {
      let p = `${a.location.lat.toFixed(5)}, ${a.location.lon.toFixed(5)}`;
      if (a.location.acc_m) p += ` (±${Math.round(a.location.acc_m)} m)`;
      parts.push(p);
    }
    if (a.note) parts.push(a.note);
    return parts.join(" · ") || "not reported";
  }
  function delivery(a) {
    if (a.delivered_at) return { text: `ACKed by ${a.delivered_via} at ${clock(a.delivered_at)}`, cls: "ok" };
    if (!a.routes || a.routes.length === 0) return { text: "no receiver route (console only)", cls: "warn" };
    const tries = (a.deliveries || []).filter((d) => a.routes.includes(d.route));
    const err = tries.map((d) => d.last_error).find(Boolean);
    return { text: "NOT YET ACKed by any receiver" + (err ? `: ${err}` : ""), cls: "warn" };
  }
  function stateText(a) {
    if (a.state === "acknowledged") return `acknowledged by ${a.acknowledged_by} at ${clock(a.acknowledged_at)}`;
    return a.state;
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function facts(dl, rows) {
    dl.replaceChildren();
    for (const [k, v, cls] of rows) {
      if (v === "" || v == null) continue;
      dl.append(el("dt", { text: k }), el("dd", { text: v, class: cls || "" }));
    }
  }

  // ---- sound ----
  function unlockAudio() {
    try {
      if (!state.audio) state.audio = new (window.AudioContext || window.webkitAudioContext)();
      if (state.audio.state === "suspended") state.audio.resume();
    } catch (e) {
      state.audio = null;
    }
  }
  function beep() {
    const ctx = state.audio;
    if (state.muted || !ctx || ctx.state !== "running") return;
    const t = ctx.currentTime;
    for (let i = 0; i < 3; i++) {
      const o = ctx.createOscillator(), g = ctx.createGain();
      o.type = "square";
      o.frequency.value = i % 2 ? 660 : 880;
      g.gain.setValueAtTime(0.0001, t + i * 0.3);
      g.gain.exponentialRampToValueAtTime(0.3, t + i * 0.3 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.3 + 0.25);
      o.connect(g).connect(ctx.destination);
      o.start(t + i * 0.3);
      o.stop(t + i * 0.3 + 0.26);
    }
  }
  function setMuted(m) {
    state.muted = m;
    $("sound").setAttribute("aria-pressed", String(m));
    $("sound").textContent = m ? "Sound muted" : "Sound on";
    try { localStorage.setItem("vigil.muted", m ? "1" : "0"); } catch (e) { /* private mode */ }
  }

  // ---- session ----
  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { /* 204 or not JSON */ }
    if (r.status === 401 && !(method === "POST" && path === "/api/session")) signedOut("Your session has ended. Please log in again.");
    if (!r.ok) throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
    return data;
  }

  function signedIn(me) {
    state.me = me;
    $("who-name").textContent = me.user;
    $("who-role").textContent = me.role;
    $("who").hidden = false;
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    connect();
    route();
  }

  function signedOut(msg) {
    if (state.es) state.es.close();
    state.es = null;
    state.me = null;
    state.snap = null;
    state.first = true;
    state.seen.clear();
    $("board").replaceChildren();
    $("who").hidden = true;
    $("app-view").hidden = true;
    $("link").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = msg || "";
    $("login-user").focus();
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    unlockAudio(); // the click is the gesture browsers want before sound
    const btn = ev.submitter || $("login-form").querySelector("button");
    btn.disabled = true;
    $("login-error").textContent = "";
    try {
      const me = await api("POST", "/api/session", { user: $("login-user").value, password: $("login-password").value });
      $("login-password").value = "";
      signedIn(me);
    } catch (e) {
      $("login-error").textContent = e.message;
    } finally {
      btn.disabled = false;
    }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("DELETE", "/api/session"); } catch (e) { /* signed out anyway */ }
    signedOut("You have logged out.");
  });
  $("sound").addEventListener("click", () => { unlockAudio(); setMuted(!state.muted); });
  // Any click or key unlocks sound after a reload (the session survived it).
  document.addEventListener("pointerdown", unlockAudio);
  document.addEventListener("keydown", unlockAudio);

  // ---- live stream ----
  function link(text, live) {
    const l = $("link");
    l.hidden = false;
    l.textContent = text;
    l.className = "link " + (live ? "live" : "down");
  }

  function connect() {
    if (state.es) state.es.close();
    link("Connecting…", false);
    const es = new EventSource("/api/events");
    state.es = es;
    es.addEventListener("open", () => link("● Live", true));
    es.addEventListener("config", (ev) => {
      const d = JSON.parse(ev.data);
      noteServerTime(d);
      state.outcomes = d.outcomes || [];
    });
    es.addEventListener("ping", (ev) => noteServerTime(JSON.parse(ev.data)));
    es.addEventListener("problem", (ev) => {
      const d = JSON.parse(ev.data);
      noteServerTime(d);
      $("alerts-problem").hidden = false;
      $("alerts-problem").textContent = "The gateway could not read its alerts: " + d.error;
    });
    es.addEventListener("snapshot", (ev) => {
      const d = JSON.parse(ev.data);
      noteServerTime(d);
      $("alerts-problem").hidden = true;
      render(d);
    });
    es.addEventListener("error", async () => {
      if (es !== state.es) return;
      link("Reconnecting… the board may be out of date", false);
      if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
      // Refused (401/403) or broken: find out whether we are still signed in.
      try {
        await api("GET", "/api/session");
        setTimeout(() => { if (state.es === es && state.me) connect(); }, 2000);
      } catch (e) { /* api() has shown the login form on 401 */ }
    });
  }

  // Without a message for longer than two heartbeats the stream is dead,
  // whatever the browser thinks.
  setInterval(() => {
    if (state.es && state.lastMessage && Date.now() - state.lastMessage > 35000) {
      link("No contact with the gateway: the board may be out of date", false);
    }
    tick();
  }, 1000);

  function tick() {
    for (const t of document.querySelectorAll("[data-since]")) t.textContent = ago(t.dataset.since);
    for (const t of document.querySelectorAll("[data-until]")) t.textContent = left(t.dataset.until);
  }

  // ---- rendering ----
  function render(snap) {
    state.snap = snap;
    renderBoard(snap.alerts);
    renderDevices(snap);
    if (state.incident) {
      // Re-read the incident only when its alert changed (or left the board).
      const a = snap.alerts.find((x) => x.id === state.incident);
      const sig = a ? JSON.stringify(a) : "closed";
      if (sig !== state.incidentSig) {
        if (state.incidentSig !== null) loadIncident(state.incident);
        state.incidentSig = sig;
      }
    }
    tick();
  }

  function renderBoard(alerts) {
    const board = $("board");
    const have = new Map([...board.children].map((li) => [li.dataset.id, li]));
    const fresh = [];
    alerts.forEach((a, i) => {
      let li = have.get(a.id);
      if (!li) {
        li = card(a);
        if (!state.seen.has(a.id) && !state.first) {
          fresh.push(a);
          li.classList.add("new");
        }
      }
      update(li, a);
      have.delete(a.id);
      state.seen.add(a.id);
      // Move only what is out of place: moving a card that holds the focus
      // would drop it.
      if (board.children[i] !== li) board.insertBefore(li, board.children[i] || null);
    });
    for (const li of have.values()) li.remove();
    state.first = false;

    const p1 = alerts.filter((a) => a.priority === 1);
    $("alert-count").textContent = String(alerts.length);
    $("alert-count").className = "count" + (p1.length ? " hot" : "");
    $("alerts-empty").hidden = alerts.length > 0;
    document.title = (p1.length ? `(${p1.length} P1) ` : alerts.length ? `(${alerts.length}) ` : "") + "Vigil control room";

    const newP1 = fresh.filter((a) => a.priority === 1);
    if (newP1.length) {
      $("announce").textContent = newP1.map((a) => `New ${label(a)} alert: ${who(a)} at ${a.site}.`).join(" ");
      beep();
    }
  }

  function card(a) {
    const li = el("li", { class: "alert", "data-id": a.id });
    const h = el("h3", {},
      el("span", { class: "icon", "aria-hidden": "true" }),
      el("span", { class: "label" }),
      el("span", { class: "headline" }),
      el("span", { class: "age", "aria-label": "time since raised" }));
    const dl = el("dl");
    const ack = el("button", { type: "button", "data-act": "ack", text: "Acknowledge" });
    const note = el("button", { type: "button", class: "secondary", "data-act": "note", text: "Add note" });
    const res = el("button", { type: "button", class: "secondary", "data-act": "resolve", text: "Resolve" });
    const open = el("a", { href: "#alert/" + encodeURIComponent(a.id), text: "Incident view" });
    li.append(h, dl, el("div", { class: "actions" }, ack, note, res, open));
    for (const b of [ack, note, res]) b.addEventListener("click", () => act(b.dataset.act, li.dataset.id, b));
    return li;
  }

  function update(li, a) {
    const p1 = a.priority === 1;
    li.className = `alert p${a.priority}` + (a.state === "acknowledged" ? " acked" : "") + (li.classList.contains("new") ? " new" : "");
    li.querySelector(".icon").textContent = p1 ? "⚠" : a.priority === 2 ? "◆" : "●";
    li.querySelector(".label").textContent = `P${a.priority} ${label(a)}`;
    li.querySelector(".headline").textContent = [who(a), a.site].filter(Boolean).join(" · ");
    li.querySelector(".age").dataset.since = a.raised_at;
    const d = delivery(a);
    const rows = [
      ["Wearer", who(a)],
      ["Details", a.wearer ? "" : a.text],
      ["Site", a.site],
      ["Location", where(a)],
      ["Raised", clock(a.raised_at)],
      ["Receiver", d.text, d.cls],
      ["State", stateText(a)],
      ["Battery", a.battery != null ? `${a.battery}%` : ""],
    ];
    if (a.cancelled_at) rows.push(["Wearer cancel", `pressed at ${clock(a.cancelled_at)}: a cancel may be forced, still resolve it`, "warn"]);
    if (!a.verified || (a.warnings && a.warnings.length)) rows.push(["Warning", (a.warnings || ["unverified device"]).join("; "), "warn"]);
    if (a.notes && a.notes.length) {
      const n = a.notes[a.notes.length - 1];
      rows.push(["Last note", `${n.by}: ${n.text}`]);
    }
    facts(li.querySelector("dl"), rows);
    li.querySelector('[data-act="ack"]').hidden = a.state === "acknowledged";
    li.setAttribute("aria-label", `P${a.priority} ${label(a)}: ${who(a)} at ${a.site}, ${a.state}`);
  }

  function renderDevices(snap) {
    const amber = snap.amber || [];
    $("amber-empty").hidden = amber.length > 0;
    $("amber").hidden = amber.length === 0;
    $("amber").tBodies[0].replaceChildren(...amber.map((s) => el("tr", {},
      el("td", { text: (s.registered && s.registered.wearer) || "" }),
      el("td", { text: s.device }),
      el("td", { text: s.site }),
      el("td", { text: s.note || "" }),
      el("td", { "data-until": s.deadline, class: "age-cell" }),
      el("td", { text: s.state, class: s.state === "running" ? "" : "warn" }))));

    $("devices-denied").hidden = !snap.devices_denied;
    const devs = snap.devices;
    $("devices").hidden = !devs || devs.length === 0;
    $("devices-empty").hidden = !devs || devs.length > 0;
    if (!devs) return;
    $("devices").tBodies[0].replaceChildren(...devs.map((d) => {
      let status = "never seen", cls = "warn";
      if (!d.registered) { status = "not registered"; }
      else if (d.online) { status = "online"; cls = "online"; }
      else if (d.last_seen) { status = "OFFLINE"; cls = "offline"; }
      return el("tr", {},
        el("td", { text: d.id }),
        el("td", { text: d.wearer || "" }),
        el("td", { text: d.site }),
        el("td", { text: status, class: cls }),
        el("td", { text: d.battery != null ? `${d.battery}%${d.battery_low ? " (low)" : ""}` : "", class: d.battery_low ? "warn" : "" }),
        el("td", { text: d.last_seen ? clock(d.last_seen) : "" }));
    }));
  }

  // ---- actions ----
  let pending = null; // {kind, id, from}
  const dlg = $("act");

  function act(kind, id, from) {
    const a = findAlert(id) || { id, text: id };
    pending = { kind, id, from };
    const title = { ack: "Acknowledge", note: "Add a note", resolve: "Resolve" }[kind];
    $("act-title").textContent = `${title}: ${a.event ? label(a) + " " + who(a) : id}`;
    $("act-about").textContent = a.text || "";
    $("act-submit").textContent = title;
    $("act-note").value = "";
    $("act-note").required = kind === "note";
    $("act-note-label").textContent = kind === "note" ? "Note" : "Note (optional)";
    $("act-error").textContent = "";
    $("act-outcome-row").hidden = kind !== "resolve";
    const sel = $("act-outcome");
    sel.replaceChildren(el("option", { value: "", text: "Choose an outcome" }),
      ...state.outcomes.map((o) => el("option", { value: o, text: OUTCOME_LABELS[o] || o.replace(/_/g, " ") })));
    sel.required = kind === "resolve";
    dlg.showModal();
    (kind === "resolve" ? sel : $("act-note")).focus();
  }

  $("act-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!pending) return;
    const { kind, id } = pending;
    const body = { note: $("act-note").value.trim() };
    if (kind === "resolve") body.outcome = $("act-outcome").value;
    $("act-submit").disabled = true;
    try {
      await api("POST", `/api/alerts/${encodeURIComponent(id)}/${kind}`, body);
      close();
    } catch (e) {
      $("act-error").textContent = e.message;
    } finally {
      $("act-submit").disabled = false;
    }
  });
  $("act-cancel").addEventListener("click", () => close());
  dlg.addEventListener("close", () => {
    // Back to where the person was, if it is still on the page.
    if (pending && pending.from && pending.from.isConnected) pending.from.focus();
    pending = null;
  });
  function close() { if (dlg.open) dlg.close(); }

  const findAlert = (id) => state.snap && state.snap.alerts.find((a) => a.id === id);

  // ---- incident view ----
  async function loadIncident(id) {
    try {
      const a = await api("GET", `/api/alerts/${encodeURIComponent(id)}`);
      if (state.incident !== id) return;
      $("incident-problem").hidden = true;
      renderIncident(a);
    } catch (e) {
      $("incident-problem").hidden = false;
      $("incident-problem").textContent = e.message;
    }
  }

  function renderIncident(a) {
    $("incident-title").textContent = `P${a.priority} ${label(a)}: ${who(a)} at ${a.site}`;
    const d = delivery(a);
    facts($("incident-facts"), [
      ["Alert", a.id],
      ["What", a.text],
      ["Device", a.device || ""],
      ["Location", where(a)],
      ["Receiver", d.text, d.cls],
      ["State", a.state === "resolved" ? `resolved (${OUTCOME_LABELS[a.outcome] || a.outcome})` : stateText(a)],
    ]);
    const acts = $("incident-actions");
    acts.replaceChildren();
    if (a.state !== "resolved") {
      if (a.state !== "acknowledged") acts.append(button("ack", "Acknowledge", a.id));
      acts.append(button("resolve", "Resolve", a.id, "secondary"));
    }
    acts.append(button("note", "Add note", a.id, "secondary"));

    const ev = [];
    const add = (at, text, by) => { if (at) ev.push({ at, text, by }); };
    add(a.event_time, "Event at the device");
    add(a.raised_at, `Alert raised: ${a.text}`);
    for (const r of a.deliveries || []) {
      if (r.done_at) add(r.done_at, `${r.route}: ${r.state}${r.attempts > 1 ? ` after ${r.attempts} attempts` : ""} (${r.msg.event})`);
      else add(r.last_attempt || r.created, `${r.route}: ${r.state}${r.last_error ? ": " + r.last_error : ""} (${r.msg.event})`);
    }
    add(a.delivered_at, `Receiver ACK via ${a.delivered_via}`);
    add(a.cancelled_at, "Wearer pressed cancel");
    add(a.acknowledged_at, "Acknowledged", a.acknowledged_by);
    for (const n of a.notes || []) add(n.at, `Note: ${n.text}`, n.by);
    add(a.resolved_at, `Resolved: ${OUTCOME_LABELS[a.outcome] || a.outcome}`, a.resolved_by);
    ev.sort((x, y) => Date.parse(x.at) - Date.parse(y.at));
    $("timeline").replaceChildren(...ev.map((e) => el("li", {},
      el("time", { datetime: e.at, text: clockMs(e.at) }),
      el("span", { text: e.text + (e.by ? ` — by ${e.by}` : "") }))));
  }
  function button(kind, text, id, cls) {
    const b = el("button", { type: "button", text, class: cls || "", "data-act": kind });
    b.addEventListener("click", () => act(kind, id, b));
    return b;
  }

  // ---- views ----
  function route() {
    if (!state.me) return;
    const h = location.hash || "#alerts";
    const m = h.match(/^#alert\/(.+)$/);
    state.incident = m ? decodeURIComponent(m[1]) : null;
    state.incidentSig = null;
    $("alerts-view").hidden = h !== "#alerts";
    $("devices-view").hidden = h !== "#devices";
    $("incident-view").hidden = !state.incident;
    for (const [id, on] of [["tab-alerts", h === "#alerts"], ["tab-devices", h === "#devices"]]) {
      if (on) $(id).setAttribute("aria-current", "page");
      else $(id).removeAttribute("aria-current");
    }
    if (state.incident) {
      $("timeline").replaceChildren();
      $("incident-facts").replaceChildren();
      $("incident-title").textContent = "Incident";
      loadIncident(state.incident);
      $("incident-title").focus();
    }
  }
  window.addEventListener("hashchange", route);

  // ---- start ----
  try { setMuted(localStorage.getItem("vigil.muted") === "1"); } catch (e) { setMuted(false); }
  fetch("/api/session", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((me) => (me ? signedIn({ user: me.user, role: me.role }) : signedOut()))
    .catch(() => signedOut("Cannot reach the gateway."));
})();
