"""Kafka client settings (bootstrap, TLS, SASL) for Faust and for the relay's producer."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import faust
from aiokafka import AIOKafkaClient, AIOKafkaProducer

from .config import Settings
from .retry import backoff_s

log = logging.getLogger(__name__)

__all__ = ["faust_credentials", "new_producer", "wait_for_broker"]


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The ``broker_credentials`` Faust needs for ``settings``, or None for PLAINTEXT."""
    context = _ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "ssl_context": _ssl_context(settings),
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return kwargs


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (acks=all)."""
    kwargs = _client_kwargs(settings)
    kwargs.update(
        enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=256 * 1024, request_timeout_ms=30_000
    )
    kwargs.update(overrides)
    return AIOKafkaProducer(**kwargs)


async def wait_for_broker(settings: Settings) -> None:
    """Return once the cluster answers a metadata request with at least one broker;
    retry with backoff until then (Faust itself gives up at start-up)."""
    attempt = 0
    while True:
        client = AIOKafkaClient(**_client_kwargs(settings), request_timeout_ms=10_000)
        try:
            await client.bootstrap()
            if client.cluster.brokers():
                return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            problem: BaseException | str = exc
        else:
            problem = "no brokers in the metadata"
        finally:
            await client.close()
        attempt += 1
        delay = backoff_s(attempt, settings.retry_backoff_ms, settings.retry_backoff_max_ms)
        log.warning("Kafka not reachable at %s (%r), retrying in %.1fs", settings.bootstrap_servers, problem, delay)
        await asyncio.sleep(delay)
