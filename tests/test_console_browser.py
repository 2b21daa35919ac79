"""The internal console in a real browser (Playwright driving Debian's chromium) against a real gateway, real
Ray shards, an SMTP server and the fake SMS provider: search, a customer's context, contact edits with bad
input, load priority, an outage declared and watched until its alerts are delivered, and the identity review
queue decided by hand. Screenshots at desktop and phone width go to ``artifacts/``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CHROMIUM, free_port
from playwright.async_api import expect  # waits on locators: the console's CSP forbids evaluated strings

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
AGENT_KEY = "console-agent-key-0123456789"
OPERATOR_KEY = "console-operator-key-0123456789"
CUSTOMER_KEY = "console-customer-key-0123456789"

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (make browser installs it)"),
]


class Sink:
    def __init__(self):
        self.to: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.to.extend(envelope.rcpt_tos)
        return "250 OK"


def _contexts():
    def ctx(i, name, priority, contacts, kind="commercial"):
        return f"Q{i:07d}", {
            "name": name, "kind": kind, "segment": "sme", "attributes": {"feeder": "F3"},
            "accounts": [{"account_id": f"QA{i:06d}", "rate_plan_id": "res-tou", "billing_address": f"{i} Oak Ave, Springfield",
                          "service_points": [{"service_point_id": f"QS{i:06d}", "premise_address": f"{i} Oak Ave",
                                              "meter_id": f"QM{i:06d}", "interval_minutes": 60,
                                              "load_priority": priority}]}],
            "contacts": contacts}
    return [
        ctx(1, "Mercy Hospital", "critical", [
            {"contact_id": "QK1", "name": "Ed Emergency", "roles": ["emergency", "outage"], "channels": [
                {"type": "sms", "address": "+14155550001", "preference": 1},
                {"type": "email", "address": "ed@mercy.example", "preference": 2}]}]),
        ctx(2, "Rachel Green", "normal", [
            {"contact_id": "QK2", "name": "Rachel Green", "roles": ["billing", "outage"], "channels": [
                {"type": "email", "address": "rachel@example.com", "preference": 1}]}], kind="residential"),
    ]


@pytest.fixture(scope="module")
async def console(ray_session, tmp_path_factory):
    import aiohttp
    from aiohttp import web
    from aiosmtpd.controller import Controller

    from grid.cluster import Grid
    from grid.contacts.config import ContactsConfig, ProviderConfig, SmtpConfig
    from grid.contacts.fake_provider import FakeProvider
    from grid.gateway.app import create_app
    from grid.gateway.auth import KeyStore, digest
    from grid.gateway.config import GatewayConfig

    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    sms = FakeProvider("ACcon", "con-token")
    await sms.start()
    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("console")), shards=2, namespace="cg-test-console")
    for cid, body in _contexts():
        g.replace(cid, body)
    from portal_seed import BILLS, legacy_bills

    legacy_bills(g, "Q0000002", "QA000002", BILLS, suffix="-Q2")  # bills whose lines the console names
    from portal_seed import readings, synthetic_month

    g.append_usage("Q0000002", readings("QS000002", *synthetic_month("2026-10", False, seed=2)))  # her meter
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    contacts = ContactsConfig(smtp=SmtpConfig(port=smtp_port),
                              sms=ProviderConfig(base_url=sms.base_url, account_sid="ACcon", auth_token="con-token",
                                                 from_number="+14155559999"),
                              public_url=base, poll_s=0.05)
    keys = KeyStore([{"id": "desk", "role": "agent", "sha256": digest(AGENT_KEY)},
                     {"id": "ops", "role": "operator", "sha256": digest(OPERATOR_KEY)},
                     {"id": "rachel", "role": "customer", "sha256": digest(CUSTOMER_KEY), "customers": ["Q0000002"]}])
    runner = web.AppRunner(create_app(g, GatewayConfig(contacts=contacts), keys))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {AGENT_KEY}"}) as http:
        yield base, http, sms, sink, g
    await runner.cleanup()
    await sms.stop()
    controller.stop()
    g.shutdown()


async def desk_page(browser, errors: list, width: int = 1280, height: int = 900):
    """A new page whose script errors and CSP refusals land in ``errors`` (every test asserts none)."""
    page = await browser.new_page(viewport={"width": width, "height": height})
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Content Security" in m.text else None)
    return page


async def sign_in(page, base: str, key: str) -> None:
    await page.goto(f"{base}/console")
    await page.fill("#key", key)
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#nav:not([hidden])")


async def test_console_end_to_end(console, browser):
    base, http, sms, sink, _ = console
    ARTIFACTS.mkdir(exist_ok=True)
    errors = []
    page = await desk_page(browser, errors)

    # a customer key is not a staff key
    await page.goto(f"{base}/console")
    await page.fill("#key", CUSTOMER_KEY)
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#sign-in-error:not([hidden])")
    assert "not a staff key" in await page.text_content("#sign-in-error")
    await page.fill("#key", AGENT_KEY)
    await page.click("#sign-in-form button[type=submit]")
    await page.wait_for_selector("#customers-view:not([hidden])")

    # search by phone, as the caller reads it out
    await page.fill("#q", "(415) 555-0001")
    await page.click("#search-form button[type=submit]")
    await page.wait_for_selector(".result")
    assert "Mercy Hospital" in await page.text_content("#results")
    assert "phone" in await page.text_content("#results")
    # and by meter
    await page.fill("#q", "QM000002")
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#results")).to_contain_text("Rachel Green")
    await page.click(".result")
    await page.wait_for_selector("#customer:not([hidden])")
    await expect(page.locator("#c-name")).to_have_text("Rachel Green")
    assert "QS000002" in await page.text_content("#c-accounts")
    # bill lines read as the tariff names them, the same words the portal shows
    await page.locator("#c-bills details summary").first.click()
    await expect(page.locator("#c-bills")).to_contain_text("Winter peak energy, tier 1: $76.55")
    # what she owes is the server's figure (grid.balances), as the portal and the payment reminder state it
    due = (await (await http.get("/v1/customers/Q0000002/bills")).json())["amount_due_cents"]
    assert due == 7_655 + 3_570 + 1_214  # the October bill; no payment on record
    await expect(page.locator("#c-amount-due")).to_have_text("$124.39")
    # the usage chart: her meter's October, a bar a day, the month's total as the usage API answers it
    await expect(page.locator("#c-usage-daily svg rect")).to_have_count(31)
    usage = await (await http.get("/v1/customers/Q0000002/usage?month=2026-10&resolution=daily")).json()
    total = sum(i["import_wh"] for i in usage["items"])
    await expect(page.locator("#c-usage-total")).to_have_text(f"2026-10: {(total + 500) // 1000:,} kWh from the grid")
    await page.fill("#c-usage-month", "2026-08")  # a month the meter has nothing for
    await expect(page.locator("#c-usage-daily")).to_have_text("No meter readings in 2026-08.")
    await page.fill("#c-usage-month", "2026-10")
    await expect(page.locator("#c-usage-daily svg rect")).to_have_count(31)

    # a bad address is refused with the field named, and nothing changes
    form = page.locator('form.contact[data-contact-id="QK2"]')
    await form.locator(".ch-address").first.fill("rachel at home")
    await form.locator(".save-contact").click()
    await page.wait_for_selector('form.contact[data-contact-id="QK2"] .status.error')
    msg = await form.locator(".status").text_content()
    assert "contacts.upsert[0].channels[0].address" in msg
    rec = await (await http.get("/v1/customers/Q0000002")).json()
    assert rec["contacts"][0]["channels"][0]["address"] == "rachel@example.com"
    # a good one is saved
    await form.locator(".ch-address").first.fill("Rachel.Green@Example.com")
    await form.locator(".save-contact").click()
    await page.wait_for_selector('form.contact[data-contact-id="QK2"] .status.ok')
    rec = await (await http.get("/v1/customers/Q0000002")).json()
    assert rec["contacts"][0]["channels"][0]["address"] == "Rachel.Green@example.com"

    # load priority: normal -> priority, written through the API
    await page.select_option('select.priority[data-sp="QS000002"]', "priority")
    await page.wait_for_selector("#priority-status.ok")
    rec = await (await http.get("/v1/customers/Q0000002")).json()
    assert rec["accounts"][0]["service_points"][0]["load_priority"] == "priority"
    assert "operator key" in await page.text_content("#c-audit")  # an agent key does not read the audit log
    await page.screenshot(path=str(ARTIFACTS / "console-customer-desktop.png"), full_page=True)

    # declare an outage on the feeder and watch the alerts go out
    await page.click('.tab[data-view="outages"]')
    await page.fill("#o-attr", "feeder")
    await page.fill("#o-value", "F3")
    await page.fill("#o-cause", "storm")
    await page.click("#outage-form button[type=submit]")
    await page.wait_for_selector("#outage-status:not([hidden])")
    assert "2 customers" in await page.text_content("#o-summary")
    assert "1 critical" in await page.text_content("#o-summary")
    await expect(page.locator("#o-counts [data-state=delivered] strong")).to_have_text("2", timeout=30_000)
    rows = await page.locator("#o-recipients tbody tr").all_text_contents()
    assert any("Q0000001" in r and "critical" in r and "sms" in r for r in rows)
    assert "Rachel.Green@example.com" in sink.to
    assert "+14155550001" in {m["to"] for m in sms.accepted.values()}
    await page.screenshot(path=str(ARTIFACTS / "console-outage-desktop.png"), full_page=True)
    assert await page.is_hidden("#o-unmatched")  # the feeder matched: nothing to warn of
    # a mistyped id only: refused, the unknown id named (was: declared with every count 0)
    await page.fill("#o-attr", "")
    await page.fill("#o-value", "")
    await page.fill("#o-sps", "QS-TYPO-1")
    await page.click("#outage-form button[type=submit]")
    await page.wait_for_selector("#outage-error:not([hidden])")
    assert "QS-TYPO-1" in await page.text_content("#outage-error")
    await page.fill("#o-sps", "QS000001 QS-TYPO-2")  # one known, one mistyped: declared, the typo listed
    await page.click("#outage-form button[type=submit]")
    await expect(page.locator("#o-unmatched")).to_contain_text("service_point_ids: QS-TYPO-2")
    assert "1 customers" in await page.text_content("#o-summary")

    # phone width: everything reachable, nothing wider than the screen
    phone = await browser.new_page(viewport={"width": 390, "height": 844})
    phone.on("pageerror", lambda e: errors.append(str(e)))
    await phone.goto(f"{base}/console")
    await phone.fill("#key", OPERATOR_KEY)
    await phone.click("#sign-in-form button[type=submit]")
    await phone.fill("#q", "Rachel")
    await phone.click("#search-form button[type=submit]")
    await phone.click(".result")
    await expect(phone.locator("#c-name")).to_have_text("Rachel Green")
    await phone.wait_for_selector("#c-messages table")
    assert "outage" in await phone.text_content("#c-messages")
    # the operator sees the audit trail of the edits made above: who, when, what
    await phone.wait_for_selector("#c-audit table")
    audit = await phone.text_content("#c-audit")
    assert "desk (agent)" in audit and "PATCH" in audit and "PUT" in audit
    # each entry shows what really changed (the shard's diff), not the request: the load-priority PUT wrote the
    # whole context back, and reads as the one field it changed, from and to; the contact PATCH as its channels
    assert "accounts[QA000002].service_points[QS000002].load_priority: normal → priority" in audit, audit
    assert "contacts[QK2].channels: " in audit and "rachel@example.com" in audit, audit
    assert "Rachel.Green@example.com" in audit, audit
    # and nothing the form made up: roles re-ordered, the language box's default (was: roles and language diffs)
    assert "contacts[QK2].roles" not in audit and "contacts[QK2].language" not in audit, audit
    assert '"replace":' not in audit, audit  # the PUT's request summary gives way to its diff
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"page is {width}px wide on a 390px phone"
    await phone.screenshot(path=str(ARTIFACTS / "console-customer-phone.png"), full_page=True)
    assert "null" not in await phone.text_content("#c-badges")
    assert not errors, errors


QUINN = ("Q0000003", {
    "name": "Quinn Oakley", "kind": "residential", "segment": "residential", "attributes": {},
    "accounts": [{"account_id": "QA000003", "rate_plan_id": "res-tou", "billing_address": "3 Oak Ave, Springfield IL 62701",
                  "service_points": [{"service_point_id": "QS000003", "premise_address": "3 Oak Ave, Springfield IL 62701",
                                      "meter_id": "QM000003", "interval_minutes": 60}]}],
    "contacts": [{"contact_id": "QK3", "name": "Quinn Oakley", "roles": ["billing"], "channels": [
        {"type": "email", "address": "quinn@example.com", "preference": 1},
        {"type": "sms", "address": "+14155550003", "preference": 2}]}]})
# two records the resolver can neither link to Quinn nor call new: the name and the house agree, phone and e-mail not
UNSURE = [{"source": "web_form", "record_id": "wf-q1", "name": "Quinn Oakley", "address": "3 Oak Avenue, Springfield",
           "phone": "(415) 555-0333", "email": "q.oakley@mail.example"},
          {"source": "call_center", "record_id": "cc-q9", "name": "Quinn Oakley", "address": "3 Oak Ave, Springfield",
           "phone": "415-555-0999", "email": "quinn.o@work.example"}]


async def test_identity_review_queue(console, browser):
    base, http, _, _, g = console
    ARTIFACTS.mkdir(exist_ok=True)
    g.replace(*QUINN)
    first, second = await g.aresolve(UNSURE, write=True)
    assert (first.outcome, first.customer_id, second.outcome, second.customer_id) == (
        "review", "Q0000003", "review", "Q0000003"), (first.score, second.score)
    errors = []
    page = await desk_page(browser, errors)
    await sign_in(page, base, AGENT_KEY)
    await page.click('.tab[data-view="reviews"]')
    await expect(page.locator("#r-count")).to_have_text("2 records wait for a decision.")

    # the evidence side by side: the record as it came, the customer's own values, agreement and weight
    card = page.locator(f'.review[data-review-id="{first.review_id}"]')
    await expect(card.locator("h2")).to_contain_text("web_form:wf-q1")
    await expect(card.locator("h2")).to_contain_text("Q0000003 Quinn Oakley")
    rows = {f: card.locator(f'tr[data-field="{f}"]') for f in ("name", "address", "phone", "email")}
    assert [await rows["phone"].locator(c).text_content() for c in ("td.mine", "td.theirs")] == [
        "(415) 555-0333", "+14155550003"]
    assert [await rows["email"].locator(c).text_content() for c in ("td.mine", "td.theirs")] == [
        "q.oakley@mail.example", "quinn@example.com"]
    assert await rows["address"].locator("td.theirs").text_content() == "3 Oak Ave, Springfield IL 62701"
    await expect(rows["name"].locator(".agree.yes")).to_contain_text("exact +")
    await expect(rows["phone"].locator(".agree.no")).to_contain_text("−")
    await expect(card).to_contain_text(f"Score {first.score:.2f}")
    await page.screenshot(path=str(ARTIFACTS / "console-reviews-desktop.png"), full_page=True)
    # the same queue on a phone (an operator key): nothing wider than the screen
    phone = await desk_page(browser, errors, 390, 844)
    await sign_in(phone, base, OPERATOR_KEY)
    await phone.click('.tab[data-view="reviews"]')
    await expect(phone.locator(f'.review[data-review-id="{first.review_id}"] td.theirs').first).to_have_text("Quinn Oakley")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the review queue is {width}px wide on a 390px phone"
    for cell in await phone.locator(f'.review[data-review-id="{first.review_id}"] td').all():
        box = await cell.bounding_box()  # every value and agreement on screen, none scrolled out of its table
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (await cell.text_content(), box)
    await phone.screenshot(path=str(ARTIFACTS / "console-reviews-phone.png"), full_page=True)

    # "same": the record is linked to Quinn for good and leaves the queue; who decided is on record
    await card.locator('.decide[data-decision="same"]').click()
    await expect(page.locator("#r-status")).to_contain_text("web_form:wf-q1: the same customer as Q0000003")
    await expect(page.locator("#r-count")).to_have_text("1 record waits for a decision.")
    assert await page.locator(f'.review[data-review-id="{first.review_id}"]').count() == 0
    await expect(page.locator("#r-decided")).to_contain_text("desk")
    ident = await (await http.get("/v1/customers/Q0000003/identity")).json()
    assert "web_form:wf-q1" in [lk["record_key"] for lk in ident["links"]]
    again = (await g.aresolve([UNSURE[0]]))[0]
    assert (again.outcome, again.customer_id) == ("link", "Q0000003")

    # a colleague decides the other one first ("different"); this page's "same" is refused, and the item leaves
    r = await http.post(f"/v1/identity/reviews/{second.review_id}", json={"decision": "different"})
    assert r.status == 200, await r.text()
    await page.locator(f'.review[data-review-id="{second.review_id}"] .decide[data-decision="same"]').click()
    await expect(page.locator("#r-status.error")).to_contain_text("already")
    await expect(page.locator("#r-count")).to_have_text("No records wait for review.")
    decided = await (await http.get("/v1/identity/reviews?state=decided")).json()
    mine = {i["review_id"]: (i["decision"], i["decided_by"]) for i in decided["items"]}
    assert mine[first.review_id] == ("same", "desk") and mine[second.review_id] == ("different", "desk")
    assert not errors, errors
    await page.close()

    # on the phone, the operator reads who decided in Quinn's audit trail: key, role, route, decision
    await phone.click('.tab[data-view="customers"]')
    await phone.click('.tab[data-view="reviews"]')
    await expect(phone.locator("#r-decided")).to_contain_text("web_form:wf-q1 → Q0000003")
    await expect(phone.locator("#r-count")).to_have_text("No records wait for review.")
    await phone.click('.tab[data-view="customers"]')
    await phone.fill("#q", "Quinn Oakley")
    await phone.click("#search-form button[type=submit]")
    await phone.click(".result")
    await phone.wait_for_selector("#c-audit table")
    audit = await phone.text_content("#c-audit")
    assert "desk (agent)" in audit and "POST /v1/identity/reviews/{id}" in audit, audit
    assert '"decision":"same"' in audit and "web_form:wf-q1" in audit, audit
    await phone.screenshot(path=str(ARTIFACTS / "console-review-audit-phone.png"), full_page=True)
    assert not errors, errors
