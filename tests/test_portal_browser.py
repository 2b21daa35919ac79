"""The portal in a real browser: Playwright drives Debian's chromium against a gateway on a loopback port.

Sign in with a customer key, see the bill, run a what-if, change a contact preference (checked through the
API afterwards), add a project; screenshots at desktop and phone width go to ``artifacts/``.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import time
from pathlib import Path

import pytest
from conftest import CHROMIUM, free_port
from playwright.async_api import expect  # waits on locators: the page's CSP forbids evaluated strings
from portal_seed import NEWCOMER, NEWCOMER_MONTHS, SEPTEMBER_DUE_CENTS, SOLAR, seed, seed_newcomers

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CUSTOMER_KEY = "portal-browser-key-0123456789"
NEWCOMER_KEY = "portal-browser-new-0123456789"
OPERATOR_KEY = "portal-browser-ops-0123456789"
AS_OF = "2026-10-20"  # inside the seeded usage, so the bill to date has 20 days

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (make browser installs it)"),
]


def money(cents: int) -> str:
    sign = "−" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


class Mailbox:
    """What an SMTP server (aiosmtpd) received: recipient, subject and text of each message."""

    def __init__(self):
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append({"to": envelope.rcpt_tos[0], "subject": str(msg["Subject"]), "body": msg.get_content()})
        return "250 OK"


def _local_noon_clock():
    """The dispatcher's clock at today's local noon, running: quiet hours set by a test never hold a notice."""
    import datetime as dt
    import time

    from grid.timegrid import DEFAULT_TIMEZONE, zone

    noon = dt.datetime.now(zone(DEFAULT_TIMEZONE)).replace(hour=12, minute=0, second=0, microsecond=0)
    shift = noon.timestamp() - time.time()
    return lambda: time.time() + shift


@pytest.fixture(scope="module")
async def portal(grid):
    """(base URL, aiohttp session as operator, mailbox) for a gateway with a customer key for ``SOLAR`` and an
    SMTP server its notices are sent to."""
    import aiohttp
    from aiohttp import web
    from aiosmtpd.controller import Controller

    from grid.contacts.config import ContactsConfig, SmtpConfig
    from grid.gateway.app import create_app
    from grid.gateway.auth import KeyStore, digest
    from grid.gateway.config import GatewayConfig
    from grid.gateway.portal import setup_portal

    seed(grid)
    seed_newcomers(grid)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    keys = KeyStore([{"id": "browser-ops", "role": "operator", "sha256": digest(OPERATOR_KEY)},
                     {"id": "browser-customer", "role": "customer", "sha256": digest(CUSTOMER_KEY),
                      "customers": [SOLAR]},
                     {"id": "browser-newcomer", "role": "customer", "sha256": digest(NEWCOMER_KEY),
                      "customers": [NEWCOMER]}])
    contacts = ContactsConfig(smtp=SmtpConfig(port=smtp.port), poll_s=0.05, clock=_local_noon_clock())
    app = create_app(grid, GatewayConfig(contacts=contacts), keys)
    if "get_current_bill" not in app.router.named_resources():
        setup_portal(app)  # until create_app wires the portal itself
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as http:
        yield base, http, mailbox
    await runner.cleanup()
    smtp.stop()


async def sign_in(page, base: str, key: str) -> None:
    """Open the portal as of ``AS_OF`` and sign in with ``key``."""
    await page.goto(f"{base}/portal?as_of={AS_OF}")
    await page.fill("#key", key)
    await page.click("#sign-in-button")


async def test_portal_end_to_end(portal, browser):
    base, http, _ = portal
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    # sign in
    await sign_in(page, base, CUSTOMER_KEY)
    await page.wait_for_selector("#app:not([hidden])")
    await expect(page.locator("#who-name")).to_contain_text("C0000902")

    # the bill shown is the API's bill
    bill = await (await http.get(f"/v1/customers/{SOLAR}/bill/current?as_of={AS_OF}")).json()
    acct = bill["items"][0]
    projected = page.locator(f"#projected-{acct['account_id']}")
    await projected.wait_for()
    assert (await projected.text_content()).strip() == money(acct["projected"]["total_cents"])
    assert (await page.locator("#bill .to-date").text_content()).strip() == money(acct["to_date"]["total_cents"])

    # past bills with their lines under readable names, the payments, and the amount due (as of AS_OF: the
    # October bill is not out yet, so the September bill less the payment received since)
    await expect(page.locator("#amount-due")).to_have_text(money(SEPTEMBER_DUE_CENTS))
    past = page.locator("#bill-history li.past-bill")
    assert await past.count() == 1 and await past.first.get_attribute("data-bill-id") == "B902-2026-09"
    await past.first.locator("summary").click()
    await expect(past.first.locator("table.lines")).to_contain_text("Summer peak energy, tier 2")
    assert "period" not in (await past.first.locator("table.lines").text_content()).lower()
    assert await page.locator("#payments li.payment").count() == 1
    await expect(page.locator("#payments")).to_contain_text(money(10_000))

    # charts and green tiles rendered
    await page.wait_for_selector("#usage-chart svg rect")
    # usage downloads: CSV of the chosen view, Green Button (ESPI) of the intervals; both what the API serves
    month = await page.input_value("#usage-month")
    async with page.expect_download() as dl:
        await page.click("#usage-csv")
    csv_bytes = Path(await (await dl.value).path()).read_bytes()
    api_csv = await (await http.get(f"/v1/customers/{SOLAR}/usage?month={month}&resolution=daily&format=csv")).read()
    assert csv_bytes == api_csv and b"import_wh" in csv_bytes
    async with page.expect_download() as dl:
        await page.click("#usage-espi")
    espi = Path(await (await dl.value).path()).read_text()
    assert "IntervalReading" in espi and (await dl.value).suggested_filename.endswith(".xml")
    await page.wait_for_selector("#forecast-chart svg path.band")
    green = await (await http.get(f"/v1/customers/{SOLAR}/green?as_of={AS_OF}")).json()
    assert f"{green['solar_share'] * 100:.1f} %" in await page.locator("#green-solar-share").text_content()

    # a what-if: the residential plans other than the current one are preselected; add 3 kW of solar
    await page.fill("#solar-kw", "3")
    await page.click("#compare-button")
    await page.wait_for_selector("#scenario-table tbody tr")
    checked = await page.eval_on_selector_all("#plan-choices input:checked", "els => els.map(e => e.value)")
    assert checked
    wanted = await (await http.post(f"/v1/customers/{SOLAR}/scenarios?as_of={AS_OF}",
                                    json={"plans": checked, "changes": {"solar": {"kw": 3}}})).json()
    rows = page.locator("#scenario-table tbody tr")
    assert await rows.count() == len(wanted["items"])
    for i, item in enumerate(wanted["items"]):
        assert (await rows.nth(i).locator("td.total").text_content()).strip() == money(item["total_cents"])
    await page.wait_for_selector("#scenario-chart svg path")

    # change a contact's notification preference and quiet hours; it persists in the context
    form = page.locator("form.contact").first
    contact_id = await form.get_attribute("data-contact-id")
    await form.locator(".ch-preference").first.fill("3")
    await form.locator(".ch-quiet-start").first.fill("21:30")
    await form.locator(".ch-quiet-end").first.fill("07:00")
    await form.locator('.c-message[value="bill_ready"]').uncheck()  # which messages: not the bill notice
    await form.locator(".c-language").select_option("es")
    await form.locator(".save-contact").click()
    await expect(page.locator("#contacts-status")).to_have_text("Saved.")
    ctx = await (await http.get(f"/v1/customers/{SOLAR}")).json()
    contact = next(c for c in ctx["contacts"] if c["contact_id"] == contact_id)
    assert contact["channels"][0]["preference"] == 3
    assert contact["channels"][0]["quiet_hours"] == {"start": "21:30", "end": "07:00"}
    assert "bill_ready" not in contact["messages"] and "outage" in contact["messages"]
    assert contact["language"] == "es"
    # a bad address is refused with the field named; nothing changes
    form = page.locator(f'form.contact[data-contact-id="{contact_id}"]')
    await form.locator(".ch-address").first.fill("rachel at home")
    await form.locator(".ch-type").first.select_option("email")
    await form.locator(".save-contact").click()
    await expect(page.locator("#contacts-status")).to_have_class(re.compile("error"))
    assert "channels[0].address" in await page.text_content("#contacts-status")
    again = await (await http.get(f"/v1/customers/{SOLAR}")).json()
    assert next(c for c in again["contacts"] if c["contact_id"] == contact_id) == contact
    await expect(page.locator("#messages")).not_to_have_class(re.compile("loading"))

    # supplemental information: an efficiency project, stored in the context
    await page.fill("#project-name", "Heat pump water heater")
    await page.fill("#project-date", "2026-12-01")
    await page.fill("#project-savings", "45")
    await page.click("#project-button")
    await expect(page.locator("#projects")).to_contain_text("Heat pump water heater")
    ctx = await (await http.get(f"/v1/customers/{SOLAR}")).json()
    [project] = [p for p in ctx["supplemental"]["projects"] if p["name"] == "Heat pump water heater"]
    assert project["start_date"] == "2026-12-01" and project["expected_kwh_per_month"] == 45

    await page.screenshot(path=str(ARTIFACTS / "portal-desktop.png"), full_page=True)
    assert not errors, errors
    await page.close()


async def test_portal_at_phone_width(portal, browser):
    base, _, _ = portal
    ARTIFACTS.mkdir(exist_ok=True)
    context = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
    page = await context.new_page()
    await sign_in(page, base, CUSTOMER_KEY)
    await page.wait_for_selector("#usage-chart svg rect")
    await page.wait_for_selector("#forecast-chart svg path.band")
    await page.wait_for_selector("#green .tile")
    # nothing wider than the phone: wide tables scroll inside their cards, not the page
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    await page.screenshot(path=str(ARTIFACTS / "portal-phone.png"), full_page=True)
    await page.locator("#plans-card").scroll_into_view_if_needed()
    await page.screenshot(path=str(ARTIFACTS / "portal-phone-plans.png"))
    await context.close()


async def test_wrong_key_is_refused_in_the_page(portal, browser):
    base, _, _ = portal
    page = await browser.new_page()
    await page.goto(f"{base}/portal")
    await page.fill("#key", "not-a-key")
    await page.click("#sign-in-button")
    await page.wait_for_selector("#sign-in-error:not([hidden])")
    assert "not recognised" in await page.locator("#sign-in-error").text_content()
    assert await page.locator("#app").is_hidden()
    await page.close()


async def test_portal_and_payment_reminder_state_the_same_amount_due(portal, browser):
    """One computation (grid.balances): the figure on the Bills & payments card is the one the payment-due
    e-mail states, for the same day."""
    base, http, mailbox = portal
    page = await browser.new_page()
    await sign_in(page, base, CUSTOMER_KEY)
    await expect(page.locator("#amount-due")).to_have_text(money(SEPTEMBER_DUE_CENTS))
    shown = (await page.locator("#amount-due").text_content()).strip()
    due_by = (await page.locator("#due-date").text_content()).strip()
    await page.close()

    ctx = await (await http.get(f"/v1/customers/{SOLAR}")).json()
    billing = {ch["address"] for c in ctx["contacts"] if "billing" in c.get("roles", ())
               for ch in c["channels"] if ch["type"] == "email"}
    assert billing
    r = await http.post("/v1/notices", json={"type": "payment_due", "as_of": AS_OF, "customer_ids": [SOLAR]})
    assert r.status == 202, await r.text()
    assert (await r.json())["notifications"] == 1
    deadline = time.monotonic() + 20
    while not (mails := [m for m in mailbox.messages if m["to"] in billing and m["subject"].startswith("Payment")]):
        assert time.monotonic() < deadline, f"no payment reminder to {billing}: {mailbox.messages}"
        await asyncio.sleep(0.05)
    [mail] = mails
    # the same figure and date, whatever the contact's language (the end-to-end test above set Spanish)
    due_date = due_by.removeprefix("by ")
    assert shown in mail["subject"] and due_date in mail["subject"], (mail["subject"], shown, due_by)
    assert shown in mail["body"] and due_date in mail["body"]


async def test_plan_comparison_on_a_phone_with_a_few_months_of_usage(portal, browser):
    """Only the months with usage data are compared (three here, since July), and the saving column is on a
    390 px screen without sideways scrolling, in the page or in the table."""
    base, http, _ = portal
    ARTIFACTS.mkdir(exist_ok=True)
    context = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
    page = await context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in(page, base, NEWCOMER_KEY)
    await page.wait_for_selector("#plan-choices input")
    await page.click("#compare-button")
    await page.wait_for_selector("#scenario-table tbody tr")
    checked = await page.eval_on_selector_all("#plan-choices input:checked", "els => els.map(e => e.value)")
    wanted = await (await http.post(f"/v1/customers/{NEWCOMER}/scenarios?as_of={AS_OF}", json={"plans": checked})).json()
    assert wanted["months"] == NEWCOMER_MONTHS
    await expect(page.locator("#scenario-summary")).to_contain_text("over the 3 months with usage data (July 2026 to "
                                                                    "September 2026)")
    await expect(page.locator("#scenario-missing")).to_contain_text("No usage data for 9 of the last 12 months")
    rows = page.locator("#scenario-table tbody tr")
    assert await rows.count() == len(wanted["items"]) >= 2
    for i, item in enumerate(wanted["items"]):
        row = rows.nth(i)
        assert (await row.locator("td.total").text_content()).strip() == money(item["total_cents"])
        saving = row.locator("td.saving")
        want = "–" if item["is_current"] else money(-item["difference_cents"])
        assert (await saving.text_content()).strip().removeprefix("Saving") == want
        box = await saving.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    # no sideways scroll: not the page, not the table's own scroller
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    wrap = await page.eval_on_selector("#scenario-table", "t => [t.parentElement.scrollWidth, t.parentElement.clientWidth]")
    assert wrap[0] <= wrap[1], wrap
    await page.locator("#scenario-result").scroll_into_view_if_needed()
    await page.screenshot(path=str(ARTIFACTS / "portal-phone-plan-comparison.png"))
    assert not errors, errors
    await context.close()
