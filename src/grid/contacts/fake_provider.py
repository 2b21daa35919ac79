"""A local SMS/voice provider with Twilio's REST shape, for tests, benchmarks and demos.

A real aiohttp server: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` and ``.../Calls.json``, form-encoded,
HTTP basic auth, answering 201 with a ``sid``; status callbacks (``MessageStatus``/``CallStatus``) posted to
``StatusCallback`` signed with ``X-Twilio-Signature``; ``GET`` on the same resources lists what was created,
newest first, filtered by ``To``, ``From`` and ``DateSent`` (``StartTime`` for calls) and paged
(``PageSize``, ``Page``, ``next_page_uri``), as Twilio's list endpoints do.

Like Twilio it does not de-duplicate: the same send posted twice creates two messages and the recipient gets
both (``Idempotency-Key`` is only read to label what a handset got, as the tests' oracle: ``handsets``
counts copies per key). It can misbehave on purpose: ``fail_rate`` answers 500 before taking the message,
``timeout_rate`` holds the request past any client timeout without taking it, ``accept_timeout_rate``
takes it (the recipient gets it) and then holds the answer past the client timeout, so the sender cannot
know; ``undelivered_rate`` takes it and later reports ``undelivered``; :meth:`hold` parks every send until
:meth:`release`, then answers 503 without taking it (a provider outage).
"""
from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import Counter
from urllib.parse import urlencode

from aiohttp import BasicAuth, ClientSession, web

from grid.contacts.transports import twilio_signature

PAGE_SIZE = 50


