"""Settings of message delivery: transports, retry policy, rate limits, acknowledgement and escalation."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from grid.timegrid import DEFAULT_TIMEZONE


@dataclass
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False  # STARTTLS after EHLO (port 587 submission); implicit TLS (465) is use_tls
    use_tls: bool = False
    cert_bundle: str | None = None  # CA file to verify the server with (a private CA); None: system CAs
    username: str | None = None
    password: str | None = None
    sender: str = "alerts@utility.example"
    timeout_s: float = 10.0
    connections: int = 4  # kept open and reused: one TCP + EHLO per message would cap throughput
    rate_per_s: float = 200.0


@dataclass
class ProviderConfig:
    """An SMS/voice provider with Twilio's REST shape (``/2010-04-01/Accounts/{sid}/Messages.json``)."""

    base_url: str = "https://api.twilio.com"
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    timeout_s: float = 5.0
    rate_per_s: float = 100.0  # Twilio queues above a number's rate; sending faster only moves the queue
    concurrency: int = 64


@dataclass
class ContactsConfig:
    smtp: SmtpConfig | None = None
    sms: ProviderConfig | None = None
    voice: ProviderConfig | None = None  # often the same account as sms
    public_url: str = "http://127.0.0.1:8080"  # where providers post receipts and recipients follow ack links
    ack_secret: str = "change-me"  # HMAC key of acknowledgement links and of nothing else
    ack_within_s: float = 900.0  # a critical alert not acknowledged in 15 minutes escalates
    escalation: dict | None = field(default_factory=lambda: {"id": "ka-desk", "name": "Key accounts desk",
                                                             "email": "key-accounts@utility.example"})
    max_attempts: int = 3  # per candidate (contact x channel), then the next candidate
    give_up_after_s: float = 6 * 3600.0  # the last candidate keeps being retried (backoff capped) this long
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    lease_s: float = 120.0  # a send not finished by then (dispatcher crashed) is tried again, same key
    batch: int = 500  # notifications taken from a shard per round (one WAL op per batch and step)
    batches_in_flight: int = 4  # per shard
    poll_s: float = 0.5
    retention_days: float = 30.0  # finished messages older than this are compacted out of the outbox
    compact_every_s: float = 3600.0
    timezone: str = DEFAULT_TIMEZONE  # quiet hours are local wall-clock times of the utility
    clock: Callable[[], float] = time.time  # epoch seconds; tests run it at 3 a.m. local

    @property
    def enabled(self) -> bool:
        return any(t is not None for t in (self.smtp, self.sms, self.voice))
