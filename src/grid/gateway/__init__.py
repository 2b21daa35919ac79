"""The HTTP gateway: routes reads, writes and what-ifs to the owning shard (aiohttp)."""