class FakeProvider:
    def __init__(self, account_sid: str = "ACfake", auth_token: str = "fake-token", *, fail_rate: float = 0.0,
                 timeout_rate: float = 0.0, accept_timeout_rate: float = 0.0, undelivered_rate: float = 0.0,
                 hold_s: float = 30.0, receipt_delay_s: float = 0.01, seed: int = 1, send_receipts: bool = True):
        self.account_sid, self.auth_token = account_sid, auth_token
        self.fail_rate, self.timeout_rate, self.undelivered_rate = fail_rate, timeout_rate, undelivered_rate
        self.accept_timeout_rate = accept_timeout_rate
        self.hold_s, self.receipt_delay_s, self.send_receipts = hold_s, receipt_delay_s, send_receipts
        self.rng = random.Random(seed)
        self.created: list[dict] = []  # every message or call taken, oldest first (what the list endpoints show)
        # the same, per (resource, To): a lookup reads one number's messages, not the whole 100k of a benchmark
        self.created_to: dict[tuple[str, str], list[dict]] = {}
        self.accepted: dict[str, dict] = {}  # idempotency key -> the first message taken with it
        self.handsets: Counter[str] = Counter()  # idempotency key -> copies a recipient got
        self.requests = 0
        self.failed = 0
        self.held = 0
        self.accepted_then_timed_out = 0
        self.lookups = 0
        self.receipts_sent = 0
        self.first_accept: dict[str, float] = {}  # key -> loop time the message was first taken
        self._open = asyncio.Event()
        self._open.set()
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.base_url = ""

    def hold(self) -> None:
        """Park every send from now on (none is taken) until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    # -- server -------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/{resource}", self._create)
        app.router.add_get("/2010-04-01/Accounts/{sid}/{resource}", self._list)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.base_url = f"http://{host}:{site._server.sockets[0].getsockname()[1]}"
        self._session = ClientSession()
        return self.base_url

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered_keys(self) -> set[str]:
        return set(self.handsets)

    def duplicates(self) -> dict[str, int]:
        return {k: n for k, n in self.handsets.items() if n > 1}

    async def _stats(self, request: web.Request) -> web.Response:
        """Counts for a benchmark running the provider in another process."""
        return web.json_response({"requests": self.requests, "accepted": len(self.created), "failed": self.failed,
                                  "held": self.held, "delivered_keys": len(self.handsets), "lookups": self.lookups,
                                  "accepted_then_timed_out": self.accepted_then_timed_out,
                                  "duplicates": len(self.duplicates()), "receipts_sent": self.receipts_sent})

    def _refused(self, request: web.Request) -> web.Response | None:
        """401/404 as Twilio answers them, or None when the request may go on."""
        try:
            creds = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            creds = None
        if creds is None or (creds.login, creds.password) != (self.account_sid, self.auth_token) \
                or request.match_info["sid"] != self.account_sid:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.match_info["resource"] not in ("Messages.json", "Calls.json"):
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        refused = self._refused(request)
        if refused is not None:
            return refused
        resource = request.match_info["resource"]
        form = await request.post()
        key = request.headers.get("Idempotency-Key")  # Twilio ignores it; here it only labels the oracle
        to = form.get("To", "")
        if not str(to).startswith("+"):
            return web.json_response({"code": 21211, "message": f"invalid 'To' number {to}"}, status=400)
        if not self._open.is_set():
            self.held += 1
            try:
                await asyncio.wait_for(self._open.wait(), self.hold_s)
            except asyncio.TimeoutError:
                pass
            return web.json_response({"code": 20503, "message": "service unavailable"}, status=503)
        roll = self.rng.random()
        if roll < self.timeout_rate:
            self.held += 1
            await asyncio.sleep(self.hold_s)  # the client gives up first; the message is never taken
            return web.json_response({"code": 20500, "message": "timeout"}, status=504)
        if roll < self.timeout_rate + self.fail_rate:
            self.failed += 1
            return web.json_response({"code": 20500, "message": "internal error"}, status=500)
        response = self._take(resource, str(to), form, key)
        if roll < self.timeout_rate + self.fail_rate + self.accept_timeout_rate:
            self.accepted_then_timed_out += 1
            await asyncio.sleep(self.hold_s)  # taken and on its way; the answer never reaches the client
        return web.json_response(response, status=201)

    def _take(self, resource: str, to: str, form, key: str | None) -> dict:
        now = email.utils.formatdate(time.time(), usegmt=True).replace("GMT", "+0000")  # Twilio: RFC 2822
        sid = ("SM" if resource == "Messages.json" else "CA") + f"{len(self.created):032x}"
        response = {"sid": sid, "status": "queued", "to": to, "from": form.get("From", ""),
                    "account_sid": self.account_sid, "date_created": now, "date_updated": now, "date_sent": None,
                    "direction": "outbound-api", "api_version": "2010-04-01",
                    "uri": f"/2010-04-01/Accounts/{self.account_sid}/{resource[:-5]}/{sid}.json"}
        if resource == "Messages.json":
            response["body"] = form.get("Body", "")
        else:
            response["start_time"] = None
        msg = {"key": key, "to": to, "body": form.get("Body") or form.get("Twiml", ""), "sid": sid,
               "resource": resource, "callback": form.get("StatusCallback"), "response": response,
               "created": time.time()}
        self.created.append(msg)
        self.created_to.setdefault((resource, to), []).append(msg)
        self.accepted.setdefault(key or sid, msg)
        self.first_accept.setdefault(key or sid, asyncio.get_running_loop().time())
        undelivered = self.rng.random() < self.undelivered_rate
        response["status"] = "sent" if resource == "Messages.json" else "queued"
        response["date_sent" if resource == "Messages.json" else "start_time"] = now
        if not undelivered:
            self.handsets[key or sid] += 1
        if self.send_receipts and msg["callback"]:
            t = asyncio.create_task(self._receipt(msg, "undelivered" if undelivered else "delivered"))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        return dict(response)

    async def _list(self, request: web.Request) -> web.Response:
        """Twilio's list endpoint: newest first, ``To``/``From``/date filters, pages of ``PageSize``."""
        self.lookups += 1
        refused = self._refused(request)
        if refused is not None:
            return refused
        resource, q = request.match_info["resource"], request.query
        field = "DateSent" if resource == "Messages.json" else "StartTime"
        # Twilio's date filters: ``DateSent=D`` on D, ``DateSent<=D`` on or before, ``DateSent>=D`` on or after
        # (the client sends them as the parameters ``DateSent``, ``DateSent<`` and ``DateSent>``)
        tests = [(q[field + op][:10], cmp) for op, cmp in (("", str.__eq__), ("<", str.__le__), (">", str.__ge__))
                 if q.get(field + op)]
        rows = []
        for m in reversed(self.created_to.get((resource, q["To"]), []) if "To" in q else self.created):
            r = m["response"]
            if m["resource"] != resource or q.get("To", r["to"]) != r["to"] or q.get("From", r["from"]) != r["from"]:
                continue
            when = r["date_sent" if resource == "Messages.json" else "start_time"]
            day = email.utils.parsedate_to_datetime(when).date().isoformat() if when else None
            if tests and (day is None or not all(cmp(day, d) for d, cmp in tests)):
                continue  # never sent (still queued): a date filter leaves it out, as Twilio's does
            rows.append(dict(r))
        size = max(1, min(1000, int(q.get("PageSize", PAGE_SIZE))))
        page = int(q.get("Page", 0))
        chunk = rows[page * size:(page + 1) * size]
        base = f"/2010-04-01/Accounts/{self.account_sid}/{resource}"
        rest = [(k, v) for k, v in q.items() if k not in ("Page", "PageSize")]
        nxt = (f"{base}?{urlencode(rest + [('PageSize', size), ('Page', page + 1)])}"
               if (page + 1) * size < len(rows) else None)
        return web.json_response({"messages" if resource == "Messages.json" else "calls": chunk, "page": page,
                                  "page_size": size, "next_page_uri": nxt, "uri": request.path_qs,
                                  "start": page * size, "end": page * size + len(chunk) - 1})

    async def _receipt(self, msg: dict, status: str) -> None:
        await asyncio.sleep(self.receipt_delay_s)
        field = "MessageStatus" if msg["resource"] == "Messages.json" else "CallStatus"
        params = {"AccountSid": self.account_sid, "To": msg["to"], field: status,
                  "MessageSid" if field == "MessageStatus" else "CallSid": msg["sid"]}
        await self.post_signed(msg["callback"], params)

    async def post_signed(self, url: str, params: dict) -> int:
        """POST a form to ``url`` signed the way Twilio signs webhooks; returns the status."""
        headers = {"X-Twilio-Signature": twilio_signature(self.auth_token, url, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        body = urlencode(params).encode()  # not aiohttp's FormData: it costs a multipart writer per receipt
        for attempt in range(5):  # Twilio retries failed webhooks too
            try:
                async with self._session.post(url, data=body, headers=headers) as r:
                    if r.status < 500:
                        self.receipts_sent += 1
                        return r.status
            except Exception:  # noqa: BLE001 - the gateway restarting: try again
                pass
            await asyncio.sleep(0.2 * (attempt + 1))
        return 0

    async def reply(self, inbound_url: str, from_number: str, body: str) -> int:
        """A recipient texting back (``From``, ``Body``), as Twilio posts an incoming message."""
        return await self.post_signed(inbound_url, {"AccountSid": self.account_sid, "From": from_number,
                                                    "To": "+15550000000", "Body": body,
                                                    "MessageSid": "SMreply"})


def main() -> None:  # pragma: no cover - run by bench/bench_outages.py in its own process
    """``python -m grid.contacts.fake_provider --port 0 --fail-rate 0.3``: prints its base URL, serves forever."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--sid", default="ACfake")
    ap.add_argument("--token", default="fake-token")
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--timeout-rate", type=float, default=0.0)
    ap.add_argument("--accept-timeout-rate", type=float, default=0.0)
    ap.add_argument("--no-receipts", action="store_true")
    args = ap.parse_args()

    async def serve():
        p = FakeProvider(args.sid, args.token, fail_rate=args.fail_rate, timeout_rate=args.timeout_rate,
                         accept_timeout_rate=args.accept_timeout_rate, send_receipts=not args.no_receipts)
        print(await p.start(port=args.port), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
