"""The gateway's parts, wired once and passed explicitly (no globals).

Used by ``serve`` (inside the aiohttp app's cleanup context) and by every CLI
command that touches the store, so all of them share one write path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from suppression import keys
from suppression.apikeys import ApiKeys
from suppression.inbound import InboundHandler
from suppression.journal import FsyncFn, Journal
from suppression.outbound import SmsSender
from suppression.service import SuppressionService
from suppression.store import RedisStore
from suppression.transport import SmsUpstream

from .embedded_redis import RedisServerProcess, start_embedded
from .metrics import Metrics
from .redis_client import make_client
from .settings import Settings
from .sms_upstream import sms_upstream_from_url

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: Settings
    client: aioredis.Redis
    store: RedisStore
    journal: Journal
    service: SuppressionService
    apikeys: ApiKeys
    metrics: Metrics
    sms_upstream: SmsUpstream
    sms: SmsSender
    inbound: InboundHandler
    redis_proc: RedisServerProcess | None = None
    fatal: list[BaseException] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        instance: str | None = None,
        fsync: FsyncFn = os.fsync,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> Components:
        proc = None
        url = settings.redis_url
        if url is None:
            url, proc = start_embedded(settings.data_dir)
            log.info("embedded redis-server %s at %s",
                     "started" if proc else "reused", url)
        client = make_client(url, timeout_ms=settings.redis_timeout_ms,
                             pool_size=settings.redis_pool_size)
        store = RedisStore(client, op_timeout_s=max(0.05, 2 * settings.redis_timeout_ms / 1000))
        journal = Journal(settings.journal_dir, retention_s=settings.journal_retention_s,
                          fsync=fsync, instance=instance)
        fatal: list[BaseException] = []

        def fail(exc: BaseException) -> None:
            fatal.append(exc)
            if on_fatal is not None:
                on_fatal(exc)

        service = SuppressionService(store, journal, on_fatal=fail,
                                     recent_s=settings.journal_retention_s,
                                     health_interval_s=settings.store_health_interval_s)
        metrics = Metrics()
        upstream = sms_upstream_from_url(settings.sms_upstream_url())
        self = cls(settings=settings, client=client, store=store, journal=journal,
                   service=service, apikeys=ApiKeys(store, fresh_s=settings.api_key_cache_s),
                   metrics=metrics, sms_upstream=upstream, sms=SmsSender(service, upstream),
                   inbound=InboundHandler(service), redis_proc=proc, fatal=fatal)
        try:
            await service.start()
        except BaseException:
            await self._close_client()
            raise
        await self._check_layout()
        return self

    async def _check_layout(self) -> None:
        limit = await self.store.listpack_limit()
        if limit is not None and limit < 200:
            log.warning(
                "Redis hash-max-listpack-entries is %d: above ~%d suppressions per tenant and "
                "channel, buckets leave the compact encoding and memory per entry grows ~4x. "
                "Set it to 256 (the embedded Redis does).", limit, limit * keys.BUCKETS // 2)

    async def close(self) -> None:
        await self.sms_upstream.close()
        await self.service.close()
        await self._close_client()

    async def _close_client(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
        if self.redis_proc is not None:
            self.redis_proc.stop()
