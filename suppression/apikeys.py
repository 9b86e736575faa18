"""API keys: created once, stored hashed, bound to one tenant and a set of scopes.

A key reads ``og_<id>_<secret>``. Redis keeps only SHA-256(key): keys are 192
random bits, so a slow password hash would add nothing but latency. Verified
records are cached in memory for ``fresh_s`` (a revocation reaches every
process within that time); during a store outage a cached key stays valid
(an outage must not turn into 401s) and an unknown one raises StoreUnavailable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from . import keys
from .errors import GatewayError, InvalidRequest, StoreUnavailable
from .models import now_ms
from .store import RedisStore

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_KEY_RE = re.compile(r"^og_([0-9a-f]{12})_([A-Za-z0-9_-]{32})$")


class Scope(StrEnum):
    SEND = "send"
    READ = "read"
    WRITE = "write"
    INBOUND = "inbound"
    EXPORT = "export"


class Unauthenticated(GatewayError):
    code = "unauthenticated"


class Forbidden(GatewayError):
    code = "forbidden"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    scopes: frozenset[Scope]
    transactional: bool = False
    name: str = ""
    created_at_ms: int = 0
    revoked: bool = False
    digest: str = field(default="", repr=False)

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope.value}' scope")

    def to_record(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant, "scopes": sorted(s.value for s in self.scopes),
            "transactional": self.transactional, "name": self.name,
            "created_at_ms": self.created_at_ms, "revoked": self.revoked, "sha256": self.digest,
        }

    @classmethod
    def from_record(cls, key_id: str, raw: str | bytes) -> ApiKey:
        data = json.loads(raw)
        return cls(
            id=key_id, tenant=data["tenant"], scopes=frozenset(Scope(s) for s in data["scopes"]),
            transactional=bool(data.get("transactional")), name=str(data.get("name", "")),
            created_at_ms=int(data.get("created_at_ms", 0)), revoked=bool(data.get("revoked")),
            digest=str(data["sha256"]),
        )


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    items = text.split(",") if isinstance(text, str) else list(text)
    out = set()
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            out.add(Scope(item))
        except ValueError:
            allowed = ", ".join(s.value for s in Scope)
            raise InvalidRequest(f"unknown scope '{item}' (allowed: {allowed})",
                                 field="scopes") from None
    if not out:
        raise InvalidRequest("at least one scope is required", field="scopes")
    return frozenset(out)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, store: RedisStore, *, fresh_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.fresh_s = fresh_s
        self.clock = clock
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    async def create(self, tenant: str, scopes: frozenset[Scope], *, transactional: bool = False,
                     name: str = "") -> tuple[str, ApiKey]:
        """Make a key; the plaintext is returned once and never stored."""
        if not TENANT_RE.match(tenant):
            raise InvalidRequest(f"'{tenant}' is not a valid tenant id", field="tenant")
        key_id = secrets.token_hex(6)
        plaintext = f"og_{key_id}_{secrets.token_urlsafe(24)}"
        record = ApiKey(id=key_id, tenant=tenant, scopes=scopes, transactional=transactional,
                        name=name, created_at_ms=now_ms(), digest=_digest(plaintext))
        payload = json.dumps(record.to_record())
        await self.store._call("keys.create", lambda: self.store.client.hset(
            keys.API_KEYS, key_id, payload))
        return plaintext, record

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        raw: Any = await self.store._call("keys.list",
                                          lambda: self.store.client.hgetall(keys.API_KEYS))
        found = [ApiKey.from_record(k.decode(), v) for k, v in raw.items()]
        return sorted((k for k in found if tenant is None or k.tenant == tenant),
                      key=lambda k: k.created_at_ms)

    async def revoke(self, key_id: str) -> bool:
        raw = await self._fetch(key_id)
        if raw is None:
            return False
        data = json.loads(raw)
        data["revoked"] = True
        payload = json.dumps(data)
        await self.store._call("keys.revoke", lambda: self.store.client.hset(
            keys.API_KEYS, key_id, payload))
        self._cache.pop(key_id, None)
        return True

    async def _fetch(self, key_id: str) -> Any:
        return await self.store._call("keys.get",
                                      lambda: self.store.client.hget(keys.API_KEYS, key_id))

    async def verify(self, presented: str) -> ApiKey:
        match = _KEY_RE.match(presented.strip())
        if match is None:
            raise Unauthenticated("the API key is malformed or missing")
        key_id = match.group(1)
        cached = self._cache.get(key_id)
        record: ApiKey | None
        if cached is not None and self.clock() - cached[0] < self.fresh_s:
            record = cached[1]
        else:
            try:
                raw = await self._fetch(key_id)
            except StoreUnavailable:
                if cached is None:
                    raise
                record = cached[1]
            else:
                record = ApiKey.from_record(key_id, raw) if raw is not None else None
                if record is None:
                    self._cache.pop(key_id, None)
                else:
                    self._cache[key_id] = (self.clock(), record)
        if record is None or not hmac.compare_digest(record.digest, _digest(presented.strip())):
            raise Unauthenticated("the API key is not valid")
        if record.revoked:
            raise Unauthenticated("the API key was revoked")
        return record
