"""How a rendered message leaves: email over SMTP, SMS and voice through a Twilio-shaped HTTP provider.

Every transport answers an :class:`Outcome`: ``sent`` (the provider took it; receipts may follow),
``delivered`` (nothing more will be known: SMTP accepted it), ``retry`` (a timeout, a 4xx SMTP reply, a 429
or 5xx: the same message may go again, with the same idempotency key) or ``permanent`` (this address will not
work: move on to the next channel). Each transport has its own rate limit (a token bucket) and concurrency
bound, so one slow provider never holds back the others.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from email.header import Header
from email.utils import formatdate

import aiohttp
import aiosmtplib

from grid.contacts.config import ProviderConfig, SmtpConfig
from grid.contacts.templates import Rendered


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | delivered | retry | permanent
    provider_id: str | None = None
    error: str | None = None


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

    async def send(self, to: str, message: Rendered, key: str, callback_url: str) -> Outcome:
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

    Form-encoded POST, HTTP basic auth (account SID, auth token), ``StatusCallback`` for receipts. The
    idempotency key travels as ``Idempotency-Key`` (a header providers with idempotent sends honour; the
    fake provider does); it is also in the callback URL, so a receipt finds its message without a lookup.
    """

    def __init__(self, channel: str, config: ProviderConfig):
        self.channel = channel
        self.config = config
        self.bucket = TokenBucket(config.rate_per_s)
        self.slots = asyncio.Semaphore(config.concurrency)
        self._session: aiohttp.ClientSession | None = None
        resource = "Messages.json" if channel == "sms" else "Calls.json"
        self.url = f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}/{resource}"

    async def send(self, to: str, message: Rendered, key: str, callback_url: str) -> Outcome:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auth=aiohttp.BasicAuth(self.config.account_sid, self.config.auth_token),
                connector=aiohttp.TCPConnector(limit=self.config.concurrency))
        form = {"To": to, "From": self.config.from_number, "StatusCallback": callback_url}
        if self.channel == "sms":
            form["Body"] = message.body
        else:
            form["Twiml"] = f"<Response><Say>{_xml_text(message.body)}</Say></Response>"
        await self.bucket.take()
        async with self.slots:
            try:
                async with self._session.post(self.url, data=form, headers={"Idempotency-Key": key},
                                              timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)) as r:
                    body = await r.json(content_type=None) if r.content_length != 0 else {}
                    if r.status in (200, 201):
                        return Outcome("sent", provider_id=body.get("sid"))
                    err = f"HTTP {r.status} {body.get('code', '')}".strip()
                    return Outcome("retry" if r.status == 429 or r.status >= 500 else "permanent", error=err)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                return Outcome("retry", error=f"{self.channel} provider: {type(exc).__name__}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _xml_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
