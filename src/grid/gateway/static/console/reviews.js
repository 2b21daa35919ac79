/* The identity review queue of the console: records the resolver could neither link nor call new (their match
 * weight fell between its two thresholds, DOMAIN.md section 8). Each shows the incoming record beside the
 * customer it may be, field by field with the resolver's agreement level and weight; a person decides "same"
 * or "different" through POST /v1/identity/reviews/{id}, the decision is kept for good and the customer's
 * audit trail records who made it. Uses console.js's API client and helpers (window.contextgrid.console). */
(function () {
  "use strict";
  const $ = (sel, root = document) => root.querySelector(sel);
  // the fields a reviewer compares, in the order a call-centre agent reads them
  const FIELDS = [["name", "Name"], ["address", "Address"], ["mailing_address", "Mailing address"], ["phone", "Phone"],
    ["email", "Email"], ["account_id", "Account"], ["meter_id", "Meter"], ["service_point_id", "Service point"],
    ["tax_id", "Tax id"]];
  const OPEN_LIMIT = 20;

  const kit = () => window.contextgrid.console;
  const when = (t) => String(t || "").slice(0, 16).replace("T", " ");
  const signed = (w) => `${w > 0 ? "+" : w < 0 ? "−" : ""}${Math.abs(w).toFixed(1)}`;

  function status(text, ok) {
    const node = $("#r-status");
    node.hidden = false;
    node.className = `status ${ok ? "ok" : "error"}`;
    node.textContent = text;
  }

  async function load() {
    const { api, showError } = kit();
    const err = $("#r-error");
    err.hidden = true;
    try {
      const [open, decided] = await Promise.all([api(`/v1/identity/reviews?state=open&limit=${OPEN_LIMIT}`),
        api("/v1/identity/reviews?state=decided&limit=500")]);
      // the proposed customer's own values, as its context holds them (the resolver compares normalized ones)
      const customers = await Promise.all(open.items.map((r) =>
        api(`/v1/customers/${encodeURIComponent(r.customer_id)}/identity`).catch(() => null)));
      const n = open.items.length;
      $("#r-count").textContent = n ? `${n}${open.next ? "+" : ""} ${n === 1 && !open.next ? "record waits" : "records wait"} for a decision.`
        : "No records wait for review.";
      $("#r-queue").replaceChildren(...open.items.map((r, i) => reviewCard(r, customers[i])));
      renderDecided(decided.items);
    } catch (e) { showError(err, e); }
  }

  function reviewCard(r, identity) {
    const { h } = kit();
    const res = r.resolution || {};
    const comparisons = new Map((res.comparisons || []).map((c) => [c.field, c]));
    const theirs = (identity && identity.context) || {};
    const ev = r.evidence || {};
    const rows = FIELDS.filter(([f]) => comparisons.has(f) || ev[f] != null).map(([f, label]) => {
      const c = comparisons.get(f);
      const agree = c ? h("span", { class: `agree ${c.weight > 0 ? "yes" : "no"}`, text: `${c.level} ${signed(c.weight)}` })
        : h("span", { class: "muted", text: "not compared" });
      // data-side names the column where a phone stacks the two values (console.css)
      return h("tr", { "data-field": f }, h("th", { scope: "row", text: label }),
        h("td", { class: "mine", "data-side": "this record", text: String(ev[f] ?? (c ? c.record : "") ?? "") }),
        h("td", { class: "theirs", "data-side": r.customer_id, text: String(theirs[f] ?? (c ? c.customer : "") ?? "–") }),
        h("td", { class: "agreement" }, agree));
    });
    const others = (res.candidates || []).filter((c) => c.customer_id !== r.customer_id);
    const who = h("button", { type: "button", class: "link-dark", text: `${r.customer_id}${theirs.name ? ` ${theirs.name}` : ""}` });
    who.addEventListener("click", () => kit().openCustomer(r.customer_id));
    const card = h("article", { class: "card review", "data-review-id": r.review_id },
      h("h2", {}, `${r.record_key} → `, who),
      h("p", { class: "muted", text: `Score ${res.score == null ? "–" : res.score.toFixed(2)}` +
        (res.probability == null ? "" : ` · ${(res.probability * 100).toFixed(1)} % likely the same`) +
        ` · queued ${when(r.created_at)} · ${r.review_id}` }),
      h("div", { class: "table-wrap" }, h("table", { class: "evidence" },
        h("thead", {}, h("tr", {}, h("th", { text: "" }), h("th", { text: `This record (${ev.source || "source"})` }),
          h("th", { text: `Customer ${r.customer_id}` }), h("th", { text: "Agreement" }))),
        h("tbody", {}, ...rows))),
      others.length ? h("p", { class: "muted", text: `Also considered: ${others.map((c) => `${c.customer_id} (score ${c.score.toFixed(2)})`).join(", ")}` }) : null,
      h("div", { class: "row decide" },
        h("button", { type: "button", class: "decide same", "data-decision": "same", text: `Same customer as ${r.customer_id}` }),
        h("button", { type: "button", class: "decide different secondary", "data-decision": "different", text: "A different customer" })));
    card.addEventListener("click", (e) => {
      const b = e.target.closest(".decide");
      if (b) decide(card, r, b.dataset.decision);
    });
    return card;
  }

  async function decide(card, r, decision) {
    for (const b of card.querySelectorAll(".decide")) b.disabled = true;
    try {
      const out = await kit().api(`/v1/identity/reviews/${encodeURIComponent(r.review_id)}`, { method: "POST", body: { decision } });
      status(`${r.record_key}: ${out.decision === "same" ? `the same customer as ${r.customer_id}` : `not ${r.customer_id}`} (decided by ${out.decided_by || "you"}).`, true);
    } catch (e) {
      // someone else decided it first (409) or it is gone (404): say so; the reload below drops it from the queue
      status(e.field ? `${e.message} (field: ${e.field})` : e.message, false);
    }
    await load();
  }

  function renderDecided(items) {
    const { h, table } = kit();
    const newest = items.slice().sort((a, b) => (String(a.decided_at) < String(b.decided_at) ? 1 : -1)).slice(0, 20);
    $("#r-decided").replaceChildren(table(["When", "Who", "Decision", "Record → customer"], newest.map((r) =>
      [when(r.decided_at), r.decided_by || "–", r.decision, `${r.record_key} → ${r.customer_id}`])));
  }

  document.addEventListener("console:view", (e) => { if (e.detail === "reviews") load(); });
})();
