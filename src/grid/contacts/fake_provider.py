"""A local SMS/voice provider with Twilio's REST shape, for tests, benchmarks and demos.

A real aiohttp server: ``POST /2010-04-01/Accounts/{sid}/Messages.json`` and ``.../Calls.json``, form-encoded,
HTTP basic auth, answering 201 with a ``sid``; status callbacks (``MessageStatus``/``CallStatus``) posted to
``StatusCallback`` signed with ``X-Twilio-Signature``. It can misbehave on purpose: ``fail_rate`` answers 500
before taking the message, ``timeout_rate`` holds the request past any client timeout without taking it,
``undelivered_rate`` takes it and later reports ``undelivered``. Sends carrying an ``Idempotency-Key`` already
taken answer the first result again and reach no handset: ``handsets`` counts what recipients really got.
"""
from __future__ import annotations

import asyncio
import random
from collections import Counter

from aiohttp import BasicAuth, ClientSession, web

from grid.contacts.transports import twilio_signature


class FakeProvider:
    def __init__(self, account_sid: str = "ACfake", auth_token: str = "fake-token", *, fail_rate: float = 0.0,
                 timeout_rate: float = 0.0, undelivered_rate: float = 0.0, hold_s: float = 30.0,
                 receipt_delay_s: float = 0.01, seed: int = 1, send_receipts: bool = True):
        self.account_sid, self.auth_token = account_sid, auth_token
        self.fail_rate, self.timeout_rate, self.undelivered_rate = fail_rate, timeout_rate, undelivered_rate
        self.hold_s, self.receipt_delay_s, self.send_receipts = hold_s, receipt_delay_s, send_receipts
        self.rng = random.Random(seed)
        self.accepted: dict[str, dict] = {}  # idempotency key -> the message taken
        self.handsets: Counter[str] = Counter()  # idempotency key -> copies a recipient got
        self.requests = 0
        self.failed = 0
        self.held = 0
        self.receipts_sent = 0
        self.first_accept: dict[str, float] = {}  # key -> loop time the message was first taken
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.base_url = ""

    # -- server -------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/{resource}", self._create)
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
        return web.json_response({"requests": self.requests, "accepted": len(self.accepted), "failed": self.failed,
                                  "held": self.held, "delivered_keys": len(self.handsets),
                                  "duplicates": len(self.duplicates()), "receipts_sent": self.receipts_sent})

    async def _create(self, request: web.Request) -> web.Response:
        self.requests += 1
        auth = request.headers.get("Authorization", "")
        try:
            creds = BasicAuth.decode(auth)
        except ValueError:
            creds = None
        if creds is None or (creds.login, creds.password) != (self.account_sid, self.auth_token) \
                or request.match_info["sid"] != self.account_sid:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        resource = request.match_info["resource"]
        if resource not in ("Messages.json", "Calls.json"):
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        form = await request.post()
        key = request.headers.get("Idempotency-Key")
        if key and key in self.accepted:  # the same send again: same answer, no second message
            return web.json_response(self.accepted[key]["response"], status=201)
        to = form.get("To", "")
        if not str(to).startswith("+"):
            return web.json_response({"code": 21211, "message": f"invalid 'To' number {to}"}, status=400)
        roll = self.rng.random()
        if roll < self.timeout_rate:
            self.held += 1
            await asyncio.sleep(self.hold_s)  # the client gives up first; the message is never taken
            return web.json_response({"code": 20500, "message": "timeout"}, status=504)
        if roll < self.timeout_rate + self.fail_rate:
            self.failed += 1
            return web.json_response({"code": 20500, "message": "internal error"}, status=500)
        sid = ("SM" if resource == "Messages.json" else "CA") + f"{len(self.accepted):032x}"
        response = {"sid": sid, "status": "queued", "to": to, "account_sid": self.account_sid}
        msg = {"key": key, "to": to, "body": form.get("Body") or form.get("Twiml", ""), "sid": sid,
               "resource": resource, "callback": form.get("StatusCallback"), "response": response}
        self.accepted[key or sid] = msg
        self.first_accept[key or sid] = asyncio.get_running_loop().time()
        undelivered = self.rng.random() < self.undelivered_rate
        if not undelivered:
            self.handsets[key or sid] += 1
        if self.send_receipts and msg["callback"]:
            t = asyncio.create_task(self._receipt(msg, "undelivered" if undelivered else "delivered"))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        return web.json_response(response, status=201)

    async def _receipt(self, msg: dict, status: str) -> None:
        await asyncio.sleep(self.receipt_delay_s)
        field = "MessageStatus" if msg["resource"] == "Messages.json" else "CallStatus"
        params = {"AccountSid": self.account_sid, "To": msg["to"], field: status,
                  "MessageSid" if field == "MessageStatus" else "CallSid": msg["sid"]}
        await self.post_signed(msg["callback"], params)

    async def post_signed(self, url: str, params: dict) -> int:
        """POST a form to ``url`` signed the way Twilio signs webhooks; returns the status."""
        headers = {"X-Twilio-Signature": twilio_signature(self.auth_token, url, params)}
        for attempt in range(5):  # Twilio retries failed webhooks too
            try:
                async with self._session.post(url, data=params, headers=headers) as r:
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
    ap.add_argument("--no-receipts", action="store_true")
    args = ap.parse_args()

    async def serve():
        p = FakeProvider(args.sid, args.token, fail_rate=args.fail_rate, timeout_rate=args.timeout_rate,
                         send_receipts=not args.no_receipts)
        print(await p.start(port=args.port), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
