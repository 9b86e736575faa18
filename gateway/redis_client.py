"""The Redis client, configured to fail closed fast.

redis-py's defaults let a hung Redis hold a request for about a minute. Here
every socket read and connect has a ~250 ms budget, a request waits at most
that long for a pooled connection, idle connections are health-checked, and
the client itself never retries: the journal applier re-applies writes (they
are idempotent) and a refused check is the caller's to re-ask.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def make_client(url: str, *, timeout_ms: int = 250, pool_size: int = 50) -> aioredis.Redis:
    timeout_s = timeout_ms / 1000
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=1,
        retry=Retry(NoBackoff(), 0),
        client_name="optout-gateway",
    )
    return aioredis.Redis(connection_pool=pool)
