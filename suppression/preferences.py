"""What a person holding an unsubscribe token may see and change: the domain behind the
unsubscribe page and the preference centre (``handlers/unsubscribe.py`` only parses and
renders).

Rules:

* the RFC 8058 one-click POST and the page's "all" button leave all of the tenant's
  marketing on the channel; the page's topic button leaves only the token's topic;
* a preference-centre save applies only what the person changed relative to the page
  they were shown, never relative to the store: no read is needed (it works during an
  outage) and a stale page cannot undo a later unsubscribe;
* re-subscribing to a topic is ``opt_in`` with that topic's scope (no consent recorded);
  re-subscribing to *all* marketing is not offered here (that needs the sender's own
  consent flow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass

from .models import OptEvent, Reason, Source, scoped
from .service import SuppressionService
from .tokens import TokenClaims


@dataclass(frozen=True, slots=True)
class Subscriptions:
    all_off: bool  # unsubscribed from every marketing message of the tenant
    topics_off: dict[str, bool]  # per topic asked for: left that topic


async def subscriptions(service: SuppressionService, claims: TokenClaims,
                        topics: Sequence[str]) -> Subscriptions:
    """The person's state for the address and each topic: one store round trip."""
    names = [claims.identifier, *(scoped(claims.identifier, t) for t in topics)]
    state = await service.suppressed(claims.tenant, claims.channel, names)
    return Subscriptions(state[0], dict(zip(topics, state[1:], strict=True)))


async def leave(service: SuppressionService, claims: TokenClaims, *, topic_only: bool,
                one_click: bool, detail: dict[str, str]) -> OptEvent:
    """One opt-out: the token's topic (``topic_only``) or all of the tenant's marketing."""
    return await service.opt_out(
        claims.tenant, claims.channel, claims.identifier,
        reason=Reason.ONE_CLICK if one_click else Reason.UNSUBSCRIBE_CLICK,
        source=Source.WEB, detail=detail, scope=claims.topic if topic_only else "")


async def save(service: SuppressionService, claims: TokenClaims, topics: Sequence[str], *,
               shown: Collection[str], wanted: Collection[str],
               detail: dict[str, str]) -> list[OptEvent]:
    """Apply the boxes changed between the page shown and the page sent back."""
    calls: list[Awaitable[OptEvent]] = []
    for topic in topics:
        if topic in shown and topic not in wanted:
            calls.append(service.opt_out(claims.tenant, claims.channel, claims.identifier,
                                         reason=Reason.UNSUBSCRIBE_CLICK, source=Source.WEB,
                                         detail=detail, scope=topic))
        elif topic in wanted and topic not in shown:
            calls.append(service.opt_in(claims.tenant, claims.channel, claims.identifier,
                                        reason=Reason.OPT_IN_PREFERENCES, source=Source.WEB,
                                        detail=detail, scope=topic))
    # Concurrent calls share one journal write and fsync (the service's group commit).
    return list(await asyncio.gather(*calls))
