// Zest admin page. Vanilla JS, no build step. Every value from the server
// is put into the page with textContent, never as HTML.
"use strict";
(function () {
  const body = document.body;
  const root = body.dataset.root || "";
  const readOnly = body.dataset.readonly === "true";
  const refreshMs = parseInt(body.dataset.refresh, 10) || 2000;
  const api = root + "/api/";
  let busy = false; // a confirmation is open: do not rebuild under it
  let timer = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of kids) if (c != null) e.append(c);
    return e;
  }

  async function call(method, path, payload) {
    const opts = { method, headers: {} };
    if (method === "POST") {
      opts.headers["X-Zest-Admin"] = "1";
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(payload || {});
    }
    const r = await fetch(api + path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) throw new Error((data && data.error) || (r.status + " " + r.statusText));
    return data;
  }

  function status(msg, bad) {
    const s = document.getElementById("status");
    s.textContent = msg;
    s.className = bad ? "bad" : "ok";
  }

  function updated(msg, bad) {
    const s = document.getElementById("updated");
    s.textContent = msg;
    s.className = bad ? "bad" : "";
  }

  function fmtAge(sec) {
    if (!sec) return "0s";
    if (sec < 1) return (sec * 1000).toFixed(0) + "ms";
    if (sec < 120) return sec.toFixed(1) + "s";
    if (sec < 7200) return (sec / 60).toFixed(1) + "m";
    return (sec / 3600).toFixed(1) + "h";
  }
  function fmtTime(t) { return t ? new Date(t).toLocaleString() : ""; }

  function counter(label, value, key) {
    return el("div", { class: "counter", "data-stat": key || label },
      el("span", { class: "value", text: String(value) }), el("span", { class: "label", text: label }));
  }

  function table(cls, headers, rows) {
    const t = el("table", { class: cls });
    t.append(el("thead", {}, el("tr", {}, ...headers.map(h => el("th", { text: h })))));
    const tb = el("tbody");
    for (const r of rows) tb.append(r);
    t.append(tb);
    if (rows.length === 0) tb.append(el("tr", { class: "empty" }, el("td", { colSpan: headers.length, text: "none" })));
    return t;
  }

  // confirmAction shows the in-page confirmation (with an optional note)
  // and runs fn(note) when the operator confirms.
  function confirmAction(question, wantNote, fn) {
    if (readOnly) return;
    busy = true;
    const box = document.getElementById("confirm");
    box.querySelector("#confirm-question").textContent = question;
    const note = box.querySelector("#confirm-note");
    note.value = "";
    note.hidden = !wantNote;
    box.hidden = false;
    const ok = box.querySelector("#confirm-ok"), cancel = box.querySelector("#confirm-cancel");
    function close() { box.hidden = true; busy = false; ok.onclick = null; cancel.onclick = null; }
    cancel.onclick = () => { close(); status("cancelled"); };
    ok.onclick = async () => {
      const n = note.value;
      close();
      try { await fn(n); } catch (e) { status(e.message, true); }
      refresh();
    };
    (wantNote ? note : ok).focus();
  }

  function button(label, cls, question, fn, wantNote) {
    if (readOnly) return null;
    return el("button", { type: "button", class: "act " + cls, text: label,
      onclick: () => confirmAction(question, wantNote, fn) });
  }

  async function showEntry(q, seq, dead) {
    try {
      const d = await call("GET", "queues/" + encodeURIComponent(q) + (dead ? "/dead/" : "/entries/") + seq);
      document.getElementById("detail-title").textContent = q + " #" + seq + " (" + d.state + ")";
      document.getElementById("detail-body").textContent = JSON.stringify(d, null, 2);
      document.getElementById("detail").hidden = false;
    } catch (e) { status(e.message, true); }
  }

  function renderQueue(q, dead, pending) {
    const qp = "queues/" + encodeURIComponent(q.name);
    const box = el("div", { class: "queue", "data-queue": q.name });
    const m = q.mover;
    const head = el("h2", { text: "Queue " + q.name + " " });
    if (m) {
      head.append(el("span", { class: "badge " + (m.paused ? "paused" : "running"), text: m.paused ? "mover paused" : "mover running" }));
      head.append(m.paused
        ? button("Resume mover", "act-resume", "Resume the mover of queue " + q.name + "?", () => call("POST", qp + "/mover/resume").then(() => status("mover resumed")))
        : button("Pause mover", "act-pause", "Pause the mover of queue " + q.name + "? Nothing will be delivered until it is resumed.", () => call("POST", qp + "/mover/pause").then(() => status("mover paused"))));
    }
    box.append(head);
    const cs = el("div", { class: "counters" },
      counter("head", q.head), counter("depth", q.depth), counter("oldest", fmtAge(q.oldestAgeSeconds), "oldest"),
      counter("dead letters", q.deadLetters + (q.deadLettersCapped ? "+" : ""), "dead"),
      counter("lanes blocked", q.lanesBlocked, "blocked"));
    if (m) cs.append(counter("delivered", m.delivered), counter("retries", m.retries),
      counter("dead-lettered", m.deadLettered, "deadLettered"), counter("in flight", m.inFlight, "inFlight"),
      counter("p99 latency", fmtAge(m.latencyP99Seconds), "p99"));
    box.append(cs);

    box.append(el("h3", { text: "Lanes" }), table("lanes", ["key", "head seq", "kind", "pending", "attempts", "error class", "last error", "failing since", "next retry"],
      (q.lanes || []).map(l => el("tr", { class: "lane" + (l.failing ? " failing" : ""), "data-key": l.key },
        el("td", { text: l.key }), el("td", { text: String(l.seq) }), el("td", { text: l.kind }),
        el("td", { text: String(l.pending || "") }), el("td", { text: String(l.attempts || "") }),
        el("td", { text: l.errorClass || "" }), el("td", { class: "err", text: l.lastError || "" }),
        el("td", { text: fmtTime(l.failingSince) }), el("td", { text: fmtTime(l.nextRetry) })))));

    const deadRows = dead.items.map(d => el("tr", { class: "dead", "data-seq": String(d.seq), "data-key": d.key },
      el("td", { text: String(d.seq) }), el("td", { text: d.kind }), el("td", { text: d.key }),
      el("td", { class: "err", text: d.reason }), el("td", { text: fmtTime(d.deadAt) }),
      el("td", { class: "buttons" },
        el("button", { type: "button", class: "act-show", text: "Show", onclick: () => showEntry(q.name, d.seq, true) }),
        button("Replay", "act-replay", "Replay dead letter #" + d.seq + " (" + d.key + ")? It goes to the tail of the queue.",
          () => call("POST", qp + "/dead/" + d.seq + "/replay").then(r => status("replayed #" + r.seq + " as #" + r.newSeq))),
        button("Replay key", "act-replay-key", "Replay every dead letter of key " + d.key + ", in order?",
          () => call("POST", qp + "/dead/replay", { key: d.key }).then(r => status("replayed " + r.done.length + (r.error ? "; stopped: " + r.error : "")))),
        button("Discard", "act-discard", "Discard dead letter #" + d.seq + " for good? This cannot be undone.",
          () => call("POST", qp + "/dead/" + d.seq + "/discard").then(r => status("discarded #" + r.seq))))));
    box.append(el("h3", { text: "Dead letters" }), table("dead", ["seq", "kind", "key", "reason", "at", ""], deadRows));

    box.append(el("h3", { text: "Pending (first " + pending.items.length + ")" }), table("pending", ["seq", "kind", "key", "size", "attempts", "last error", ""],
      pending.items.map(p => el("tr", { class: "pending", "data-seq": String(p.seq) },
        el("td", { text: String(p.seq) }), el("td", { text: p.kind }), el("td", { text: p.key }),
        el("td", { text: String(p.size) }), el("td", { text: String(p.attempts || "") }), el("td", { class: "err", text: p.lastError || "" }),
        el("td", {}, el("button", { type: "button", class: "act-show", text: "Show", onclick: () => showEntry(q.name, p.seq, false) }))))));
    return box;
  }

  function renderStats(s) {
    const box = document.getElementById("stats");
    box.replaceChildren();
    if (!s) return;
    box.append(el("h2", { text: "Engine" }), el("div", { class: "counters" },
      counter("commits", s.commits), counter("rollbacks", s.rollbacks), counter("reruns", s.reruns),
      counter("serial mode", s.serialMode, "serialMode"), counter("redo limit", s.redoLimit, "redoLimit"),
      counter("attempts p99", s.attemptsP99, "attemptsP99")));
    const kv = (title, obj) => table("kv", [title, "count"], Object.entries(obj || {}).sort().map(([k, v]) =>
      el("tr", {}, el("td", { text: k || "(no table)" }), el("td", { text: String(v) }))));
    box.append(el("div", { class: "pair" }, kv("reruns by cause", s.rerunsByCause), kv("conflicts by table", s.conflicts)));
  }

  function fill(path, item) {
    return path.replace(/\{(\w+)\}/g, (_, f) => encodeURIComponent(item[f]));
  }

  function sectionActions(sec, actions, item, fields) {
    return (actions || []).map(a => button(a.label, "act-section", a.confirm, note => {
      const payload = Object.assign({}, fields || {}, a.body || {});
      if (a.note) payload.note = note;
      return call("POST", sec.name + "/" + fill(a.path, item), payload).then(() => status(a.label + ": done"));
    }, a.note));
  }

  // sectionDynamic builds the parts of a section panel that refresh: its
  // counters and its list.
  function sectionDynamic(sec, c, page) {
    const dyn = el("div", { class: "dyn" });
    if (c) {
      dyn.append(el("div", { class: "counters" }, ...Object.entries(c).map(([k, v]) => counter(k, v))));
    }
    if (page) {
      const cols = sec.list.columns;
      dyn.append(table("items", cols.map(c => c.label).concat([""]), page.items.map(it => el("tr", { class: "item" },
        ...cols.map(c => el("td", { text: it[c.field] == null ? "" : (typeof it[c.field] === "object" ? JSON.stringify(it[c.field]) : String(it[c.field])) })),
        el("td", { class: "buttons" }, ...sectionActions(sec, sec.list.actions, it))))));
    }
    return dyn;
  }

  // sectionPanel builds a section's panel once: its title, a place for the
  // dynamic part, and its lookup form, which refreshes never touch (the
  // operator may be typing in it).
  function sectionPanel(sec) {
    const box = el("div", { class: "section", "data-section": sec.name }, el("h2", { text: sec.title || sec.name }), el("div", { class: "dyn" }));
    if (sec.lookup) {
      const inputs = (sec.lookup.fields || []).map(f => el("input", { type: "text", placeholder: f.label, name: f.field, class: "lookup-field" }));
      const out = el("pre", { class: "lookup-out" });
      const acts = el("span", { class: "buttons lookup-acts" });
      const go = async () => {
        acts.replaceChildren();
        const q = new URLSearchParams();
        const vals = {};
        for (const i of inputs) { q.set(i.name, i.value); vals[i.name] = i.value; }
        try {
          const it = await call("GET", sec.name + "/" + sec.lookup.path + "?" + q.toString());
          out.textContent = JSON.stringify(it, null, 2);
          acts.append(...sectionActions(sec, sec.lookup.actions, it, vals).filter(Boolean));
        } catch (e) { out.textContent = e.message; }
      };
      box.append(el("form", { class: "lookup", onsubmit: e => { e.preventDefault(); go(); } },
        el("span", { text: sec.lookup.label + ": " }), ...inputs, el("button", { type: "submit", text: "Look up" })), acts, out);
    }
    return box;
  }

  const sectionBoxes = new Map();

  // The page keeps a part's DOM while its data is unchanged, so that a
  // refresh never swaps a button out from under the operator's click.
  const rendered = new Map(); // part -> JSON of the data it was built from
  const built = new Map();    // part -> its element
  function memo(part, data, build) {
    const sig = JSON.stringify(data);
    if (rendered.get(part) === sig && built.has(part)) return built.get(part);
    const node = build();
    rendered.set(part, sig);
    built.set(part, node);
    return node;
  }

  async function refresh() {
    if (busy) return;
    try {
      const o = await call("GET", "overview");
      const qs = [];
      for (const q of o.queues) {
        const qp = "queues/" + encodeURIComponent(q.name);
        const [dead, pending] = await Promise.all([call("GET", qp + "/dead?limit=50"), call("GET", qp + "/entries?limit=50")]);
        qs.push(memo("queue:" + q.name, [q, dead, pending], () => renderQueue(q, dead, pending)));
      }
      if (busy) return;
      const qbox = document.getElementById("queues");
      if (qs.length !== qbox.children.length || qs.some((n, i) => qbox.children[i] !== n)) qbox.replaceChildren(...qs);
      if (rendered.get("stats") !== JSON.stringify(o.stats)) { rendered.set("stats", JSON.stringify(o.stats)); renderStats(o.stats); }
      const secs = document.getElementById("sections");
      for (const sec of o.sections) {
        const [counters, page] = await Promise.all([
          sec.counters ? call("GET", sec.name + "/" + sec.counters) : null,
          sec.list ? call("GET", sec.name + "/" + sec.list.path) : null]);
        if (busy) return;
        const sig = JSON.stringify([counters, page]);
        if (rendered.get("section:" + sec.name) === sig) continue;
        rendered.set("section:" + sec.name, sig);
        const dyn = sectionDynamic(sec, counters, page);
        let box = sectionBoxes.get(sec.name);
        if (!box) {
          box = sectionPanel(sec);
          sectionBoxes.set(sec.name, box);
          secs.append(box);
        }
        box.querySelector(".dyn").replaceWith(dyn);
      }
      const acts = await call("GET", "actions");
      document.getElementById("actions-table").replaceChildren(table("log", ["time", "who", "action", "note", "status", "error"],
        acts.slice(0, 20).map(a => el("tr", {}, el("td", { text: fmtTime(a.time) }), el("td", { text: a.actor }),
          el("td", { text: a.path }), el("td", { text: a.note || "" }), el("td", { text: String(a.status) }), el("td", { class: "err", text: a.error || "" })))));
      body.dataset.loaded = String((parseInt(body.dataset.loaded, 10) || 0) + 1);
      updated("updated " + new Date().toLocaleTimeString());
    } catch (e) {
      updated("refresh failed: " + e.message, true);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (document.getElementById("autorefresh").checked) await refresh();
      schedule();
    }, refreshMs);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("mode").textContent = readOnly ? "read-only" : "";
    const confirmBox = el("div", { id: "confirm", class: "modal", hidden: true },
      el("div", { class: "dialog", role: "dialog" },
        el("p", { id: "confirm-question" }),
        el("textarea", { id: "confirm-note", placeholder: "note (recorded with the action)", rows: 3 }),
        el("div", {}, el("button", { type: "button", id: "confirm-ok", text: "Confirm" }),
          el("button", { type: "button", id: "confirm-cancel", text: "Cancel" }))));
    body.append(confirmBox);
    document.getElementById("detail-close").onclick = () => { document.getElementById("detail").hidden = true; };
    document.getElementById("status").onclick = () => status("");
    refresh().then(schedule);
  });
})();
