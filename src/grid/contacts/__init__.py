"""Contact management: who hears about what, by which channel, and the durable outbox that makes sure they do.

- ``addresses``: email and phone validation (``email-validator``, ``phonenumbers``).
- ``outbox``: the per-shard durable outbox (an ``Outbox`` state object; every change is a WAL op).
- ``targets``: which customers an event touches and the route (contacts x channels) of each notification.
- ``templates``: jinja2 messages per type, channel and language.
- ``transports``: email over SMTP and SMS/voice through a Twilio-shaped HTTP provider.
- ``dispatcher``: the delivery loop (retries, failover, quiet hours, rate limits, escalation).
- ``fake_provider``: a local provider with Twilio's REST shape that can fail, time out and send receipts.
"""
