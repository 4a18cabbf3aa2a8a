"""The worker's PostgreSQL engine and session factory."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .config import Settings

__all__ = ["create_engine", "create_sessions"]

# A connection that silently stops answering (a network partition drops no
# RST) must surface as a transient error, not hang a batch forever.
_CONNECT_TIMEOUT_S = 10
_COMMAND_TIMEOUT_S = 60


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine whose sessions see ``settings.schema`` first on the search path.

    ``sslmode`` in the URL is passed to asyncpg as its ``ssl`` argument
    (``disable``, ``prefer``, ``require``, ``verify-ca``, ``verify-full``).
    """
    url, connect_args = _split_ssl(settings.database_url)
    connect_args["timeout"] = _CONNECT_TIMEOUT_S
    connect_args["command_timeout"] = _COMMAND_TIMEOUT_S
    connect_args["server_settings"] = {
        "search_path": f'"{settings.schema}",public',
        "application_name": "streamproc",
    }
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args=connect_args,
        hide_parameters=True,
    )


def create_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep objects usable after commit (no expire-on-commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _split_ssl(url: str) -> tuple[str, dict[str, Any]]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    connect_args: dict[str, Any] = {}
    kept = []
    for key, value in query:
        if key in ("sslmode", "ssl"):
            connect_args["ssl"] = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), connect_args
