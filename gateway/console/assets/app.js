// Vigil control-room console. Plain JavaScript, no framework and nothing
// loaded from elsewhere (the page's CSP allows only this origin).
//
// State arrives over server-sent events (GET /api/events): a full snapshot on
// connect and after every change. Actions call the alert and incident APIs
// with the session cookie; fetch from this origin sends the Origin header the
// API's CSRF check needs. Everything from the server is put in the page as
// text, never HTML: alert texts come from devices, incident texts from people.
//
// The views are hash routes (#alerts, #devices, #alert/ID, #incidents,
// #incident/ID, #report, #reports), so the browser's back button, bookmarks
// and keyboard links all work. A view the caller's role cannot use is not
// shown (GET /api/session lists the role's permissions); the API refuses it
// anyway.
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
    support_overdue: "SUPPORT OVERDUE",
  };
  const OUTCOME_LABELS = {
    genuine_no_harm: "Genuine: no harm",
    genuine_police_attended: "Genuine: police attended",
    genuine_injury: "Genuine: injury",
    false_alarm: "False alarm",
    test: "Test",
  };
  // Words the incident lists use, where turning "_" into " " is not enough.
  const WORDS = {
    patients_home: "Patient's home",
    emergency_department: "Emergency department (ED)",
    medically_related: "Medically related",
    no_further_action: "No further action",
    device_report: "the wearer's device (report presses)",
    form: "a console report",
    alarm: "an alarm",
    verbal: "Verbal (type not given)",
    physical: "Physical (type not given)",
    not_needed: "not needed",
  };
  const word = (k) => WORDS[k] || (k ? k.charAt(0).toUpperCase() + k.slice(1).replace(/_/g, " ") : "");

  const state = {
    me: null, // {user, role, wearer, permissions: {perm: scope}}
    es: null, // the EventSource
    offset: 0, // server time minus this machine's time, ms
    outcomes: [],
    snap: null,
    seen: new Set(), // alert ids already announced
    first: true, // the first snapshot after login announces nothing old
    muted: false,
    audio: null,
    lastMessage: 0,
    alert: null, // id shown in the alert view
    alertSig: null, // its alert as last seen in a snapshot
    options: null, // GET /api/incidents/options
    incident: null, // id shown in the incident view
    shown: null, // {inc, alert} last rendered in the incident view
    reportKey: "", // one per opening of the quick report form
    summaryAt: 0, // when the overdue badge was last asked for
    summaryTimer: null,
  };

  const serverNow = () => Date.now() + state.offset;
  const can = (perm) => !!(state.me && state.me.permissions && state.me.permissions[perm]);
  const scope = (perm) => (state.me && state.me.permissions && state.me.permissions[perm]) || "";

  function noteServerTime(data) {
    if (data && data.now) state.offset = Date.parse(data.now) - Date.now();
    state.lastMessage = Date.now();
  }

  // ---- formatting ----
  const pad = (n) => String(n).padStart(2, "0");
  function ago(iso) {
    if (!iso) return "";
    let s = Math.max(0, Math.floor((serverNow() - Date.parse(iso)) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
  }
  function left(iso) {
    const s = Math.floor((Date.parse(iso) - serverNow()) / 1000);
    if (s < 0) return `overdue by ${ago(iso)}`;
    const m = Math.floor(s / 60);
    return `${m}:${pad(s % 60)}`;
  }
  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleString("en-GB", { hour12: false });
  }
  // The timeline shows milliseconds: response times are data.
  function clockMs(iso) {
    const d = new Date(iso);
    return `${when(iso)}:${pad(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
  }
  const WD = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  // when is a date and time in this workstation's local time, spelled out
  // ("Thu 21 May 2026, 14:03") so that nobody misreads 05/06 across a room.
  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return `${WD[d.getDay()]} ${d.getDate()} ${MON[d.getMonth()]} ${d.getFullYear()}, ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  // span is a rough length of time in words: "40 minutes", "5 hours", "3 days".
  function span(ms) {
    const a = Math.abs(ms);
    let n, u;
    if (a < 60000) return "less than a minute";
    if (a < 90 * 60000) { n = Math.round(a / 60000); u = "minute"; }
    else if (a < 36 * 3600000) { n = Math.round(a / 3600000); u = "hour"; }
    else { n = Math.round(a / 86400000); u = "day"; }
    return `${n} ${u}${n === 1 ? "" : "s"}`;
  }
  // rel is a time relative to now: "in 3 days", "2 hours ago".
  function rel(iso) {
    const ms = Date.parse(iso) - serverNow();
    if (Math.abs(ms) < 60000) return "now";
    return ms > 0 ? `in ${span(ms)}` : `${span(ms)} ago`;
  }
  // localInput is a time as a datetime-local or month input wants it.
  function localInput(d, month) {
    const m = `${d.getFullYear()}-${pad(d.getMonth() + 1)}`;
    return month ? m : `${m}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  const label = (a) => LABELS[a.event] || a.event.replace(/_/g, " ").toUpperCase();
  const who = (a) => a.wearer || (a.verified ? a.device || "" : `UNVERIFIED device ${a.device || ""}`);
  function where(a) {
    const parts = [];
    // Where on site first (what a responder walks to), then the fix.
    if (a.place) parts.push(a.place);
    if (a.location) {
      let p = `${a.location.lat.toFixed(5)}, ${a.location.lon.toFixed(5)}`;
      if (a.location.acc_m) p += ` (±${Math.round(a.location.acc_m)} m)`;
      parts.push(p);
    }
    if (a.zone) parts.push(`zone ${a.zone}`);
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
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
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
  function fill(sel, values, first, labelOf) {
    const keep = sel.value;
    sel.replaceChildren(...(first != null ? [el("option", { value: "", text: first })] : []),
      ...values.map((v) => el("option", { value: v, text: (labelOf || word)(v) })));
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
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
  // api calls the API; a refusal throws an Error carrying the HTTP status.
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
    if (!r.ok) {
      const err = new Error((data && data.error) || `${r.status} ${r.statusText}`);
      err.status = r.status;
      throw err;
    }
    return data;
  }

  function signedIn(me) {
    state.me = me;
    $("who-name").textContent = me.user;
    $("who-role").textContent = me.role;
    $("who").hidden = false;
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    for (const a of document.querySelectorAll(".tabs a[data-perm]")) a.hidden = !can(a.dataset.perm);
    if (can("read_alerts")) connect();
    loadOptions();
    refreshSummary();
    route();
  }

  function signedOut(msg) {
    if (state.es) state.es.close();
    state.es = null;
    state.me = null;
    state.snap = null;
    state.first = true;
    state.seen.clear();
    state.shown = null;
    $("board").replaceChildren();
    $("incidents").tBodies[0].replaceChildren();
    $("plan").tBodies[0].replaceChildren();
    $("report-frame").removeAttribute("src");
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
      await api("POST", "/api/session", { user: $("login-user").value, password: $("login-password").value });
      $("login-password").value = "";
      // The session says what the role may do, so the page shows only that.
      signedIn(await api("GET", "/api/session"));
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
  // Support falls overdue with time alone, not only when something changes.
  setInterval(() => refreshSummary(), 60000);

  function tick() {
    for (const t of document.querySelectorAll("[data-since]")) t.textContent = ago(t.dataset.since);
    for (const t of document.querySelectorAll("[data-until]")) t.textContent = left(t.dataset.until);
    for (const t of document.querySelectorAll("[data-rel]")) t.textContent = `(${rel(t.dataset.rel)})`;
    // An open step falls due with time alone: its status follows the clock
    // in place, so a note being typed in its row is kept.
    for (const t of document.querySelectorAll("[data-due]")) {
      const s = taskState({ status: "open", due: t.dataset.due, not_before: t.dataset.notBefore });
      t.textContent = s.text;
      t.className = s.cls + " task-status";
      t.closest("tr").classList.toggle("overdue", !!s.overdue);
    }
  }

  // ---- rendering ----
  function render(snap) {
    state.snap = snap;
    renderBoard(snap.alerts);
    renderDevices(snap);
    if (state.alert) {
      // Re-read the alert only when it changed (or left the board).
      const a = snap.alerts.find((x) => x.id === state.alert);
      const sig = a ? JSON.stringify(a) : "closed";
      if (sig !== state.alertSig) {
        if (state.alertSig !== null) loadAlert(state.alert);
        state.alertSig = sig;
      }
    }
    // A resolved alarm makes an incident and reminders arrive as alerts:
    // a change on the board is the moment to re-count overdue support.
    refreshSummary(true);
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
    const acts = el("div", { class: "actions" });
    if (can("act_on_alerts")) {
      const ack = el("button", { type: "button", "data-act": "ack", text: "Acknowledge" });
      const note = el("button", { type: "button", class: "secondary", "data-act": "note", text: "Add note" });
      const res = el("button", { type: "button", class: "secondary", "data-act": "resolve", text: "Resolve" });
      for (const b of [ack, note, res]) b.addEventListener("click", () => act(b.dataset.act, li.dataset.id, b));
      acts.append(ack, note, res);
    }
    acts.append(el("a", { href: "#alert/" + encodeURIComponent(a.id), text: "Alert timeline" }));
    li.append(h, dl, acts);
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
    const ack = li.querySelector('[data-act="ack"]');
    if (ack) ack.hidden = a.state === "acknowledged";
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
    // The quick report offers the wearers the board knows.
    const names = [...new Set(devs.map((d) => d.wearer).filter(Boolean))].sort();
    $("wearers").replaceChildren(...names.map((n) => el("option", { value: n })));
  }

  // ---- alert actions ----
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
    // The close event comes a task after close(): by then the dialog may
    // have been opened again for another action, whose pending it must keep.
    if (dlg.open) return;
    // Back to where the person was, if it is still on the page.
    if (pending && pending.from && pending.from.isConnected) pending.from.focus();
    pending = null;
  });
  function close() { if (dlg.open) dlg.close(); }

  const findAlert = (id) => state.snap && state.snap.alerts.find((a) => a.id === id);

  // ---- alert view ----
  async function loadAlert(id) {
    try {
      const a = await api("GET", `/api/alerts/${encodeURIComponent(id)}`);
      if (state.alert !== id) return;
      $("alert-problem").hidden = true;
      renderAlert(a);
    } catch (e) {
      $("alert-problem").hidden = false;
      $("alert-problem").textContent = e.message;
    }
  }

  function renderAlert(a) {
    $("alert-title").textContent = `P${a.priority} ${label(a)}: ${who(a)} at ${a.site}`;
    const d = delivery(a);
    facts($("alert-facts"), [
      ["Alert", a.id],
      ["What", a.text],
      ["Device", a.device || ""],
      ["Location", where(a)],
      ["Receiver", d.text, d.cls],
      ["State", a.state === "resolved" ? `resolved (${OUTCOME_LABELS[a.outcome] || a.outcome})` : stateText(a)],
    ]);
    const acts = $("alert-actions");
    acts.replaceChildren();
    if (can("act_on_alerts")) {
      if (a.state !== "resolved") {
        if (a.state !== "acknowledged") acts.append(button("ack", "Acknowledge", a.id));
        acts.append(button("resolve", "Resolve", a.id, "secondary"));
      }
      acts.append(button("note", "Add note", a.id, "secondary"));
    }
    $("timeline").replaceChildren(...timelineItems(alertEvents(a)));
    linkIncident(a);
  }
  function button(kind, text, id, cls) {
    const b = el("button", { type: "button", text, class: cls || "", "data-act": kind });
    b.addEventListener("click", () => act(kind, id, b));
    return b;
  }

  // linkIncident shows the incident a resolved alarm became, for roles that
  // may read incidents.
  async function linkIncident(a) {
    const p = $("alert-incident");
    p.hidden = true;
    if (a.state !== "resolved" || !can("read_incidents")) return;
    try {
      const from = new Date(Date.parse(a.raised_at) - 1000).toISOString();
      const d = await api("GET", `/api/incidents?site=${encodeURIComponent(a.site)}&from=${encodeURIComponent(from)}`);
      const inc = (d.incidents || []).find((i) => i.alert_id === a.id);
      if (!inc || state.alert !== a.id) return;
      p.replaceChildren("This alarm is recorded as incident ", el("a", { href: "#incident/" + encodeURIComponent(inc.id), text: inc.id }), ", with its support plan.");
      p.hidden = false;
    } catch (e) { /* the alert view stands on its own */ }
  }

  // alertEvents is every state change of an alert, with who and when.
  function alertEvents(a) {
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
    return ev;
  }
  function timelineItems(ev) {
    ev.sort((x, y) => Date.parse(x.at) - Date.parse(y.at));
    return ev.map((e) => el("li", {},
      el("time", { datetime: e.at, text: clockMs(e.at) }),
      el("span", { text: e.text + (e.by ? ` — by ${e.by}` : "") })));
  }

  // ---- incidents ----
  async function loadOptions() {
    try {
      const o = await api("GET", "/api/incidents/options");
      state.options = o;
      fill($("f-site"), o.sites, "All sites", (s) => s);
      fill($("rep-month-site"), o.sites, "All sites", (s) => s);
      fill($("rep-site"), o.sites, o.sites.length === 1 ? null : "Choose a site", (s) => s);
      if (!$("rep-site").value && o.sites.length) $("rep-site").value = o.sites[0];
      const type = $("rep-type"), keep = type.value;
      type.replaceChildren(el("option", { value: "", text: "Choose a type" }),
        el("optgroup", { label: "Type" }, ...o.types.map((v) => el("option", { value: v, text: word(v) }))),
        el("optgroup", { label: "Or, if you would rather not say" }, ...o.kinds.map((v) => el("option", { value: v, text: word(v) }))));
      type.value = keep;
      fill($("cls-type"), o.types, "Choose a type");
      fill($("cls-cause"), o.causes, "Choose a cause");
      fill($("cls-setting"), o.settings, "Choose a setting");
      fill($("cls-injury"), o.injuries, "Choose the injury");
      confidentialChoice();
      if (state.shown) renderIncident(state.shown.inc, state.shown.alert);
    } catch (e) { /* the forms say so when they are used */ }
  }

  // status describes an incident's state for the list: classification and
  // what is left of its support plan.
  function status(inc) {
    const now = serverNow();
    const open = inc.plan.filter((t) => t.status === "open");
    const overdue = open.filter((t) => Date.parse(t.due) < now).length;
    const parts = [];
    if (!inc.classification) parts.push(["unclassified", "warn"]);
    if (overdue) parts.push([`${overdue} overdue`, "bad"]);
    parts.push(open.length ? [`support open (${open.length} step${open.length === 1 ? "" : "s"})`, ""] : ["support complete", "ok"]);
    return parts;
  }
  function typeText(inc) {
    if (inc.classification) return word(inc.classification.type);
    if (inc.reported_type) return `reported: ${word(inc.reported_type)}`;
    return inc.source === "alarm" ? "alarm, not yet classified" : "not given";
  }

  // refreshSummary updates the Incidents tab's overdue and unclassified
  // badges, so a supervisor on the alert board sees support falling overdue.
  // soon: called on every board change, so at most every 2 s.
  function refreshSummary(soon) {
    if (!can("read_incidents")) return;
    if (soon) {
      if (state.summaryTimer) return;
      const wait = Math.max(0, state.summaryAt + 2000 - Date.now());
      state.summaryTimer = setTimeout(() => { state.summaryTimer = null; refreshSummary(); }, wait);
      return;
    }
    state.summaryAt = Date.now();
    api("GET", "/api/incidents?open=1").then((d) => {
      const un = d.incidents.filter((i) => !i.classification).length;
      const o = $("overdue-count"), u = $("unclassified-count");
      o.textContent = `${d.overdue} overdue`;
      o.hidden = !d.overdue;
      u.textContent = `${un} unclassified`;
      u.className = "count muted";
      u.hidden = !un;
      $("tab-incidents").setAttribute("aria-label", `Incidents: ${d.overdue} support steps overdue, ${un} unclassified`);
    }).catch(() => { /* shown again next time */ });
    if (!$("incidents-view").hidden) loadIncidents();
  }

  async function loadIncidents() {
    const q = new URLSearchParams();
    if ($("f-site").value) q.set("site", $("f-site").value);
    if ($("f-open").checked) q.set("open", "1");
    try {
      const d = await api("GET", "/api/incidents" + (q.size ? "?" + q : ""));
      $("incidents-problem").hidden = true;
      renderIncidents(d);
    } catch (e) {
      $("incidents-problem").hidden = false;
      $("incidents-problem").textContent = e.message;
    }
  }
  $("f-site").addEventListener("change", loadIncidents);
  $("f-open").addEventListener("change", loadIncidents);
  $("incidents-filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadIncidents(); });

  function renderIncidents(d) {
    const list = d.incidents || [];
    $("incidents").hidden = list.length === 0;
    $("incidents-empty").hidden = list.length > 0;
    const un = list.filter((i) => !i.classification).length;
    const open = list.filter((i) => i.plan.some((t) => t.status === "open")).length;
    $("incidents-summary").textContent = `${list.length} incident${list.length === 1 ? "" : "s"}: ${un} unclassified, ${open} with support still open, ${d.overdue} support step${d.overdue === 1 ? "" : "s"} overdue.`;
    $("incidents").tBodies[0].replaceChildren(...list.map((inc) => el("tr", { "data-id": inc.id },
      el("th", { scope: "row" }, el("a", { href: "#incident/" + encodeURIComponent(inc.id), text: inc.id })),
      el("td", { class: "status-line" }, ...status(inc).map(([t, c]) => el("span", { text: t, class: c }))),
      el("td", { text: inc.site }),
      el("td", { text: when(inc.occurred_at) }),
      el("td", { text: typeText(inc) }),
      el("td", { text: inc.wearer || "—" }))));
  }

  // ---- incident view ----
  async function loadIncident(id) {
    try {
      const inc = await api("GET", `/api/incidents/${encodeURIComponent(id)}`);
      if (state.incident !== id) return;
      $("incident-problem").hidden = true;
      renderIncident(inc, inc.alert || null);
      loadClips(inc);
    } catch (e) {
      $("incident-problem").hidden = false;
      $("incident-problem").textContent = e.message;
    }
  }

  function renderIncident(inc, alert) {
    state.shown = { inc, alert };
    const title = inc.classification || inc.reported_type ? typeText(inc).replace(/^reported: /, "")
      : alert ? `${label(alert)} alarm, not yet classified` : typeText(inc);
    $("incident-title").textContent = `${inc.id}: ${title} — ${inc.wearer || "member of staff not named"} at ${inc.site}`;
    const c = inc.classification;
    facts($("incident-facts"), [
      ["From", word(inc.source) + (inc.alert_id ? ` (${inc.alert_id})` : "")],
      ["Member of staff", inc.wearer || ""],
      ["Site", inc.site],
      ["Where", inc.place || ""],
      ["Occurred", when(inc.occurred_at)],
      ["Recorded", when(inc.recorded_at)],
      ["Reported by", inc.reporter || ""],
      ["Reported as", inc.reported_type ? word(inc.reported_type) : ""],
      ["Alarm outcome", inc.outcome ? OUTCOME_LABELS[inc.outcome] || word(inc.outcome) : ""],
      ["Their account", inc.text || ""],
      ["Confidential", inc.confidential ? "yes: names withheld except from IG officers" : "", "warn"],
      ["Status", status(inc).map(([t]) => t).join(" · ")],
    ]);
    renderConfidential(inc);
    renderPlan(inc);
    renderClassification(inc);
    const ev = alert ? alertEvents(alert) : [];
    for (const h of inc.history || []) {
      // An incident made from an alarm was made by the alarm, not a person.
      const by = h.what === "created" && inc.source === "alarm" ? "" : h.by;
      ev.push({ at: h.at, text: historyText(h, inc), by });
    }
    $("incident-timeline").replaceChildren(...timelineItems(ev));
    tick();
  }

  function historyText(h, inc) {
    const t = h.task && inc.plan.find((x) => x.id === h.task);
    const step = t ? t.title : h.task;
    switch (h.what) {
      case "created": return `Incident recorded from ${word(h.note)}`;
      case "classified": return `Classified as ${word(h.note)}`;
      case "confidential": return "Marked confidential";
      case "not_confidential": return "No longer confidential";
      case "task_completed": return `Support: ${step} ${word(h.note).toLowerCase()}`;
      case "reminded": return `Reminder sent: ${step} overdue (owner ${h.note || "supervisor on duty"})`;
    }
    return word(h.what) + (h.note ? `: ${h.note}` : "");
  }

  function renderConfidential(inc) {
    const typ = (inc.classification && inc.classification.type) || inc.reported_type;
    const allowed = state.options && state.options.confidential_types.includes(typ);
    const row = $("confidential-row"), b = $("confidential-toggle");
    row.hidden = !can("manage_incidents") || !(inc.confidential || allowed);
    b.setAttribute("aria-pressed", String(!!inc.confidential));
    b.textContent = inc.confidential ? "Confidential: on" : "Confidential: off";
    $("confidential-error").textContent = "";
  }
  $("confidential-toggle").addEventListener("click", async () => {
    if (!state.shown) return;
    const { inc, alert } = state.shown;
    const b = $("confidential-toggle");
    b.disabled = true;
    try {
      const out = await api("POST", `/api/incidents/${encodeURIComponent(inc.id)}/confidential`, { confidential: !inc.confidential });
      renderIncident(out, out.confidential && out.alert_id !== inc.alert_id ? null : alert);
      refreshSummary();
    } catch (e) {
      $("confidential-error").textContent = e.message;
    } finally {
      b.disabled = false;
      b.focus();
    }
  });

  // taskState is a step's status in words, with when it falls due.
  function taskState(t) {
    const now = serverNow();
    if (t.status === "done") return { text: "done" + (t.early ? " (before its window opened)" : ""), cls: "ok" };
    if (t.status === "not_needed") return { text: "not needed", cls: "muted" };
    const due = Date.parse(t.due), nb = Date.parse(t.not_before);
    if (now > due) return { text: `OVERDUE by ${span(now - due)}`, cls: "bad", overdue: true };
    if (now < nb) return { text: `not yet: opens ${rel(t.not_before)}`, cls: "muted" };
    return { text: `open: due ${rel(t.due)}`, cls: due - now < 86400000 ? "warn" : "" };
  }

  function renderPlan(inc) {
    const manage = can("manage_incidents");
    $("plan-actions-head").hidden = !manage;
    const open = inc.plan.filter((t) => t.status === "open");
    const overdue = open.filter((t) => taskState(t).overdue).length;
    $("plan-summary").textContent = open.length
      ? `${open.length} of ${inc.plan.length} steps open${overdue ? `, ${overdue} overdue` : ""}. Times are in this workstation's local time.`
      : "Every step of the support plan is closed.";
    const rows = inc.plan.map((t) => {
      const s = taskState(t);
      const tr = el("tr", { "data-task": t.id, class: (s.overdue ? "overdue" : "") + (t.status !== "open" ? " closed" : "") },
        el("th", { scope: "row", text: t.title }),
        el("td", { class: "window" },
          el("span", {}, `opens ${when(t.not_before)} `, el("span", { class: "muted rel", "data-rel": t.not_before })),
          el("span", {}, `due ${when(t.due)} `, el("span", { class: "muted rel", "data-rel": t.due }))),
        el("td", { text: t.owner || "supervisor on duty" }),
        el("td", {}, el("span", { text: s.text, class: s.cls + " task-status",
          "data-due": t.status === "open" ? t.due : null, "data-not-before": t.status === "open" ? t.not_before : null }),
          t.done_by ? el("span", { class: "done-by", text: `by ${t.done_by}, ${when(t.done_at)}` }) : null,
          t.note ? el("span", { class: "done-by", text: `“${t.note}”` }) : null));
      if (manage) tr.append(el("td", {}, t.status === "open" ? taskControls(inc, t) : null));
      return tr;
    });
    $("plan").tBodies[0].replaceChildren(...rows);
    $("plan-error").textContent = "";
  }

  function taskControls(inc, t) {
    const id = `note-${t.id}`;
    const note = el("input", { id, class: "task-note", maxlength: "500", autocomplete: "off", placeholder: "note (optional)" });
    const done = el("button", { type: "button", "data-status": "done", text: "Done", "aria-label": `Done: ${t.title}` });
    const skip = el("button", { type: "button", class: "secondary", "data-status": "not_needed", text: "Not needed", "aria-label": `Not needed: ${t.title}` });
    for (const b of [done, skip]) {
      b.addEventListener("click", async () => {
        done.disabled = skip.disabled = true;
        try {
          const out = await api("POST", `/api/incidents/${encodeURIComponent(inc.id)}/tasks/${encodeURIComponent(t.id)}`,
            { status: b.dataset.status, note: note.value.trim() });
          renderIncident(out, state.shown && state.shown.alert);
          refreshSummary();
          // Keep the keyboard where it was: on the row just recorded.
          const row = document.querySelector(`#plan tr[data-task="${CSS.escape(t.id)}"] th`);
          if (row) { row.tabIndex = -1; row.focus(); }
        } catch (e) {
          $("plan-error").textContent = `${t.title}: ${e.message}`;
          if (e.status === 409) loadIncident(inc.id); // someone else recorded it first
          done.disabled = skip.disabled = false;
        }
      });
    }
    return el("div", { class: "record" },
      el("label", { for: id, class: "visually-hidden", text: `Note for ${t.title} (optional)` }),
      note, el("div", { class: "buttons" }, done, skip));
  }

  const CLS = { type: "cls-type", cause: "cls-cause", setting: "cls-setting", injury: "cls-injury",
    staff_group: "cls-staff", crime_ref: "cls-crime", prosecution_outcome: "cls-prosecution", police: "cls-police" };

  function renderClassification(inc) {
    const c = inc.classification;
    $("classification-summary").textContent = c
      ? `${word(c.type)}; cause ${word(c.cause).toLowerCase()}; ${word(c.setting).toLowerCase()}; injury ${c.injury}` +
        (c.staff_group ? `; ${c.staff_group}` : "") +
        (c.police ? `; police involved${c.crime_ref ? ` (${c.crime_ref})` : ""}` : "") +
        (c.prosecution_outcome ? `; prosecution: ${word(c.prosecution_outcome).toLowerCase()}` : "") +
        `. Classified by ${c.by}, ${when(c.at)}.`
      : "Not yet classified.";
    const form = $("classify-form");
    form.hidden = !can("manage_incidents");
    clearErrors("cls-");
    $("classify-error").textContent = "";
    // Refill only for another incident or a new classification: a step
    // recorded meanwhile must not wipe what is being typed.
    const sig = inc.id + "|" + (c ? c.at : "");
    if (form.dataset.for === sig) return;
    form.dataset.for = sig;
    const v = c || { type: inc.reported_type, police: false };
    $("cls-type").value = (state.options && state.options.types.includes(v.type)) ? v.type : "";
    $("cls-cause").value = v.cause || "";
    $("cls-setting").value = v.setting || "";
    $("cls-injury").value = v.injury || "";
    $("cls-staff").value = v.staff_group || "";
    $("cls-police").checked = !!v.police;
    $("cls-crime").value = v.crime_ref || "";
    $("cls-crime").disabled = !v.police;
    $("cls-prosecution").value = v.prosecution_outcome || "";
    $("classify-submit").textContent = c ? "Update classification" : "Save classification";
  }
  $("cls-police").addEventListener("change", () => { $("cls-crime").disabled = !$("cls-police").checked; });

  // FieldErrors from the API read `incident: FIELD "VALUE" PROBLEM`, one per
  // line: each goes next to its field.
  function fieldErrors(msg) {
    const out = [];
    for (const line of msg.split("\n")) {
      const m = line.match(/^incident: ([a-z_ ]+) "((?:[^"\\]|\\.)*)" (.*)$/);
      if (m) out.push({ field: m[1], problem: m[3] });
    }
    return out;
  }
  function clearErrors(prefix) {
    for (const p of document.querySelectorAll(`.field-error[id^="${prefix}"]`)) p.textContent = "";
    for (const i of document.querySelectorAll(`[id^="${prefix}"][aria-invalid]`)) i.removeAttribute("aria-invalid");
  }
  // showErrors puts each field's problem beside it and returns the first
  // field, to move the focus there; problems with no field go to general.
  function showErrors(msg, prefix, ids, general) {
    let first = null;
    const rest = [];
    for (const e of fieldErrors(msg)) {
      const input = ids[e.field] && $(ids[e.field]);
      const out = $(`${prefix}${e.field}-error`);
      if (!input || !out) { rest.push(`${e.field} ${e.problem}`); continue; }
      out.textContent = e.problem.startsWith("is not one of") ? "Choose one from the list." : `This ${e.problem}.`;
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
    general.textContent = first && !rest.length ? "Not saved: see the message beside each field." : rest.join("; ") || (first ? "" : msg);
    if (first) first.focus();
    return first;
  }

  $("classify-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!state.shown) return;
    const inc = state.shown.inc;
    clearErrors("cls-");
    $("classify-done").textContent = "";
    const police = $("cls-police").checked;
    const body = {
      type: $("cls-type").value, cause: $("cls-cause").value, setting: $("cls-setting").value,
      injury: $("cls-injury").value, staff_group: $("cls-staff").value.trim(), police,
      crime_ref: police ? $("cls-crime").value.trim() : "", prosecution_outcome: $("cls-prosecution").value.trim(),
    };
    $("classify-submit").disabled = true;
    try {
      const out = await api("POST", `/api/incidents/${encodeURIComponent(inc.id)}/classification`, body);
      renderIncident(out, state.shown.alert);
      $("classify-done").textContent = "Saved.";
      refreshSummary();
    } catch (e) {
      showErrors(e.message, "cls-", CLS, $("classify-error"));
    } finally {
      $("classify-submit").disabled = false;
    }
  });

  // loadClips lists the footage linked to the incident's alarm. Clip
  // metadata is for investigators and IG officers: other roles are told
  // whom to ask, and are not sent to be refused (a refusal is an audit record).
  async function loadClips(inc) {
    const box = $("incident-clips");
    const say = (text) => box.replaceChildren(el("p", { text }));
    if (!inc.alert_id) return say("No alarm, so no footage was linked automatically.");
    if (inc.alert_id === "(confidential)") return say("Footage of a confidential incident: ask an IG officer.");
    if (!can("search_clips")) return say("Footage: ask an investigator.");
    try {
      const d = await api("GET", `/api/clips?incident=${encodeURIComponent(inc.alert_id)}`);
      if (state.incident !== inc.id) return;
      const clips = d.clips || [];
      if (!clips.length) return say("No clips are linked to this alarm.");
      box.replaceChildren(el("ul", { class: "clips" }, ...clips.map((c) => el("li", {
        text: `${c.camera}: ${clock(c.start)} to ${clock(c.end)}, ${(c.size / 1048576).toFixed(1)} MiB, ${c.state}, ${word(c.category).toLowerCase()}${c.legal_hold ? ", legal hold" : ""}`,
      }))));
    } catch (e) {
      if (e.status === 403) say("Footage: ask an investigator.");
      else say(`Footage could not be listed: ${e.message}`);
    }
  }

  // ---- quick report ----
  function newKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b); // works without HTTPS, unlike randomUUID
    return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  }
  function openReport() {
    state.reportKey = newKey();
    const own = scope("report_incident") === "own";
    $("rep-wearer-row").hidden = own;
    $("rep-self").hidden = !own;
    if (!$("rep-when").value) $("rep-when").value = localInput(new Date(serverNow()));
    clearErrors("rep-");
    $("report-error").textContent = "";
  }
  function confidentialChoice() {
    const box = $("rep-confidential");
    const ok = !!state.options && state.options.confidential_types.includes($("rep-type").value);
    box.disabled = !ok;
    if (!ok) box.checked = false;
  }
  $("rep-type").addEventListener("change", confidentialChoice);

  const REP = { type: "rep-type", site: "rep-site", wearer: "rep-wearer", place: "rep-place",
    occurred_at: "rep-when", text: "rep-text", confidential: "rep-confidential" };

  $("report-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors("rep-");
    $("report-error").textContent = "";
    const body = {
      type: $("rep-type").value, site: $("rep-site").value, wearer: $("rep-wearer").value.trim(),
      place: $("rep-place").value.trim(), text: $("rep-text").value.trim(),
      confidential: $("rep-confidential").checked, key: state.reportKey,
    };
    if ($("rep-when").value) body.occurred_at = new Date($("rep-when").value).toISOString();
    $("report-submit").disabled = true;
    try {
      const inc = await api("POST", "/api/incidents", body);
      const done = $("report-done");
      done.replaceChildren(`Reported: ${inc.id}, ${word(inc.reported_type).toLowerCase()} at ${inc.site}. Its support plan has started. `);
      if (can("read_incidents")) done.append(el("a", { href: "#incident/" + encodeURIComponent(inc.id), text: `Open ${inc.id}` }));
      done.hidden = false;
      $("report-form").reset();
      $("rep-when").value = "";
      if (state.options && state.options.sites.length) $("rep-site").value = state.options.sites[0];
      confidentialChoice();
      openReport(); // a new key: the next report is a new incident
      refreshSummary();
      done.tabIndex = -1;
      done.focus();
    } catch (e) {
      showErrors(e.message, "rep-", REP, $("report-error"));
    } finally {
      $("report-submit").disabled = false;
    }
  });

  // ---- monthly reports ----
  function reportURL(format) {
    const q = new URLSearchParams({ month: $("rep-month").value, format });
    if ($("rep-month-site").value) q.set("site", $("rep-month-site").value);
    if ($("rep-named").checked && !$("rep-named-row").hidden) q.set("named", "1");
    return "/api/reports/monthly?" + q;
  }
  function reportLinks() {
    const month = $("rep-month").value;
    $("reports-open").href = reportURL("html");
    $("reports-csv").href = reportURL("csv");
    $("reports-csv").setAttribute("download", `vigil-report-${month}${$("rep-month-site").value ? "-" + $("rep-month-site").value : ""}.csv`);
  }
  for (const id of ["rep-month", "rep-month-site", "rep-named"]) $(id).addEventListener("change", reportLinks);
  $("reports-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("reports-problem").textContent = "";
    if (!$("rep-month").value) {
      $("reports-problem").textContent = "Choose a month.";
      $("rep-month").focus();
      return;
    }
    reportLinks();
    const f = $("report-frame");
    f.hidden = false;
    f.src = reportURL("html");
  });
  function openReports() {
    if (!$("rep-month").value) $("rep-month").value = localInput(new Date(serverNow()), true);
    $("rep-named-row").hidden = scope("read_incidents") !== "all";
    reportLinks();
  }

  // ---- views ----
  const VIEWS = ["alerts-view", "devices-view", "alert-view", "incidents-view", "incident-view", "report-view", "reports-view"];
  const TABS = { "#alerts": "tab-alerts", "#devices": "tab-devices", "#incidents": "tab-incidents", "#reports": "tab-reports", "#report": "tab-report" };

  function route() {
    if (!state.me) return;
    const home = can("read_alerts") ? "#alerts" : can("read_incidents") ? "#incidents" : "#report";
    let h = location.hash || home;
    const m = h.match(/^#(alert|incident)\/(.+)$/);
    const view = m ? m[1] : h.slice(1);
    const allowed = { alerts: "read_alerts", devices: "read_alerts", alert: "read_alerts", incidents: "read_incidents",
      incident: "read_incidents", report: "report_incident", reports: "read_reports" }[view];
    if (!allowed || !can(allowed)) { h = home; return h === location.hash ? null : (location.hash = h); }
    state.alert = view === "alert" ? decodeURIComponent(m[2]) : null;
    state.alertSig = null;
    const incident = view === "incident" ? decodeURIComponent(m[2]) : null;
    if (incident !== state.incident) state.shown = null;
    state.incident = incident;
    for (const v of VIEWS) $(v).hidden = v !== `${view}-view`;
    for (const [hash, id] of Object.entries(TABS)) {
      const on = hash === h || (view === "incident" && hash === "#incidents") || (view === "alert" && hash === "#alerts");
      if (on) $(id).setAttribute("aria-current", "page");
      else $(id).removeAttribute("aria-current");
    }
    if (state.alert) {
      $("timeline").replaceChildren();
      $("alert-facts").replaceChildren();
      $("alert-actions").replaceChildren();
      $("alert-incident").hidden = true;
      $("alert-title").textContent = "Alert";
      loadAlert(state.alert);
      $("alert-title").focus();
    }
    if (incident) {
      $("incident-timeline").replaceChildren();
      $("incident-facts").replaceChildren();
      $("plan").tBodies[0].replaceChildren();
      $("incident-clips").replaceChildren();
      $("classify-form").hidden = true;
      $("classify-form").dataset.for = "";
      $("classify-done").textContent = "";
      $("confidential-row").hidden = true;
      $("incident-title").textContent = "Incident";
      loadIncident(incident);
      $("incident-title").focus();
    }
    if (view === "incidents") loadIncidents();
    if (view === "report") {
      openReport();
      $("report-done").hidden = true;
      // Straight to the first field: the report should take seconds.
      $("rep-type").focus();
    }
    if (view === "reports") openReports();
  }
  window.addEventListener("hashchange", route);

  // ---- start ----
  try { setMuted(localStorage.getItem("vigil.muted") === "1"); } catch (e) { setMuted(false); }
  fetch("/api/session", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((me) => (me ? signedIn(me) : signedOut()))
    .catch(() => signedOut("Cannot reach the gateway."));
})();
