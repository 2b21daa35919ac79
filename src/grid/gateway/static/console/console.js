/* The internal console: call centre and key-accounts team. Sign in with an operator or agent key; every read
 * and write goes through the public API (the same routes, contract and audit as any client). No inline script:
 * the page is served under a Content-Security-Policy without 'unsafe-inline'. */
(function () {
  "use strict";
  const $ = (sel, root = document) => root.querySelector(sel);
  const KEY_STORE = "contextgrid-console-key";
  const ROLES = ["outage", "emergency", "billing", "key_account", "technical", "portal"];
  const state = { key: null, cid: null, ctx: null, outage: null, timer: null };

  const { ApiError, money } = window.contextgrid;
  const api = window.contextgrid.client(() => state.key);
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v == null) continue;
      if (k === "text") el.textContent = v; else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c != null) el.append(c);
    return el;
  }
  function showError(node, err) {
    node.hidden = false;
    node.textContent = err.field ? `${err.message} (field: ${err.field})` : err.message;
  }
  function table(headers, rows) {
    if (!rows.length) return h("p", { class: "muted", text: "None." });
    return h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { text: t })))),
      h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => (c instanceof Node ? h("td", {}, c) : h("td", { text: String(c ?? "") }))))))));
  }
  const cpath = (rest = "") => `/v1/customers/${encodeURIComponent(state.cid)}${rest}`;

  // -- sign in and views ------------------------------------------------------------------------------------
  async function signIn(key) {
    state.key = key;
    await api("/v1/search?q=__probe__&limit=1");  // an operator/agent route: a customer key gets 403
    sessionStorage.setItem(KEY_STORE, key);
    $("#sign-in").hidden = true;
    $("#nav").hidden = false;
    show("customers");
  }
  function show(view) {
    for (const v of ["customers", "outages", "reviews"]) $(`#${v}-view`).hidden = v !== view;
    for (const b of document.querySelectorAll(".tab")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
    document.dispatchEvent(new CustomEvent("console:view", { detail: view }));  // reviews.js loads its queue
  }

  // -- search -----------------------------------------------------------------------------------------------
  async function search(q) {
    const err = $("#search-error");
    err.hidden = true;
    try {
      const res = await api(`/v1/search?q=${encodeURIComponent(q)}&limit=20`);
      $("#results").replaceChildren(...(res.items.length ? res.items.map((m) => h("li", {},
        h("button", { type: "button", class: "result", "data-cid": m.customer_id },
          h("strong", { text: m.name }), ` ${m.customer_id} · ${m.kind} · `, h("span", { class: "muted", text: `${m.matched}: ${m.value}` }))))
        : [h("li", { class: "muted", text: "No customer matches." })]));
    } catch (e) { showError(err, e); }
  }

  // -- one customer's whole context -------------------------------------------------------------------------
  async function openCustomer(cid) {
    state.cid = cid;
    state.ctx = await api(cpath());
    $("#customer").hidden = false;
    renderHead();
    renderAccounts();
    renderContacts();
    renderNotes();
    renderEvents();
    const [bills, messages] = await Promise.all([api(cpath("/bills")), api(cpath("/messages"))]);
    renderBills(bills.items, bills.amount_due);
    renderMessages(messages.items);
    renderUsage(bills.items);
    // the meters' month: the newest bill's, else this month
    $("#c-usage-month").value = bills.items.length ? bills.items[0].period_start.slice(0, 7) : new Date().toISOString().slice(0, 7);
    loadMeterUsage();
    await renderAudit();
  }
  async function renderAudit() {
    // who changed what and when (h3's audit log, recorded by the shard with each write; operator keys only)
    const node = $("#c-audit");
    try {
      const audit = await api(`/v1/audit?customer=${encodeURIComponent(state.cid)}&limit=20`);
      node.replaceChildren(table(["When", "Who", "Change", "What changed"], audit.items.map((e) =>
        [String(e.at || "").slice(0, 19).replace("T", " "), `${e.key_id || "–"} (${e.role || "system"})`,
          `${e.method || ""} ${e.route || e.kind}`.trim(), whatChanged(e)])));
    } catch (e) {
      node.replaceChildren(h("p", { class: "muted", text: e.status === 403 ? "The audit trail needs an operator key." : e.message }));
    }
  }
  function whatChanged(e) {
    // a patch or replacement carries what really changed in the context (path, from, to; grid.audit.diff):
    // shown one change a line, so a whole-context PUT reads as the one field it changed; else the request's words
    if (!Array.isArray(e.diff) || !e.diff.length) return summarize(e.changes);
    const value = (v) => (v == null ? "–" : summarize(v));
    return h("ul", { class: "diff" }, ...e.diff.map((d) => h("li", {},
      h("code", { text: d.path }), ": ", h("span", { class: "from", text: value(d.from) }), " → ",
      h("span", { class: "to", text: value(d.to) }))));
  }
  function summarize(changes) {
    if (changes == null) return "";
    const text = typeof changes === "string" ? changes : JSON.stringify(changes);
    return text.length > 160 ? `${text.slice(0, 157)}…` : text;
  }
  function renderHead() {
    const c = state.ctx;
    const cls = c.classification || {};
    $("#c-name").textContent = c.name;
    $("#c-meta").textContent = `${c.customer_id} · ${c.kind} · ${c.segment} · version ${c.version}`;
    const prios = c.accounts.flatMap((a) => a.service_points.map((sp) => sp.load_priority));
    const top = prios.includes("critical") ? "critical" : prios.includes("priority") ? "priority" : "normal";
    const badges = [h("span", { class: `badge ${top}`, text: `${top} load` })];
    if (cls.key_account) badges.push(h("span", { class: "badge key", text: "key account" }));
    if (cls.portfolio_id) badges.push(h("span", { class: "badge", text: `portfolio ${cls.portfolio_id}` }));
    $("#c-badges").replaceChildren(...badges);
    $("#c-class").replaceChildren(table(["", ""], [
      ["Key account", cls.key_account ? `yes (${(cls.reasons || []).join(", ")})` : "no"],
      ["Portfolio", cls.portfolio_id || "–"],
      ["Load priority", top],
      ["Churn risk", cls.churn_risk == null ? "–" : `${(cls.churn_risk * 100).toFixed(0)} %`]]));
  }
  function renderAccounts() {
    const rows = [];
    for (const a of state.ctx.accounts) {
      for (const sp of a.service_points) {
        const sel = h("select", { class: "priority", "data-sp": sp.service_point_id, "aria-label": `Load priority of ${sp.service_point_id}` },
          ...["normal", "priority", "critical"].map((p) => h("option", { value: p, selected: p === sp.load_priority, text: p })));
        rows.push([a.account_id, a.rate_plan_id, sp.service_point_id, sp.meter_id, sp.premise_address, sel]);
      }
    }
    $("#c-accounts").replaceChildren(table(["Account", "Plan", "Service point", "Meter", "Premise", "Load priority"], rows));
  }
  async function savePriority(spId, value) {
    // load priority lives on the service point: the whole context is written back (operator/agent PUT)
    const status = $("#priority-status");
    const body = JSON.parse(JSON.stringify(state.ctx));
    delete body.version;
    for (const a of body.accounts) for (const sp of a.service_points) if (sp.service_point_id === spId) sp.load_priority = value;
    try {
      state.ctx = await api(cpath(), { method: "PUT", body });
      status.hidden = false;
      status.className = "status ok";
      status.textContent = `Saved: ${spId} is now ${value}.`;
      renderHead();
      renderAudit();
    } catch (e) { status.className = "status error"; showError(status, e); }
  }
  function renderBills(bills, due) {
    // the amount due is the server's (grid.balances): what the portal and the payment reminder state too
    const owed = due ? h("p", {}, due.amount_due_cents > 0 ? "Amount due: " : "Nothing due: ",
      h("strong", { id: "c-amount-due", text: money(due.amount_due_cents) }),
      due.due_date && due.amount_due_cents > 0 ? h("span", { class: "muted", text: ` by ${due.due_date}` }) : null) : null;
    $("#c-bills").replaceChildren(...[owed, table(["Period", "Account", "Total", "Lines"], bills.slice(0, 12).map((b) =>
      [b.period_start.slice(0, 7), b.account_id, money(b.total_cents),
        h("details", {}, h("summary", { text: `${b.lines.length} lines` }),
          h("ul", {}, ...b.lines.map((l) => h("li", { text: `${l.label || l.code}: ${money(l.amount_cents)}` }))))]))].filter(Boolean));
    const pays = state.ctx.payments || [];
    $("#c-payments").replaceChildren(table(["Date", "Amount", "Method"], pays.slice(-12).reverse().map((p) =>
      [p.date, money(p.amount_cents), p.method])));
  }
  const kwh = (wh) => `${Math.round(wh / 1000).toLocaleString("en-US")} kWh`;
  function bars(node, labels, values, title) {
    // one SVG bar per value (Wh), labelled under the bar, the exact figure in each bar's tooltip
    const max = Math.max(...values, 1);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${values.length * 30} 120`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title);
    values.forEach((v, i) => {
      const r = document.createElementNS(ns, "rect");
      const ht = Math.max(1, (v / max) * 100);
      r.setAttribute("x", String(i * 30 + 4)); r.setAttribute("y", String(105 - ht));
      r.setAttribute("width", "22"); r.setAttribute("height", String(ht)); r.setAttribute("class", "bar");
      const t = document.createElementNS(ns, "title");
      t.textContent = `${labels[i]}: ${kwh(v)}`;
      r.append(t);
      const lab = document.createElementNS(ns, "text");
      lab.setAttribute("x", String(i * 30 + 15)); lab.setAttribute("y", "118"); lab.setAttribute("class", "axis");
      lab.textContent = labels[i];
      svg.append(r, lab);
    });
    node.replaceChildren(svg);
  }
  function renderUsage(bills) {
    // monthly energy from the bills' energy lines, newest 12 months
    const byMonth = new Map();
    for (const b of bills) {
      const wh = b.lines.filter((l) => /^ENERGY/.test(l.code)).reduce((s, l) => s + (l.quantity || 0), 0);
      const m = b.period_start.slice(0, 7);
      byMonth.set(m, (byMonth.get(m) || 0) + wh);
    }
    const months = [...byMonth.keys()].sort().slice(-12);
    const node = $("#c-usage");
    if (!months.length) { node.replaceChildren(h("p", { class: "muted", text: "No billed usage." })); return; }
    bars(node, months.map((m) => m.slice(5)), months.map((m) => byMonth.get(m)), "Energy billed per month");
  }
  async function loadMeterUsage() {
    // the meters' own readings (GET /usage, the route the portal charts), one bar per day of the chosen month
    const month = $("#c-usage-month").value;
    const node = $("#c-usage-daily"), total = $("#c-usage-total");
    if (!month || !state.cid) return;
    try {
      const data = await api(cpath(`/usage?month=${month}&resolution=daily`));
      const byDay = new Map();
      for (const it of data.items) byDay.set(it.start, (byDay.get(it.start) || 0) + it.import_wh);
      const days = [...byDay.keys()].sort();
      const sum = days.reduce((a, d) => a + byDay.get(d), 0);
      total.textContent = sum ? `${month}: ${kwh(sum)} from the grid` : "";
      if (!sum) { node.replaceChildren(h("p", { class: "muted", text: `No meter readings in ${month}.` })); return; }
      // a day's start is its local midnight in UTC: noon after it is the same calendar day everywhere
      bars(node, days.map((d) => String(new Date(Date.parse(d) + 12 * 3600e3).getUTCDate())), days.map((d) => byDay.get(d)),
        `Energy per day in ${month}`);
    } catch (e) { node.replaceChildren(h("p", { class: "error", text: e.message })); }
  }
  function renderMessages(items) {
    $("#c-messages").replaceChildren(table(["When", "Type", "Channel", "State"], items.slice(0, 20).map((m) =>
      [m.created_at.slice(0, 16).replace("T", " "), m.type, m.delivered_via ? m.delivered_via.channel : (m.channel || "–"), m.state])));
  }
  function renderEvents() {
    const ev = (state.ctx.events || []).slice(-15).reverse();
    $("#c-events").replaceChildren(table(["When", "Type"], ev.map((e) => [String(e.at || e.time || e.date || "").slice(0, 16), e.type || e.kind])));
  }
  function renderNotes() {
    const notes = (state.ctx.notes || []).slice(-10).reverse();
    $("#c-notes").replaceChildren(...(notes.length ? notes.map((n) => h("p", { class: "note" },
      h("span", { class: `badge ${n.visibility === "customer" ? "key" : "normal"}`, text: n.visibility || "internal" }),
      ` ${n.text} `, h("span", { class: "muted", text: `${n.author || ""} ${String(n.created_at || "").slice(0, 10)}` })))
      : [h("p", { class: "muted", text: "No notes." })]));
  }

  // -- contacts ---------------------------------------------------------------------------------------------
  function channelRow(ch) {
    return h("div", { class: "channel row" },
      h("select", { class: "ch-type", "aria-label": "Channel" }, ...["email", "sms", "voice"].map((t) => h("option", { value: t, selected: t === ch.type, text: t }))),
      h("input", { class: "ch-address", value: ch.address || "", "aria-label": "Address", placeholder: "address or number" }),
      h("input", { class: "ch-quiet-start", value: ch.quiet_hours ? ch.quiet_hours.start : "", "aria-label": "Quiet from", placeholder: "quiet from 22:00" }),
      h("input", { class: "ch-quiet-end", value: ch.quiet_hours ? ch.quiet_hours.end : "", "aria-label": "Quiet until", placeholder: "until 07:00" }));
  }
  function contactForm(c) {
    const form = h("form", { class: "contact", "data-contact-id": c.contact_id },
      h("div", { class: "row" },
        h("input", { class: "c-name", value: c.name || "", "aria-label": "Name", placeholder: "name" }),
        h("input", { class: "c-language", value: c.language || "en", "aria-label": "Language", size: "3" })),
      h("fieldset", { class: "roles" }, h("legend", { text: "Roles" }), ...ROLES.map((r) => h("label", { class: "inline" },
        h("input", { type: "checkbox", value: r, checked: (c.roles || []).includes(r) }), ` ${r}`))),
      ...(c.channels.length ? c.channels : [{ type: "email", address: "" }]).map(channelRow),
      h("button", { type: "submit", class: "save-contact" }, "Save contact"),
      h("p", { class: "status", role: "status", hidden: true }));
    return form;
  }
  function renderContacts() {
    $("#c-contacts").replaceChildren(...state.ctx.contacts.map(contactForm));
  }
  async function saveContact(form) {
    const status = $(".status", form);
    const channels = [...form.querySelectorAll(".channel")].map((row, i) => {
      const qs = $(".ch-quiet-start", row).value.trim(), qe = $(".ch-quiet-end", row).value.trim();
      return { type: $(".ch-type", row).value, address: $(".ch-address", row).value.trim(), preference: i + 1,
        quiet_hours: qs && qe ? { start: qs, end: qe } : null };
    }).filter((ch) => ch.address);
    // write back only what the agent changed: roles keep their order, and the language box's "en" (shown for a
    // contact without one) is not sent, so the audit trail's diff holds the edit and nothing the form made up
    const old = state.ctx.contacts.find((c) => c.contact_id === form.dataset.contactId) || {};
    const checked = [...form.querySelectorAll(".roles input:checked")].map((i) => i.value);
    const roles = [...(old.roles || []).filter((r) => checked.includes(r)), ...checked.filter((r) => !(old.roles || []).includes(r))];
    const contact = { contact_id: form.dataset.contactId, name: $(".c-name", form).value.trim(), roles, channels };
    const language = $(".c-language", form).value.trim();
    if (language && (old.language || language !== "en")) contact.language = language;
    try {
      state.ctx = await api(cpath(), { method: "PATCH", body: { contacts: { upsert: [contact] } } });
      renderContacts();
      const again = $(`form[data-contact-id="${CSS.escape(contact.contact_id)}"] .status`);
      again.hidden = false; again.className = "status ok"; again.textContent = "Saved.";
    } catch (e) { status.className = "status error"; showError(status, e); }
  }

  // -- outages ----------------------------------------------------------------------------------------------
  async function declareOutage() {
    const err = $("#outage-error");
    err.hidden = true;
    const sps = $("#o-sps").value.split(/[\s,]+/).filter(Boolean);
    const body = { cause: $("#o-cause").value.trim() };
    if (sps.length) body.service_point_ids = sps;
    if ($("#o-attr").value.trim()) body.area = { attribute: $("#o-attr").value.trim(), value: $("#o-value").value.trim() };
    if ($("#o-eta").value) body.estimated_restoration = new Date($("#o-eta").value).toISOString().replace(/\.\d+Z$/, "Z");
    try {
      const out = await api("/v1/outages", { method: "POST", body });
      state.outage = out.outage_id;
      $("#outage-status").hidden = false;
      $("#o-title").textContent = `Outage ${out.outage_id}`;
      $("#o-summary").textContent = `${out.customers} customers, ${out.service_points} service points: ${out.critical} critical, ${out.priority} priority, ${out.key_accounts} key accounts; ${out.notifications} messages, ${out.without_contact} without an outage contact.`;
      showUnmatched(out);
      watch();
    } catch (e) { showError(err, e); }
  }
  // ids the operator named that no customer has (a typo?): the outage was declared for the others only
  function showUnmatched(out) {
    const el = $("#o-unmatched"), lists = out.unmatched || {};
    const parts = Object.entries(lists).map(([field, ids]) => `${field}: ${ids.map((v) => typeof v === "object" ? `${v.attribute}=${v.value}` : v).join(", ")}`);
    const listed = Object.values(lists).reduce((n, ids) => n + ids.length, 0);
    el.hidden = !parts.length;
    el.textContent = parts.length ? `No customer has ${out.unmatched_total} of what you named: ${parts.join("; ")}${out.unmatched_total > listed ? " …" : ""}` : "";
  }
  async function watch() {
    clearTimeout(state.timer);
    if (!state.outage) return;
    const s = await api(`/v1/outages/${state.outage}?limit=200`);
    $("#o-counts").replaceChildren(...Object.entries(s.counts).sort().map(([k, v]) => h("li", { class: `count ${k}`, "data-state": k },
      h("strong", { text: String(v) }), ` ${k}`)));
    $("#o-recipients tbody").replaceChildren(...s.recipients.map((m) => h("tr", {},
      ...[m.customer_id, m.priority, m.type, (m.delivered_via || {}).contact_id || m.contact_id, (m.delivered_via || {}).channel || m.channel, m.state, m.attempts]
        .map((v) => h("td", { text: String(v ?? "–") })))));
    const busy = (s.counts.queued || 0) + (s.counts.sending || 0) + (s.counts.sent || 0);
    state.timer = setTimeout(watch, busy ? 700 : 3000);
  }

  // what the identity review queue (reviews.js, its own file) uses of this page
  window.contextgrid.console = { api, h, table, showError,
    openCustomer: (cid) => { show("customers"); return openCustomer(cid); } };

  // -- wiring -----------------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("#sign-in-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { await signIn($("#key").value.trim()); } catch (e) {
        showError($("#sign-in-error"), e.status === 403 ? new ApiError(403, { detail: "This key is not a staff key." }) : e);
      }
    });
    $("#sign-out").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); location.reload(); });
    for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => show(b.dataset.view));
    $("#search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("#q").value.trim()); });
    $("#results").addEventListener("click", (ev) => {
      const b = ev.target.closest(".result");
      if (b) openCustomer(b.dataset.cid).catch((e) => showError($("#search-error"), e));
    });
    $("#c-accounts").addEventListener("change", (ev) => {
      if (ev.target.matches(".priority")) savePriority(ev.target.dataset.sp, ev.target.value);
    });
    $("#c-contacts").addEventListener("submit", (ev) => { ev.preventDefault(); saveContact(ev.target); });
    $("#c-usage-month").addEventListener("change", loadMeterUsage);
    $("#add-contact").addEventListener("click", () => {
      $("#c-contacts").append(contactForm({ contact_id: `K${Date.now().toString(36)}`, name: "", roles: ["outage"], channels: [] }));
    });
    $("#note-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const note = { text: $("#note-text").value.trim(), visibility: $("#note-customer").checked ? "customer" : "internal" };
      state.ctx = await api(cpath(), { method: "PATCH", body: { notes: { add: [note] } } });
      $("#note-text").value = "";
      renderNotes();
    });
    $("#outage-form").addEventListener("submit", (ev) => { ev.preventDefault(); declareOutage(); });
    $("#o-restore").addEventListener("click", async () => {
      await api(`/v1/outages/${state.outage}/restore`, { method: "POST", body: {} });
      watch();
    });
    const saved = sessionStorage.getItem(KEY_STORE);
    if (saved) signIn(saved).catch(() => sessionStorage.removeItem(KEY_STORE));
  });
})();
