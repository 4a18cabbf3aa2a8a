"""Settings: from the App's constructor, else the environment, else defaults
that work against the local services of ``make services``.

Usage::

    settings = Settings.from_env(database_url="postgresql+asyncpg://u:p@db/shop")
    settings.batch_size            # 500 unless STREAMPROC_BATCH_SIZE says otherwise

Every field names its environment variable and default below.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = ["Settings", "mask_url"]

DEFAULT_BROKER = "kafka://127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://streamproc:streamproc@127.0.0.1:5433/streamproc"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d+$")


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated streamproc settings; immutable once built."""

    #: Kafka bootstrap server(s): ``kafka://host:port``, several separated by
    #: ``;`` or ``,`` (``kafka://a:9092,b:9092``). ``KAFKA_BROKER``.
    broker: str = field(default=DEFAULT_BROKER, metadata=_env("KAFKA_BROKER"))
    #: SQLAlchemy async URL of PostgreSQL (asyncpg driver). ``DATABASE_URL``.
    database_url: str = field(default=DEFAULT_DATABASE_URL, metadata=_env("DATABASE_URL"))
    #: Schema of the inbox, outbox and dead-letter tables, and first on the
    #: search path of every session. ``STREAMPROC_SCHEMA``.
    schema: str = field(default="streamproc", metadata=_env("STREAMPROC_SCHEMA"))
    #: Events per transaction at most. ``STREAMPROC_BATCH_SIZE``.
    batch_size: int = field(default=500, metadata=_env("STREAMPROC_BATCH_SIZE"))
    #: How long a batch waits to fill before it runs anyway. ``STREAMPROC_BATCH_TIMEOUT_MS``.
    batch_timeout_ms: int = field(default=50, metadata=_env("STREAMPROC_BATCH_TIMEOUT_MS"))
    #: Handler attempts before an event is dead-lettered. ``STREAMPROC_MAX_ATTEMPTS``.
    max_attempts: int = field(default=3, metadata=_env("STREAMPROC_MAX_ATTEMPTS"))
    #: First retry delay; doubles per attempt, with jitter. ``STREAMPROC_RETRY_BACKOFF_MS``.
    retry_backoff_ms: int = field(default=100, metadata=_env("STREAMPROC_RETRY_BACKOFF_MS"))
    #: Cap of the retry delay. ``STREAMPROC_RETRY_BACKOFF_MAX_MS``.
    retry_backoff_max_ms: int = field(
        default=10_000, metadata=_env("STREAMPROC_RETRY_BACKOFF_MAX_MS")
    )
    #: Largest value accepted; larger ones are dead-lettered. ``STREAMPROC_MAX_MESSAGE_BYTES``.
    max_message_bytes: int = field(
        default=1_048_576, metadata=_env("STREAMPROC_MAX_MESSAGE_BYTES")
    )
    #: How long inbox rows (and hot-id cache entries) are kept: the window in
    #: which a duplicate is still recognised. ``STREAMPROC_INBOX_RETENTION_S``.
    inbox_retention_s: int = field(
        default=7 * 24 * 3600, metadata=_env("STREAMPROC_INBOX_RETENTION_S")
    )
    #: Hot-id cache entries per processor at most. ``STREAMPROC_CACHE_MAX_ENTRIES``.
    cache_max_entries: int = field(
        default=1_000_000, metadata=_env("STREAMPROC_CACHE_MAX_ENTRIES")
    )
    #: Where the hot-id caches live; empty means ``<faust datadir>/streamproc``.
    #: ``STREAMPROC_DATA_DIR``.
    data_dir: str = field(default="", metadata=_env("STREAMPROC_DATA_DIR"))
    #: Run the outbox relay inside every worker. ``STREAMPROC_RELAY``.
    relay_enabled: bool = field(default=True, metadata=_env("STREAMPROC_RELAY"))
    #: Outbox rows published per relay transaction. ``STREAMPROC_RELAY_BATCH_SIZE``.
    relay_batch_size: int = field(default=1000, metadata=_env("STREAMPROC_RELAY_BATCH_SIZE"))
    #: Relay poll interval when no NOTIFY arrives. ``STREAMPROC_RELAY_POLL_MS``.
    relay_poll_ms: int = field(default=1000, metadata=_env("STREAMPROC_RELAY_POLL_MS"))
    #: Key shards of the outbox; a shard is sent by one relay at a time, which
    #: keeps per-key order. Change only with an empty outbox. ``STREAMPROC_RELAY_SHARDS``.
    relay_shards: int = field(default=16, metadata=_env("STREAMPROC_RELAY_SHARDS"))
    #: Database connections per worker. ``STREAMPROC_DB_POOL_SIZE``.
    db_pool_size: int = field(default=4, metadata=_env("STREAMPROC_DB_POOL_SIZE"))
    #: Kafka ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``. ``KAFKA_SECURITY_PROTOCOL``.
    kafka_security_protocol: str = field(
        default="PLAINTEXT", metadata=_env("KAFKA_SECURITY_PROTOCOL")
    )
    #: SASL mechanism (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``). ``KAFKA_SASL_MECHANISM``.
    kafka_sasl_mechanism: str = field(default="", metadata=_env("KAFKA_SASL_MECHANISM"))
    #: SASL user. ``KAFKA_SASL_USERNAME``.
    kafka_sasl_username: str = field(default="", metadata=_env("KAFKA_SASL_USERNAME"))
    #: SASL password; never logged. ``KAFKA_SASL_PASSWORD``.
    kafka_sasl_password: str = field(
        default="", repr=False, metadata=_env("KAFKA_SASL_PASSWORD")
    )
    #: CA bundle for Kafka TLS. ``KAFKA_SSL_CAFILE``.
    kafka_ssl_cafile: str = field(default="", metadata=_env("KAFKA_SSL_CAFILE"))
    #: Client certificate for Kafka TLS. ``KAFKA_SSL_CERTFILE``.
    kafka_ssl_certfile: str = field(default="", metadata=_env("KAFKA_SSL_CERTFILE"))
    #: Client key for Kafka TLS. ``KAFKA_SSL_KEYFILE``.
    kafka_ssl_keyfile: str = field(default="", metadata=_env("KAFKA_SSL_KEYFILE"))

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.schema):
            raise ConfigurationError(f"schema {self.schema!r} is not a plain SQL identifier")
        if not self.database_url.startswith("postgresql+asyncpg://"):
            raise ConfigurationError(
                f"database_url must use postgresql+asyncpg://, got {mask_url(self.database_url)}"
            )
        if not self.broker.strip().startswith("kafka://") or not all(
            _HOST_PORT.match(server) for server in self.bootstrap_servers
        ):
            raise ConfigurationError(f"broker must be kafka://host:port[,host:port], got {self.broker!r}")
        for name in (
            "batch_size", "batch_timeout_ms", "max_attempts", "max_message_bytes",
            "inbox_retention_s", "cache_max_entries", "relay_batch_size", "relay_poll_ms",
            "relay_shards", "db_pool_size", "retry_backoff_ms", "retry_backoff_max_ms",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")
        protocols = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if self.kafka_security_protocol not in protocols:
            raise ConfigurationError(
                f"kafka_security_protocol must be one of {sorted(protocols)}, "
                f"got {self.kafka_security_protocol!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings: ``overrides`` (not None) win over ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
            elif f.metadata["env"] in env:
                values[f.name] = _parse(f, env[f.metadata["env"]])
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown settings: {sorted(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` of every broker in :attr:`broker`."""
        parts = re.split(r"[;,]", self.broker)
        return [part.strip().removeprefix("kafka://").rstrip("/") for part in parts if part.strip()]

    @property
    def faust_broker(self) -> str:
        """:attr:`broker` in the form Faust takes: ``kafka://a:9092;kafka://b:9092``."""
        return ";".join(f"kafka://{server}" for server in self.bootstrap_servers)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={mask_url(getattr(self, f.name)) if f.name == 'database_url' else getattr(self, f.name)!r}"
            for f in fields(self)
            if f.repr
        )
        return f"Settings({shown})"


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type
    try:
        if kind == "int":
            return int(raw)
        if kind == "bool":
            if raw.strip().lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.strip().lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
    except ValueError as exc:
        raise ConfigurationError(
            f"{f.metadata['env']}={raw!r} is not a valid {kind}"
        ) from exc
    return raw


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
