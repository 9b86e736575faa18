"""Every Redis key the gateway writes, built in one place (arq's ``constants.py`` habit).

Layout and why
--------------
Per-identifier data is spread over ``BUCKETS`` small hashes per tenant and
channel, chosen by a stable hash of the normalised identifier. Small hashes
stay listpack-encoded, where an entry costs its field and value bytes and
little else; one big hash or set would cost ~50+ bytes per member.

Buckets are grouped in ``SHARDS`` shards; the shard is the Redis Cluster hash
tag (``{tenant:channel:shard}``). Everything about one identifier (its
suppression, consent and audit trail) therefore lives in one slot, so one Lua
script can change it atomically, while a tenant's data still spreads over 64
slots of a cluster. A bulk check issues one script call per shard, all in one
pipeline: one round trip on a single Redis, one per node on a cluster.

Sizing: 65,536 buckets keep ~15 entries per bucket at 1M entries per
tenant-channel and ~150 at 10M; Redis keeps a hash listpack-encoded up to
``hash-max-listpack-entries`` (128 by default; the embedded Redis sets 256;
the store warns at start-up when an external Redis is set lower).
Changing BUCKETS or the hash function moves every entry: it is part of the
stored format (``LAYOUT_VERSION``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from .models import SCOPE_SEP, Channel

PREFIX = "og"
LAYOUT_VERSION = 1
BUCKETS = 65_536
SHARDS = 64
BUCKETS_PER_SHARD = BUCKETS // SHARDS

META = f"{PREFIX}:meta"  # layout version, written once
API_KEYS = f"{PREFIX}:apikeys"  # hash: key id -> JSON record (few entries)


def bucket_of(identifier: str) -> int:
    """The bucket of an identifier; every scoped entry of it (``models.scoped``) shares it."""
    base = identifier.partition(SCOPE_SEP)[0]
    digest = hashlib.blake2b(base.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def shard_of(bucket: int) -> int:
    return bucket // BUCKETS_PER_SHARD


def tag(tenant: str, channel: Channel, shard: int) -> str:
    return f"{{{tenant}:{channel.value}:{shard}}}"


@lru_cache(maxsize=1 << 18)
def suppressions(tenant: str, channel: Channel, bucket: int) -> str:
    """Hash: identifier field -> packed entry (see ``codec``)."""
    return f"{PREFIX}:s:{tag(tenant, channel, shard_of(bucket))}:{bucket}"


def consents(tenant: str, channel: Channel, bucket: int) -> str:
    """Hash: identifier field -> packed latest consent state."""
    return f"{PREFIX}:c:{tag(tenant, channel, shard_of(bucket))}:{bucket}"


def audit(tenant: str, channel: Channel, bucket: int) -> str:
    """List: audit records of the identifiers in this bucket, oldest first.

    A list, not a stream: Redis pre-allocates 4 KB for each stream's open node,
    which across 65,536 small per-bucket streams would cost ~270 MB per tenant
    and channel before the first event.
    """
    return f"{PREFIX}:a:{tag(tenant, channel, shard_of(bucket))}:{bucket}"


def sends(tenant: str, channel: Channel, bucket: int) -> str:
    """Hash: identifier field -> times (s) of the last marketing sends, for caps and footers."""
    return f"{PREFIX}:f:{tag(tenant, channel, shard_of(bucket))}:{bucket}"


def messages(tenant: str, channel: Channel, bucket: int) -> str:
    """List: message records (every attempt) to the identifiers in this bucket, oldest first."""
    return f"{PREFIX}:m:{tag(tenant, channel, shard_of(bucket))}:{bucket}"


def blocked_content(tenant: str, message_id: str) -> str:
    """String with a TTL: the text of a message refused by the content rules (kept for review)."""
    return f"{PREFIX}:bc:{{{tenant}}}:{message_id}"


def inbound_seen(tenant: str, sender: str, provider_id: str) -> str:
    """Idempotency key with a TTL: a provider's inbound message id already handled.

    In the sender's shard (a retry comes from the same number), so one Lua call can take
    it with the opt-out."""
    shard = shard_of(bucket_of(sender))
    return f"{PREFIX}:in:{tag(tenant, Channel.SMS, shard)}:{provider_id}"


def confirmation_sent(tenant: str, channel: Channel, identifier: str) -> str:
    """Key with a 5-minute TTL: an opt-out confirmation went to this number."""
    bucket = bucket_of(identifier)
    return f"{PREFIX}:cf:{tag(tenant, channel, shard_of(bucket))}:{identifier}"


def review(tenant: str) -> str:
    """List: inbound replies that may be opt-outs, for ops to review (capped)."""
    return f"{PREFIX}:rv:{{{tenant}}}"


def relayed(tenant: str, digest: str) -> str:
    """Key with a TTL: this (sender, recipient, message) was relayed; a retry skips it.

    No hash tag: these keys are independent and spread over the whole cluster."""
    return f"{PREFIX}:rl:{tenant}:{digest}"


def used_buckets(tenant: str, channel: Channel, shard: int) -> str:
    """Bitmap: bit b set once bucket ``shard * BUCKETS_PER_SHARD + b`` has held a suppression.

    Lets a listing skip empty buckets: a sparse tenant is listed in two round
    trips instead of 65,536 reads. 128 bytes per shard; bits are never cleared.
    """
    return f"{PREFIX}:u:{tag(tenant, channel, shard)}"


# An erased identifier stays suppressed under a keyed hash in its own suppression bucket
# (subject erasure, ``suppression.subjects``). Normalised identifiers never contain a space,
# so no plaintext field (nor a scoped one, '<identifier> <scope>') can spell this prefix.
ERASED_PREFIX = " #"
ERASED_BYTES = 12  # of HMAC-SHA256: 96 bits, 16 base64url characters; a false match
# would also need the same tenant, channel and bucket


@lru_cache(maxsize=1024)
def _erased_mac(pepper: bytes, tenant: str, channel: Channel) -> hmac.HMAC:
    # HMAC is streaming: the keyed state after "<tenant>\x1f<channel>\x1f" is copied per
    # identifier, which halves the cost on a 10,000-identifier check.
    return hmac.new(pepper, f"{tenant}\x1f{channel.value}\x1f".encode(), hashlib.sha256)


def erased_field(pepper: bytes, tenant: str, channel: Channel, identifier: str) -> str:
    """The suppression-hash field of an erased identifier: HMAC-SHA256 with the pepper of
    '<tenant>\\x1f<channel>\\x1f<identifier>'.

    Tenant and channel are in the message, so one person's entries cannot be linked across
    tenants or channels. The bucket still comes from the plaintext (``bucket_of``): one of
    65,536 reveals nothing usable. The pepper never enters Redis.
    """
    mac = _erased_mac(pepper, tenant, channel).copy()
    mac.update(identifier.encode())
    return ERASED_PREFIX + base64.urlsafe_b64encode(mac.digest()[:ERASED_BYTES]).decode()


def all_for_identifier(tenant: str, channel: Channel, identifier: str) -> tuple[str, str, str]:
    bucket = bucket_of(identifier)
    return (
        suppressions(tenant, channel, bucket),
        consents(tenant, channel, bucket),
        audit(tenant, channel, bucket),
    )


def tenant_audit(tenant: str) -> str:
    """List: tenant-level audit records (export decisions...), oldest first, one JSON each.

    Events about no one identifier; few (one per export), so one list per tenant.
    """
    return f"{PREFIX}:ta:{{{tenant}}}"
