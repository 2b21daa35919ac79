"""How a rendered message leaves: email over SMTP, SMS and voice through a Twilio-shaped HTTP provider.

Every transport answers an :class:`Outcome`: ``sent`` (the provider took it; receipts may follow),
``delivered`` (nothing more will be known: SMTP accepted it), ``retry`` (a timeout, a 4xx SMTP reply, a 429
or 5xx: the same message may go again, with the same idempotency key) or ``permanent`` (this address will not
work: move on to the next channel). A ``retry`` is ``ambiguous`` when the provider may have taken the message
all the same (the request went out and no answer came back, or a 5xx). Each transport has its own rate limit
(a token bucket) and concurrency bound, so one slow provider never holds back the others.

At most once through a provider that does not de-duplicate (Twilio ignores idempotency keys): the outbox
records an ambiguous attempt through the WAL before the message is tried again (``outbox_failed`` with
``ambiguous``; an attempt whose lease ran out with no result, a dispatcher crash, counts as ambiguous too).
Before it sends an attempt whose earlier try was ambiguous, :class:`ProviderTransport` asks the provider
whether the message exists (:meth:`ProviderTransport.lookup`) and, if so, reports it sent without sending.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from email.header import Header
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import urlencode

import aiohttp
import aiosmtplib

from grid.contacts.config import ProviderConfig, SmtpConfig
from grid.contacts.templates import Rendered


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | delivered | retry | permanent
    provider_id: str | None = None
    error: str | None = None
    ambiguous: bool = False  # a retry after which the provider may hold the message: look before re-sending


def was_ambiguous(previous: dict | None) -> bool:
    """Whether an earlier try of this (event, contact, channel) may have reached the provider unanswered: its
    attempt record (``grid.contacts.outbox``) says so, or it is still ``sending`` (its lease ran out)."""
    return bool(previous) and (bool(previous.get("ambiguous")) or previous.get("status") == "sending")


def reference(key: str) -> str:
    """The short reference an SMS carries, by which a lookup recognizes it (the list API returns bodies, not
    callback URLs); 10 hex digits of the idempotency key, matched together with the recipient's number."""
    return key[:10]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``take()`` waits for one."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:  # one waiter at a time: FIFO, and no thundering herd on refill
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self.tokens) / self.rate)


def twilio_signature(auth_token: str, url: str, params: dict) -> str:
    """Twilio's ``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL followed by the sorted form fields."""
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


class EmailTransport:
    """SMTP submission through a small pool of open connections (``aiosmtplib``)."""

    channel = "email"

    def __init__(self, config: SmtpConfig):
        self.config = config
        self.bucket = TokenBucket(config.rate_per_s)
        self._pool: asyncio.Queue[aiosmtplib.SMTP] | None = None

    def _client(self) -> aiosmtplib.SMTP:
        c = self.config
        return aiosmtplib.SMTP(hostname=c.host, port=c.port, timeout=c.timeout_s, use_tls=c.use_tls,
                               start_tls=c.starttls, username=c.username, password=c.password,
                               validate_certs=True, cert_bundle=c.cert_bundle)

    async def send(self, to: str, message: Rendered, key: str, callback_url: str,
                   previous: dict | None = None, verify_only: bool = False) -> Outcome:
        if self._pool is None:
            self._pool = asyncio.Queue()
            for _ in range(self.config.connections):
                self._pool.put_nowait(self._client())
        await self.bucket.take()
        client = await self._pool.get()
        raw = text_message(self.config.sender, to, message.subject or "A message from your utility", message.body,
                           key)
        try:
            if not client.is_connected:
                await client.connect()
            await client.sendmail(self.config.sender, [to], raw)
            return Outcome("delivered", provider_id=f"<{key}@contextgrid>")
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await _close(client)  # a fresh connection rather than a half-finished transaction
            return Outcome("permanent", error=f"recipient refused: {exc}")
        except aiosmtplib.SMTPResponseException as exc:
            await _close(client)
            return Outcome("permanent" if 500 <= exc.code < 600 else "retry", error=f"SMTP {exc.code}")
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await _close(client)
            return Outcome("retry", error=f"SMTP: {type(exc).__name__}")
        finally:
            self._pool.put_nowait(client)

    async def close(self) -> None:
        if self._pool is not None:
            while not self._pool.empty():
                await _close(self._pool.get_nowait())


def text_message(sender: str, to: str, subject: str, body: str, key: str) -> bytes:
    """A text/plain UTF-8 email (RFC 5322 + MIME) as bytes, for ``sendmail`` with our own envelope.

    Written out here rather than by ``email.message.EmailMessage``: its header registry, refolding and the
    address parsing of ``send_message`` cost ~0.6 ms a message, and even compat32's ``MIMEText`` ~0.13 ms,
    a third of what the whole SMTP send costs the dispatcher; this costs ~0.01 ms. The subject becomes RFC 2047
    encoded words when it is not ASCII; the body goes as 7bit when it is ASCII with short lines, else base64.
    (aiosmtplib turns line ends into CRLF and dot-stuffs the data.)
    """
    subject = _one_line(subject)
    if not subject.isascii():
        subject = Header(subject, "utf-8").encode(linesep="\r\n")
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        cte, payload = "7bit", body.encode("ascii")
    else:
        cte, payload = "base64", base64.encodebytes(body.encode("utf-8"))
    # the idempotency key as Message-ID: a copy sent again after a lost reply is the same message to every
    # mail store that de-duplicates (and to our tests)
    head = (f"From: {_one_line(sender)}\r\nTo: {_one_line(to)}\r\nSubject: {subject}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\nMessage-ID: <{key}@contextgrid>\r\nX-Idempotency-Key: {key}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n")
    return head.encode("ascii") + payload


