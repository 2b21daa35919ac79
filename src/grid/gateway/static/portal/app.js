/* The customer portal: sign in with a customer key, then read and change the customer's own context through
 * the public API (the same routes any client uses; nothing here is portal-only on the server).
 * `?as_of=YYYY-MM-DD` in the page URL looks at the account as of that day (demo bases end in the past). */
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const KEY_STORE = "contextgrid-portal-key";
  const PROJECT = /^\[project\] (.*) · from (\d{4}-\d{2}-\d{2}) · saves (\d+) kWh\/month$/;
  const state = {
    key: null, cid: null, ctx: null, bill: null, redraw: {},
    asOf: new URLSearchParams(location.search).get("as_of"),
  };

  // -- formatting (money stays integer cents until the very last string) ------------------------------------
  const money = window.contextgrid.money;
  const signedMoney = (c) => (c > 0 ? "+" : "") + money(c);
  const axisMoney = (c) => "$" + Math.round(c / 100).toLocaleString("en-US");
  function kwh(wh) {
    const v = wh / 1000;
    return `${v.toLocaleString("en-US", { maximumFractionDigits: Math.abs(v) < 100 ? 1 : 0 })} kWh`;
  }
  const pct = (x) => (x == null ? "–" : `${(x * 100).toFixed(1)} %`);
  const monthLabel = (m) => {
    const [y, mm] = m.split("-");
    return `${["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][+mm - 1]} ${y.slice(2)}`;
  };
  const monthName = (m) => new Date(`${m}-15T00:00:00Z`).toLocaleString("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
  function lineLabel(code) {
    let m = /^ENERGY_P(\d+)_T(\d+)$/.exec(code);
    if (m) return `Energy, period ${+m[1] + 1}${m[2] !== "0" ? `, tier ${+m[2] + 1}` : ""}`;
    if ((m = /^DEMAND_P(\d+)$/.exec(code))) return `Demand, period ${+m[1] + 1}`;
    if ((m = /^RIDER_(.+)$/.exec(code))) return `Rider ${m[1]}`;
    if ((m = /^TAX_(.+)$/.exec(code))) return `Tax ${m[1]}`;
    return { DEMAND_FLAT: "Demand", FIXED: "Customer charge", NEM_CREDIT: "Solar export credit",
      MINIMUM: "Minimum charge" }[code] || code;
  }
  function quantity(q, unit) {
    if (unit === "Wh") return kwh(q);
    if (unit === "W") return `${(q / 1000).toLocaleString("en-US", { maximumFractionDigits: 1 })} kW`;
    return `${q} ${unit}${q === 1 ? "" : "s"}`;
  }
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v === true) node.setAttribute(k, "");
      else if (v !== false && v != null) node.setAttribute(k, v);
    }
    for (const c of children.flat()) if (c != null) node.append(c.nodeType ? c : String(c));
    return node;
  }

  // -- the API ----------------------------------------------------------------------------------------------
  const { ApiError } = window.contextgrid;
  const api = window.contextgrid.client(() => state.key);
  const customer = (rest = "") => `/v1/customers/${encodeURIComponent(state.cid)}${rest}`;
  const withAsOf = (path) => (state.asOf ? `${path}${path.includes("?") ? "&" : "?"}as_of=${state.asOf}` : path);
  function showError(node, err) {
    node.hidden = false;
    node.textContent = err.field ? `${err.message} (${err.field})` : err.message;
  }

  // -- sign in ----------------------------------------------------------------------------------------------
  async function signIn(key) {
    state.key = key;
    const page = await api("/v1/customers?limit=1");
    if (!page.items.length) throw new ApiError(404, { detail: "This key is not linked to a customer." });
    state.cid = page.items[0].customer_id;
    sessionStorage.setItem(KEY_STORE, key);
    $("#sign-in").hidden = true;
    $("#app").hidden = false;
    $("#who").hidden = false;
    $("#as-of-note").textContent = state.asOf ? `Showing your account as of ${state.asOf}.` : "";
    await loadAll();
  }
  function signOut() {
    sessionStorage.removeItem(KEY_STORE);
    location.reload();
  }

  async function loadAll() {
    await loadContext();
    await Promise.all([loadBill(), loadHistory(), loadGreen(), loadForecast(), loadPlanChoices(), loadMessages()]);
    const through = state.bill && state.bill.items.map((i) => i.data_through).filter(Boolean).sort().pop();
    const day = state.asOf || new Date().toISOString().slice(0, 10);
    let month = day.slice(0, 7);
    if (through) {
      const last = new Date(Date.parse(through) - 12 * 3600 * 1000).toISOString().slice(0, 7);
      if (last < month) month = last;
    }
    $("#usage-month").value = month;
    await loadUsage();
  }

  async function loadContext() {
    state.ctx = await api(customer());
    $("#who-name").textContent = `${state.ctx.name} · ${state.ctx.customer_id}`;
    renderContacts();
    renderNotes();
  }

  // -- current bill -----------------------------------------------------------------------------------------
  function linesTable(lines) {
    return h("div", { class: "table-wrap" }, h("table", { class: "lines" },
      h("tbody", {}, lines.map((l) => h("tr", {},
        h("td", {}, l.label || lineLabel(l.code)), h("td", { class: "num muted" }, quantity(l.quantity, l.unit)),
        h("td", { class: "num" }, money(l.amount_cents)))))));
  }
  async function loadBill() {
    const box = $("#bill");
    try {
      const data = state.bill = await api(withAsOf(customer("/bill/current")));
      box.className = "";
      box.replaceChildren(...data.items.map((a) => h("div", { class: "account" },
        data.items.length > 1 ? h("h3", {}, `Account ${a.account_id}`) : null,
        h("div", { class: "big", id: `projected-${a.account_id}` }, money(a.projected.total_cents)),
        h("p", { class: "muted" }, `expected for ${a.period_start} to ${a.period_end} on ${a.plan_name || a.rate_plan_id}`),
        h("p", { class: "so-far" }, "So far: ", h("strong", { class: "to-date" }, money(a.to_date.total_cents)),
          ` for ${a.to_date.days} day${a.to_date.days === 1 ? "" : "s"} (${kwh(a.to_date.import_wh)})`),
        h("details", {}, h("summary", {}, "Projected bill lines"), linesTable(a.projected.lines)),
        a.to_date.lines.length ? h("details", {}, h("summary", {}, "Bill to date lines"), linesTable(a.to_date.lines)) : null)));
    } catch (err) {
      box.className = "error";
      box.textContent = err.message;
    }
  }

  // -- past bills, payments and the amount due ------------------------------------------------------------
  // The amount due is the server's (GET /bills: grid.balances), the same figure the payment reminder states;
  // the page only formats it.
  async function loadHistory() {
    const box = $("#history");
    try {
      const day = state.asOf || new Date().toISOString().slice(0, 10);
      const data = await api(withAsOf(customer("/bills")));  // bills issued by as_of, and the amount due then
      const bills = data.items;
      const payments = (state.ctx.payments || []).filter((p) => p.date <= day)
        .sort((a, b) => (a.date < b.date ? 1 : -1));
      box.className = "";
      if (!bills.length && !payments.length) {
        box.replaceChildren(h("p", { class: "muted" }, "No bills yet."));
        return;
      }
      const due = data.amount_due_cents;
      const by = data.amount_due && data.amount_due.due_date;
      box.replaceChildren(
        h("p", {}, due > 0 ? "Amount due: " : due < 0 ? "In credit: " : "Nothing due: ",
          h("strong", { id: "amount-due", class: "big" }, money(due)),
          due > 0 && by ? h("span", { class: "muted", id: "due-date" }, ` by ${by}`) : null),
        h("h3", {}, "Bills"),
        h("ul", { class: "list", id: "bill-history" }, bills.map((b) => h("li", { class: "past-bill", "data-bill-id": b.bill_id },
          h("details", {}, h("summary", {}, `${b.period_start} to ${b.period_end}: `, h("strong", { class: "total" }, money(b.total_cents))),
            (b.lines || []).length ? linesTable(b.lines) : h("p", { class: "muted" }, "No lines on this bill."))))),
        h("h3", {}, "Payments"),
        payments.length ? h("ul", { class: "list", id: "payments" }, payments.map((p) => h("li", { class: "payment" },
          `${p.date}: `, h("strong", {}, money(p.amount_cents)), p.method ? ` (${p.method})` : "")))
          : h("p", { class: "muted" }, "No payments yet."));
    } catch (err) {
      box.className = "error";
      box.textContent = err.message;
    }
  }

  // -- usage ------------------------------------------------------------------------------------------------
  async function loadUsage() {
    const month = $("#usage-month").value;
    const resolution = $("#usage-resolution").value;
    const chart = $("#usage-chart");
    if (!month) return;
    try {
      const data = await api(customer(`/usage?month=${month}&resolution=${resolution}`));
      const byStart = new Map();
      for (const it of data.items) {
        const cur = byStart.get(it.start) || { imp: 0, exp: 0 };
        cur.imp += it.import_wh;
        cur.exp += it.export_wh;
        byStart.set(it.start, cur);
      }
      // as_of: nothing after the day the page looks from (a demo base's later days exist, a real month's do not)
      const end = state.asOf ? new Date(Date.parse(`${state.asOf}T00:00:00Z`) + 36 * 3600e3).toISOString() : null;
      const keys = [...byStart.keys()].sort().filter((k) => !end || resolution === "monthly" || k < end);
      const labels = keys.map((k) => (resolution === "monthly" ? monthLabel(month)
        : resolution === "daily" ? String(new Date(Date.parse(k) + 12 * 3600e3).getUTCDate())
          : new Date(Date.parse(k)).toLocaleString("en-US", { day: "numeric", hour: "numeric" })));
      const up = keys.map((k) => byStart.get(k).imp / 1000);
      const down = keys.map((k) => byStart.get(k).exp / 1000);
      const draw = () => Charts.bars(chart, { labels, up, down, format: (v) => `${Math.round(v * 10) / 10}`,
        upName: "From the grid (kWh)", downName: "Sent to the grid (kWh)" });
      state.redraw.usage = draw;
      draw();
      const imp = up.reduce((a, b) => a + b, 0), exp = down.reduce((a, b) => a + b, 0);
      $("#usage-summary").textContent = `${monthName(month)}: ${kwh(imp * 1000)} from the grid` +
        (exp > 0 ? `, ${kwh(exp * 1000)} sent back.` : ".");
    } catch (err) {
      chart.textContent = err.message;
    }
  }

  async function downloadUsage(format) {
    const month = $("#usage-month").value;
    const err = $("#usage-download-error");
    err.hidden = true;
    // Green Button carries interval readings only; CSV follows the chosen view
    const resolution = format === "espi" ? "interval" : $("#usage-resolution").value;
    try {
      await window.contextgrid.download(() => state.key, customer(`/usage?month=${month}&resolution=${resolution}&format=${format}`),
        `usage-${state.cid}-${month}.${format === "espi" ? "xml" : "csv"}`);
    } catch (e) { showError(err, e); }
  }

  // -- rate plans -------------------------------------------------------------------------------------------
  async function loadPlanChoices() {
    // only the plans this customer may take (sector, demand and voltage limits, net metering with solar)
    const current = new Set(state.ctx.accounts.map((a) => a.rate_plan_id));
    let plans = [];
    try {
      plans = (await api(customer("/plans"))).items.filter((p) => p.eligible).map((p) => ({ id: p.plan_id, name: p.name }));
    } catch (err) {
      plans = [...current].map((id) => ({ id, name: id }));
    }
    $("#plan-choices").replaceChildren(...plans.map((p) => h("label", { class: "choice" },
      h("input", { type: "checkbox", name: "plan", value: p.id, checked: !current.has(p.id) }),
      ` ${p.name}`, current.has(p.id) ? h("span", { class: "badge" }, "your plan") : null)));
  }
  async function runScenario(ev) {
    ev.preventDefault();
    const err = $("#scenario-error");
    err.hidden = true;
    const plans = [...document.querySelectorAll("#plan-choices input:checked")].map((i) => i.value);
    const changes = {};
    const solar = Number($("#solar-kw").value), shift = Number($("#shift-pct").value), evk = Number($("#ev-kwh").value);
    if ($("#solar-kw").value !== "" && solar !== 0) changes.solar = { kw: solar };
    if ($("#shift-pct").value !== "" && shift !== 0) changes.shift = { percent: shift };
    if ($("#ev-kwh").value !== "" && evk !== 0) changes.ev = { kwh_per_day: evk };
    const body = { plans: plans.length ? plans : [state.ctx.accounts[0].rate_plan_id] };
    if (Object.keys(changes).length) body.changes = changes;
    const button = $("#compare-button");
    button.disabled = true;
    try {
      renderScenario(await api(withAsOf(customer("/scenarios")), { method: "POST", body }));
    } catch (e) {
      showError(err, e);
    } finally {
      button.disabled = false;
    }
  }
  function renderScenario(data) {
    $("#scenario-result").hidden = false;
    const best = data.items[0];
    const cur = data.items.find((i) => i.is_current);
    const n = data.months.length;
    // only the months with usage data are compared (the server leaves the others out: months_without_data)
    const span = n ? `over the ${n === 1 ? "month" : `${n} months`} with usage data (${monthName(data.months[0])}${n > 1 ? ` to ${monthName(data.months[n - 1])}` : ""})` : "";
    $("#scenario-summary").textContent = !n ? "We have no usage data for you in the last 12 months yet, so there is nothing to compare plans on."
      : cur && best !== cur && best.total_cents < cur.total_cents
        ? `${best.name} would have cost ${money(cur.total_cents - best.total_cents)} less than your current plan ${span}.`
        : `Your current plan is the cheapest of these ${span}.`;
    const missing = data.months_without_data || [];
    $("#scenario-missing").textContent = n && missing.length
      ? `No usage data for ${missing.length === 1 ? monthName(missing[0]) : `${missing.length} of the last 12 months`}: ${missing.length === 1 ? "it is" : "they are"} left out.` : "";
    $("#scenario-total-head").textContent = n === 1 ? "1 month" : `${n} months`;
    $("#scenario-table").hidden = !n;
    $("#scenario-chart").hidden = !n;
    if (!n) return;
    // saving: what the plan would have saved against the current one (negative: it would have cost more)
    const saving = (it) => (it.difference_cents == null || it.is_current ? null : -it.difference_cents);
    $("#scenario-table tbody").replaceChildren(...data.items.map((it) => h("tr", { class: it.is_current ? "current" : "" },
      h("td", { class: "rank" }, it.rank),
      h("td", { class: "plan" }, it.name, it.is_current ? h("span", { class: "badge" }, "current") : null),
      h("td", { class: "num total", "data-label": `${n} month${n === 1 ? "" : "s"}` }, money(it.total_cents)),
      h("td", { class: `num saving ${saving(it) > 0 ? "save" : saving(it) < 0 ? "cost" : ""}`, "data-label": "Saving" },
        saving(it) == null ? "–" : money(saving(it))),
      h("td", { class: "num muted today", "data-label": "vs today" }, it.change_from_today_cents == null ? "–" : signedMoney(it.change_from_today_cents)))));
    const series = data.items.slice(0, 8).map((it) => ({ name: it.name, values: it.bills.map((b) => b.total_cents),
      width: it.is_current ? 3 : 2 }));
    const draw = () => Charts.lines($("#scenario-chart"), { labels: data.months.map(monthLabel), series, format: axisMoney });
    state.redraw.scenario = draw;
    draw();
  }

  // -- forecast ---------------------------------------------------------------------------------------------
  async function loadForecast() {
    const box = $("#forecast");
    try {
      const data = await api(withAsOf(customer("/forecast?months=12")));
      const items = data.items;
      const draw = () => Charts.band($("#forecast-chart"), { labels: items.map((i) => monthLabel(i.month)),
        low: items.map((i) => i.low_cents), mid: items.map((i) => i.forecast_cents),
        high: items.map((i) => i.high_cents), level: data.levelized_cents, format: axisMoney });
      state.redraw.forecast = draw;
      draw();
      box.className = "";
      box.replaceChildren(
        h("p", {}, "Next 12 months: about ", h("strong", {}, money(data.total_cents)), ". With budget billing you would pay ",
          h("strong", { id: "levelized" }, money(data.levelized_cents)), " a month",
          data.history_average_cents != null ? ` (the last 12 months averaged ${money(data.history_average_cents)}).` : "."),
        h("details", {}, h("summary", {}, "Month by month"), h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "Month"), h("th", { class: "num" }, "Expected"),
            h("th", { class: "num" }, "Likely range"), h("th", { class: "num" }, "Budget balance"))),
          h("tbody", {}, items.map((i) => h("tr", {}, h("td", {}, monthLabel(i.month)),
            h("td", { class: "num" }, money(i.forecast_cents)),
            h("td", { class: "num muted" }, `${money(i.low_cents)} – ${money(i.high_cents)}`),
            h("td", { class: "num" }, signedMoney(i.balance_cents)))))))),
        h("p", { class: "muted small" }, data.history_months
          ? `Based on ${data.history_months} months of your usage, billed on your current plan.`
          : "We have no usage history for you yet; this shows fixed charges only."));
    } catch (err) {
      box.className = "error";
      box.textContent = err.message;
    }
  }

  // -- green ------------------------------------------------------------------------------------------------
  async function loadGreen() {
    const box = $("#green");
    try {
      const g = await api(withAsOf(customer("/green")));
      const tile = (label, value, id) => h("div", { class: "tile", id }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
      box.className = "tiles";
      box.replaceChildren(
        tile("of your use met by your solar", pct(g.solar_share), "green-solar-share"),
        tile("sent to the grid", kwh(g.export_wh), "green-export"),
        tile("matched by green programs", pct(g.green_program_share), "green-program-share"),
        tile("CO₂ avoided", `${g.avoided_co2_kg.toLocaleString("en-US")} kg`, "green-co2"),
        h("p", { class: "muted small full" }, g.solar_kw_dc
          ? `Solar: ${g.solar_kw_dc} kW (${g.solar_kw_source}); about ${kwh(g.generation_wh)} generated over 12 months (estimated). Grid factor ${g.factors.grid_co2_g_per_kwh} g CO₂/kWh.`
          : `No rooftop solar on record. Grid factor ${g.factors.grid_co2_g_per_kwh} g CO₂/kWh.`));
    } catch (err) {
      box.className = "error";
      box.textContent = err.message;
    }
  }

  // -- contacts ---------------------------------------------------------------------------------------------
  function channelRow(ch) {
    const q = ch.quiet_hours || {};
    return h("div", { class: "channel" },
      h("select", { class: "ch-type", "aria-label": "Channel" },
        ["email", "sms", "voice"].map((t) => h("option", { value: t, selected: ch.type === t }, t === "sms" ? "text (SMS)" : t))),
      h("input", { class: "ch-address", value: ch.address || "", "aria-label": "Address", required: true, maxlength: 200 }),
      h("label", { class: "inline" }, "order ", h("input", { class: "ch-preference", type: "number", min: 1, max: 10,
        value: ch.preference || 1, "aria-label": "Preference" })),
      h("label", { class: "inline" }, "quiet ", h("input", { class: "ch-quiet-start", type: "time", value: q.start || "",
        "aria-label": "Quiet hours start" }), "–", h("input", { class: "ch-quiet-end", type: "time", value: q.end || "",
        "aria-label": "Quiet hours end" })),
      h("button", { type: "button", class: "link", onclick: (e) => e.target.closest(".channel").remove() }, "remove"));
  }
  // which messages a contact wants: absent in the context means every message of its roles
  const MESSAGES = [["outage", "Outage alerts"], ["outage_restored", "Power restored"], ["bill_ready", "Bill ready"],
    ["high_bill", "High-bill alerts"], ["payment_due", "Payment reminders"]];
  const LANGUAGES = [["en", "English"], ["es", "Español"]];
  function contactForm(c) {
    const wants = c.messages && c.messages.length ? c.messages : MESSAGES.map(([m]) => m);
    const form = h("form", { class: "contact", "data-contact-id": c.contact_id },
      h("label", {}, "Name ", h("input", { class: "c-name", value: c.name || "", maxlength: 200 })),
      h("p", { class: "muted small" }, c.roles && c.roles.length ? `Gets: ${c.roles.join(", ")}` : "No roles yet"),
      h("div", { class: "channels" }, (c.channels || []).map(channelRow)),
      h("fieldset", { class: "prefs" }, h("legend", {}, "Send me"),
        MESSAGES.map(([m, label]) => h("label", { class: "inline" },
          h("input", { type: "checkbox", class: "c-message", value: m, checked: wants.includes(m) }), ` ${label}`))),
      h("label", { class: "inline" }, "Language ", h("select", { class: "c-language", "aria-label": "Language" },
        LANGUAGES.map(([code, name]) => h("option", { value: code, selected: (c.language || "en") === code }, name)))),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", onclick: (e) =>
          e.target.closest("form").querySelector(".channels").append(channelRow({ type: "email", preference: 1 })) }, "Add channel"),
        h("button", { type: "submit", class: "save-contact" }, "Save")));
    form.addEventListener("submit", (e) => saveContact(e, c));
    return form;
  }
  function renderContacts() {
    $("#contacts").replaceChildren(...state.ctx.contacts.map(contactForm));
  }
  async function saveContact(ev, original) {
    ev.preventDefault();
    const form = ev.target;
    const status = $("#contacts-status");
    const channels = [...form.querySelectorAll(".channel")].map((row) => {
      const start = row.querySelector(".ch-quiet-start").value, end = row.querySelector(".ch-quiet-end").value;
      return { type: row.querySelector(".ch-type").value, address: row.querySelector(".ch-address").value.trim(),
        preference: Number(row.querySelector(".ch-preference").value) || 1,
        quiet_hours: start && end ? { start, end } : null };
    });
    const contact = { contact_id: original.contact_id, name: form.querySelector(".c-name").value.trim(),
      roles: original.roles && original.roles.length ? original.roles : ["portal"], channels,
      messages: [...form.querySelectorAll(".c-message:checked")].map((i) => i.value),
      language: form.querySelector(".c-language").value };
    status.className = "status";
    status.textContent = "Saving…";
    try {
      state.ctx = await api(customer(), { method: "PATCH", body: { contacts: { upsert: [contact] } } });
      renderContacts();
      status.textContent = "Saved.";
    } catch (err) {
      status.className = "status error";
      status.textContent = err.field ? `${err.message} (${err.field})` : err.message;
    }
  }
  function addContact() {
    const c = { contact_id: `P${Date.now().toString(36)}`, name: "", roles: ["portal"], channels: [{ type: "email", preference: 1 }] };
    $("#contacts").append(contactForm(c));
  }

  // -- messages the utility sent (outage alerts, bill notices) ----------------------------------------------
  const MESSAGE_NAMES = Object.fromEntries([...MESSAGES, ["escalation", "Escalation"]]);
  async function loadMessages() {
    const box = $("#messages");
    try {
      const data = await api(customer("/messages"));
      box.className = "";
      if (!data.items.length) { box.replaceChildren(h("p", { class: "muted" }, "No messages yet.")); return; }
      box.replaceChildren(h("div", { class: "table-wrap" }, h("table", { class: "messages" },
        h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "What"), h("th", {}, "How"), h("th", {}, "Status"))),
        h("tbody", {}, data.items.slice(0, 20).map((m) => h("tr", {},
          h("td", {}, m.created_at.slice(0, 10)), h("td", {}, MESSAGE_NAMES[m.type] || m.type),
          h("td", {}, (m.delivered_via || {}).channel || m.channel || "–"), h("td", {}, m.state)))))));
    } catch (err) {
      box.className = "error";
      box.textContent = err.message;
    }
  }

  // -- supplemental information (held as notes in the context) ----------------------------------------------
  function renderNotes() {
    const notes = state.ctx.notes || [];
    const projects = [], plain = [];
    for (const p of ((state.ctx.supplemental || {}).projects || [])) {
      projects.push({ name: p.name, date: p.start_date, kwh: p.expected_kwh_per_month, at: p.created_at });
    }
    for (const n of notes) {
      const m = PROJECT.exec(n.text);  // projects entered before the structured field existed
      if (m) projects.push({ name: m[1], date: m[2], kwh: m[3], at: n.created_at });
      else plain.push(n);
    }
    $("#projects").replaceChildren(...(projects.length ? projects.map((p) => h("li", {}, h("strong", {}, p.name),
      ` from ${p.date}, saves about ${p.kwh} kWh a month`)) : [h("li", { class: "muted" }, "None yet.")]));
    $("#notes").replaceChildren(...(plain.length ? plain.slice().reverse().map((n) => h("li", {}, n.text,
      h("span", { class: "muted small" }, ` — ${n.author || "utility"}, ${(n.created_at || "").slice(0, 10)}`)))
      : [h("li", { class: "muted" }, "None yet.")]));
  }
  async function addNote(text, form, body) {
    const status = $("#extra-status");
    status.className = "status";
    status.textContent = "Saving…";
    try {
      state.ctx = await api(customer(), { method: "PATCH", body: body || { notes: { add: [{ text, author: "customer (portal)" }] } } });
      renderNotes();
      form.reset();
      status.textContent = "Saved.";
    } catch (err) {
      status.className = "status error";
      status.textContent = err.field ? `${err.message} (${err.field})` : err.message;
    }
  }

  // -- wiring -----------------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("#sign-in-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = $("#sign-in-error");
      err.hidden = true;
      try {
        await signIn($("#key").value.trim());
      } catch (e) {
        state.key = null;
        showError(err, e.status === 401 ? new Error("That key was not recognised.") : e);
      }
    });
    $("#sign-out").addEventListener("click", signOut);
    $("#usage-month").addEventListener("change", loadUsage);
    $("#usage-resolution").addEventListener("change", loadUsage);
    $("#usage-csv").addEventListener("click", () => downloadUsage("csv"));
    $("#usage-espi").addEventListener("click", () => downloadUsage("espi"));
    $("#scenario-form").addEventListener("submit", runScenario);
    $("#add-contact").addEventListener("click", addContact);
    $("#project-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const project = { name: $("#project-name").value.trim(), start_date: $("#project-date").value,
                        expected_kwh_per_month: Math.round(Number($("#project-savings").value)) };
      addNote(null, ev.target, { supplemental: { projects: { add: [project] } } });
    });
    $("#note-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      addNote($("#note-text").value.trim(), ev.target);
    });
    let timer = null;
    window.addEventListener("resize", () => {
      clearTimeout(timer);
      timer = setTimeout(() => Object.values(state.redraw).forEach((f) => f()), 150);
    });
    const saved = sessionStorage.getItem(KEY_STORE);
    if (saved) signIn(saved).catch(() => sessionStorage.removeItem(KEY_STORE));
  });
})();
