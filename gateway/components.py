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
from suppression.email_inbound import EmailFeedback
from suppression.email_outbound import EmailSender, UnsubscribeLinks
from suppression.email_transport import EmailUpstream
from suppression.inbound import InboundHandler
from suppression.journal import FsyncFn, Journal
from suppression.outbound import SmsSender
from suppression.retention import RetentionSweeper
from suppression.service import SuppressionService
from suppression.store import RedisStore
from suppression.tokens import TokenSigner
from suppression.transport import SmsUpstream

from .email_upstream import email_upstream_from_url
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
    tokens: TokenSigner  # unsubscribe links (pages) and mailto addresses (SMTP)
    email_upstream: EmailUpstream
    email: EmailSender
    email_feedback: EmailFeedback
    redis_proc: RedisServerProcess | None = None
    fatal: list[BaseException] = field(default_factory=list)
    retention: RetentionSweeper | None = None  # started with the service's background tasks

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        instance: str | None = None,
        fsync: FsyncFn = os.fsync,
        on_fatal: Callable[[BaseException], None] | None = None,
        retention: bool = True,
    ) -> Components:
        """``retention``: run the retention sweeper here (one process per Redis is enough:
        ``serve``'s first worker; never a CLI command)."""
        # Before anything is started: reading (or generating) the key may fail.
        tokens = TokenSigner(settings.token_keys(),
                             max_age_s=settings.token_max_age_days * 86400)
        proc = None
        url = settings.redis_url
        if url is None:
            url, proc = start_embedded(settings.data_dir)
            log.info("embedded redis-server %s at %s",
                     "started" if proc else "reused", url)
        client = make_client(url, timeout_ms=settings.redis_timeout_ms,
                             pool_size=settings.redis_pool_size)
        # The pepper keeps erased subjects suppressed: every process (serve and the CLI) must
        # see those entries, or a CLI import could write an erased number back.
        store = RedisStore(client, op_timeout_s=max(0.05, 2 * settings.redis_timeout_ms / 1000),
                           pepper=settings.resolved_pepper())
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
        email_upstream = email_upstream_from_url(
            settings.email_upstream_url(), timeout_s=settings.email_upstream_timeout_s,
            pool_size=settings.email_upstream_pool_size)
        sms = SmsSender(service, upstream)
        self = cls(settings=settings, client=client, store=store, journal=journal,
                   service=service, apikeys=ApiKeys(store, fresh_s=settings.api_key_cache_s),
                   metrics=metrics, sms_upstream=upstream, sms=sms,
                   inbound=InboundHandler(service),
                   tokens=tokens, email_upstream=email_upstream,
                   email=EmailSender(service, email_upstream, tokens, UnsubscribeLinks(
                       settings.public_url, settings.mailto_domain()), sms.recorder),
                   email_feedback=EmailFeedback(service, tokens, settings.tenants),
                   redis_proc=proc, fatal=fatal)
        try:
            await service.start()
        except BaseException:
            await self._close_client()
            raise
        if retention and settings.retention_cycle_s > 0:
            self.retention = RetentionSweeper(store, settings.tenants.values(),
                                              cycle_s=settings.retention_cycle_s,
                                              start_delay_s=settings.retention_start_delay_s)
            self.retention.start()
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
        await self.sms.close()  # message records still queued behind their responses
        await self.sms_upstream.close()
        await self.email_upstream.close()
        if self.retention is not None:
            await self.retention.close()
        await self.service.close()
        await self._close_client()

    async def _close_client(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
        if self.redis_proc is not None:
            self.redis_proc.stop()