def _one_line(value: str) -> str:
    """A header value on one line: a line break from a customer's name must not start a header."""
    return " ".join(value.splitlines())


async def _close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            client.close()
    except Exception:  # noqa: BLE001 - a broken connection is replaced on the next send
        pass


class ProviderTransport:
    """SMS (``Messages.json``) or voice (``Calls.json``) through a provider with Twilio's REST API.

    Form-encoded POST, HTTP basic auth (account SID, auth token), ``StatusCallback`` for receipts (the
    idempotency key is in its URL, so a receipt finds its message without a lookup). The key also travels as
    ``Idempotency-Key``, which Twilio ignores: at most once rests on :meth:`lookup` (module docstring).
    """

    LOOKUP_PAGES = 20  # newest pages of messages to one number read before the lookup gives up undecided
    LOOKUP_WINDOW_S = 2 * 86400.0  # older messages cannot be a try of a notification still being sent

    def __init__(self, channel: str, config: ProviderConfig):
        self.channel = channel
        self.config = config
        self.bucket = TokenBucket(config.rate_per_s)
        self.slots = asyncio.Semaphore(config.concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.resource = "Messages.json" if channel == "sms" else "Calls.json"
        self.url = f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}/{self.resource}"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auth=aiohttp.BasicAuth(self.config.account_sid, self.config.auth_token),
                connector=aiohttp.TCPConnector(limit=self.config.concurrency))
        return self._session

    async def send(self, to: str, message: Rendered, key: str, callback_url: str,
                   previous: dict | None = None, verify_only: bool = False) -> Outcome:
        """Send once; with ``previous`` (the attempt record of this key) ambiguous, look it up first. With
        ``verify_only`` (ambiguous tries used up), only look: not found is ``permanent`` (fail over)."""
        form = {"To": to, "From": self.config.from_number, "StatusCallback": callback_url}
        if self.channel == "sms":
            form["Body"] = f"{message.body}\n(ref {reference(key)})"
        else:
            form["Twiml"] = f"<Response><Say>{_xml_text(message.body)}</Say></Response>"
        await self.bucket.take()
        async with self.slots:
            if was_ambiguous(previous) or verify_only:
                found = await self.lookup(to, key, (previous or {}).get("since"))
                if found is not None:
                    return found
                if verify_only:
                    return Outcome("permanent", error=f"{self.channel} provider never took it")
            try:
                # the form encoded here: aiohttp's FormData (a multipart writer and a uuid per request) was a
                # sixth of the dispatcher's time in the outage benchmark
                async with self._client().post(self.url, data=urlencode(form).encode(), headers={
                        "Idempotency-Key": key, "Content-Type": "application/x-www-form-urlencoded"},
                        timeout=self._timeout) as r:
                    body = await r.json(content_type=None) if r.content_length != 0 else {}
                    if r.status in (200, 201):
                        return Outcome("sent", provider_id=body.get("sid"))
                    err = f"HTTP {r.status} {body.get('code', '')}".strip()
                    if r.status >= 500:  # the provider may have created it before failing to answer
                        return Outcome("retry", error=err, ambiguous=True)
                    return Outcome("retry" if r.status == 429 else "permanent", error=err)
            except aiohttp.ClientConnectorError as exc:  # never reached the provider: nothing was sent
                return Outcome("retry", error=f"{self.channel} provider: {type(exc).__name__}")
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                return Outcome("retry", error=f"{self.channel} provider: {type(exc).__name__}", ambiguous=True)

    async def lookup(self, to: str, key: str, since: str | None) -> Outcome | None:
        """Whether an earlier try of ``key`` to ``to`` exists at the provider.

        Lists what was sent to ``to`` from our number, newest first (Twilio's ``GET .../Messages.json?To=&From=``),
        back to :attr:`LOOKUP_WINDOW_S` ago. An SMS is recognized by its :func:`reference` in the body; a call
        (calls carry no body) by being a call to that number since the first try (``since``, from the attempt
        record). Found: ``sent`` (or ``permanent`` if the provider failed it, so the next candidate goes);
        not found: None (send); the provider cannot tell now: an ambiguous ``retry`` (never send unsure).

        The ``DateSent`` filter is not used: a message still queued at the provider (its rate limit holds
        messages for minutes in a large outage) has no send date yet and would be missed.
        """
        ref = reference(key)
        oldest = time.time() - self.LOOKUP_WINDOW_S
        if self.channel == "voice" and since:
            oldest = max(oldest, _epoch(since) - 60.0)  # a clock skew's margin
        url = self.url + "?" + urlencode({"To": to, "From": self.config.from_number, "PageSize": 100})
        base = self.config.base_url.rstrip("/")
        try:
            for _ in range(self.LOOKUP_PAGES):
                async with self._client().get(url, timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)) as r:
                    if r.status != 200:
                        return Outcome("retry", error=f"lookup: HTTP {r.status}", ambiguous=True)
                    page = await r.json(content_type=None)
                rows = page.get("messages" if self.channel == "sms" else "calls") or []
                for m in rows:
                    if parsedate_to_datetime(m["date_created"]).timestamp() < oldest:
                        return None
                    if self.channel == "voice" or ref in (m.get("body") or ""):
                        if m.get("status") in ("failed", "undelivered", "canceled"):
                            return Outcome("permanent", provider_id=m.get("sid"), error=f"provider: {m['status']}")
                        return Outcome("sent", provider_id=m.get("sid"))
                if not page.get("next_page_uri"):
                    return None
                url = base + page["next_page_uri"]
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError) as exc:
            return Outcome("retry", error=f"lookup: {type(exc).__name__}", ambiguous=True)
        return Outcome("retry", error="lookup: too many messages to this number to tell", ambiguous=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _xml_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
