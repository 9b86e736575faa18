"""Settings: ``OPTOUT_*`` environment variables over an optional TOML file.

The TOML file (``OPTOUT_CONFIG`` or ``--config``) may set any setting by its
name without the prefix (``http_port = 8081``) and holds the tenants::

    [tenants.acme]
    brand = "Acme Co"
    sms_senders = ["+14155550100"]

Environment variables win over the file. Secrets never appear in ``repr``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from suppression.apikeys import TENANT_RE
from suppression.tenants import Tenant

log = logging.getLogger(__name__)


MAX_WORKERS = 64


def _sender_owners(tenants: dict[str, Tenant]) -> dict[str, Tenant]:
    """Sender number -> the tenant that lists it. A number routes inbound replies to its
    tenant: listed by two, a STOP or a YES sent to it would be one tenant's word applied
    to the other, so that is refused (ValueError naming both)."""
    owners: dict[str, Tenant] = {}
    for tid, tenant in tenants.items():
        for number in tenant.sms_senders:
            if number in owners:
                raise ValueError(f"sms sender {number} is listed by tenants "
                                 f"'{owners[number].id}' and '{tid}': a number belongs to "
                                 "one tenant (its inbound replies are that tenant's)")
            owners[number] = tenant
    return owners


class SettingsError(Exception):
    """A setting or the config file is invalid; the message names which and why."""


def _mask_url(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPTOUT_", extra="forbid",
                                      validate_default=True)

    redis_url: str | None = Field(default=None, repr=False)
    data_dir: Path = Path("./var")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr | None = None
    # Key of the hashes that keep erased people suppressed: shared by every gateway process
    # of a Redis and never changed, or erased people could be messaged again.
    pepper: SecretStr | None = None
    email_upstream: str | None = Field(default=None, repr=False)
    sms_upstream: str | None = Field(default=None, repr=False)
    config: Path | None = None
    # Fail-closed budget: a hung Redis must turn into a refusal this fast.
    redis_timeout_ms: int = Field(default=250, ge=10, le=10_000)
    redis_pool_size: int = Field(default=50, ge=1, le=10_000)
    journal_retention_s: float = Field(default=600.0, ge=0)
    api_key_cache_s: float = Field(default=5.0, ge=0)
    # How often the store is pinged to notice a restart (and replay the journal).
    store_health_interval_s: float = Field(default=1.0, gt=0, le=60)
    log_level: str = "INFO"
    # `serve` processes sharing the HTTP port (one Python process uses one core).
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    # The retention sweeper (suppression/retention.py): each tenant is trimmed about once per
    # cycle, the first pass after the delay; 0 turns it off (tests that write old records).
    retention_cycle_s: float = Field(default=3600.0, ge=0)
    retention_start_delay_s: float = Field(default=60.0, ge=0)
    # -- email ------------------------------------------------------------------
    # Older token keys still accepted (rotation): tokens name their key by a key id.
    previous_secret_keys: tuple[SecretStr, ...] = ()
    token_max_age_days: int = Field(default=730, ge=365, le=36_500)  # links work >= 1 year
    smtp_tls_cert: Path | None = None  # PEM chain; with smtp_tls_key enables STARTTLS
    smtp_tls_key: Path | None = None
    # Clients that may AUTH without TLS (plaintext credentials): loopback always; add the
    # network a container runtime forwards a published loopback port from (compose.yaml).
    smtp_plain_auth_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    smtp_max_message_bytes: int = Field(default=25 << 20, ge=1024)
    smtp_timeout_s: float = Field(default=60.0, gt=0)
    # Domain of the mailto: unsubscribe address; mail to it must reach the SMTP listener.
    # Default: the host of OPTOUT_PUBLIC_URL.
    unsubscribe_domain: str | None = None
    # Where ARF complaints and DSN bounces are sent (on the SMTP listener, no AUTH).
    # Default: feedback@<unsubscribe domain>.
    feedback_address: str | None = None
    email_upstream_timeout_s: float = Field(default=30.0, gt=0)
    email_upstream_pool_size: int = Field(default=8, ge=1, le=1000)
    tenants: dict[str, Tenant] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs: the environment must win over it.
        return env_settings, init_settings

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v and urlsplit(v).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v or None

    @field_validator("sms_upstream")
    @classmethod
    def _sms_upstream(cls, v: str | None) -> str | None:
        if v:
            from gateway.sms_upstream import sms_upstream_from_url

            sms_upstream_from_url(v)  # raises ValueError naming the problem
        return v or None

    @field_validator("pepper")
    @classmethod
    def _pepper(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (a random secret)")
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("smtp_plain_auth_networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for net in v:
            try:
                ipaddress.ip_network(net)
            except ValueError:
                raise ValueError(f"'{net}' is not a network (CIDR, e.g. 172.16.0.0/12)"
                                 ) from None
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return v.upper()

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, v: dict[str, Tenant]) -> dict[str, Tenant]:
        out = {}
        for tid, tenant in v.items():
            if not TENANT_RE.match(tid):
                raise ValueError(f"tenant id '{tid}' must be 1-32 of a-z, 0-9, '_' or '-'")
            out[tid] = tenant.model_copy(update={"id": tid})
        _sender_owners(out)  # refuses a number listed by two tenants
        if not out:
            out["default"] = Tenant(id="default")
        return out

    _owners: dict[str, Tenant] | None = PrivateAttr(default=None)

    def __repr__(self) -> str:
        return (f"Settings(redis_url={_mask_url(self.redis_url)!r}, data_dir={self.data_dir!r}, "
                f"http={self.http_host}:{self.http_port}, smtp={self.smtp_host}:{self.smtp_port}, "
                f"public_url={self.public_url!r}, tenants={sorted(self.tenants)!r})")

    __str__ = __repr__

    # -- derived ------------------------------------------------------------

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    def sms_upstream_url(self) -> str:
        return self.sms_upstream or f"file://{self.data_dir.resolve()}/outbox/sms.jsonl"

    def email_upstream_url(self) -> str:
        return self.email_upstream or f"file://{self.data_dir.resolve()}/outbox/email"

    def resolved_secret_key(self) -> bytes:
        """The HMAC key for tokens: the setting, or one generated once into the data dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return _generated_secret(self.data_dir / "secret_key", "a secret key")

    def resolved_pepper(self) -> bytes:
        """The pepper of erased subjects' hashes: the setting, or one generated once into the
        data dir (then every process must share that data dir's file)."""
        if self.pepper is not None:
            return self.pepper.get_secret_value().encode()
        return _generated_secret(self.data_dir / "pepper", "a pepper")

    def token_keys(self) -> list[bytes]:
        """The current token key first, then the retired ones still accepted."""
        return [self.resolved_secret_key(),
                *(k.get_secret_value().encode() for k in self.previous_secret_keys)]

    def mailto_domain(self) -> str:
        """The domain part of ``unsubscribe+TOKEN@…``: an IP host of the public URL becomes
        an address literal (``[127.0.0.1]``, RFC 5321 4.1.3), as a bare IP is no domain."""
        host = (self.unsubscribe_domain or urlsplit(self.public_url).hostname or "localhost"
                ).lower()
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return host
        return f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]"

    def feedback_mailbox(self) -> str:
        return (self.feedback_address or f"feedback@{self.mailto_domain()}").lower()

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self.tenants.get(tenant_id)

    def tenant_for_sender(self, number: str) -> Tenant | None:
        """The tenant that owns ``number`` (each number belongs to one: ``_sender_owners``).
        Every inbound text asks: a dict built once, not a scan of every tenant's senders."""
        if self._owners is None:
            self._owners = _sender_owners(self.tenants)
        return self._owners.get(number)

    def warnings(self) -> list[str]:
        """Risky combinations, logged at start-up."""
        out = []
        if self.http_host not in ("127.0.0.1", "::1", "localhost") and \
                self.public_url.startswith("http://"):
            out.append("OPTOUT_PUBLIC_URL is plain http while the HTTP listener is not on "
                       "loopback: unsubscribe links should be https")
        if self.redis_url and self.pepper is None:
            out.append("OPTOUT_PEPPER is unset while Redis is external: every gateway process "
                       f"of this Redis must share the pepper generated in {self.data_dir}, or "
                       "erased people are not recognised by the others; set OPTOUT_PEPPER")
        if self.journal_retention_s < 2:
            out.append("OPTOUT_JOURNAL_RETENTION_S below 2 s does not cover Redis's "
                       "appendfsync everysec loss window")
        return out


def _generated_secret(path: Path, what: str) -> bytes:
    """The secret in ``path``, generated (random, mode 0600, fsync'd) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
            fh.flush()
            os.fsync(fh.fileno())
        log.info("generated %s in %s", what, path)
    return path.read_text().strip().encode()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist (OPTOUT_CONFIG / --config)"
                            ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None


def describe_validation_error(exc: ValidationError, source: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        name = "OPTOUT_" + loc[0].upper() if loc and loc[0] != "tenants" else ".".join(loc)
        if len(loc) > 1 and loc[0] != "tenants":
            name += "." + ".".join(loc[1:])
        lines.append(f"invalid setting {name}: {err['msg']}")
    suffix = f" (from {source})" if source else ""
    return "\n".join(lines) + suffix


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, the TOML file and explicit overrides (tests, CLI)."""
    path = config or (Path(os.environ["OPTOUT_CONFIG"]) if os.environ.get("OPTOUT_CONFIG")
                      else None)
    data: dict[str, Any] = _read_toml(path) if path else {}
    data.update(overrides)
    if path:
        data["config"] = path
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, str(path) if path else "")) from None
