"""Secrets stay out of logs, errors and CLI output; the documented least
privileges are enough for a worker; SQL takes no identifier from outside."""

from __future__ import annotations

import os
import secrets
import subprocess
from urllib.parse import urlsplit

from streamproc import Settings
from streamproc.kafka import faust_credentials, new_producer
from tests.kafka_helpers import produce
from tests.pipeline import Pipeline
from tests.test_chain import TOPICS, counts, order
from tests.waiting import wait_until
from tests.workers import FAUST

# The grants README.md documents for the role a worker runs as, once an admin
# ran `faust -A <app> init-db`. {s} is the schema, {r} the role.
LEAST_PRIVILEGES = """
GRANT USAGE ON SCHEMA {s} TO {r};
GRANT SELECT ON {s}.schema_version TO {r};
GRANT SELECT, INSERT, DELETE ON {s}.inbox, {s}.outbox, {s}.dead_letter TO {r};
GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.shop_reservation, {s}.shop_payment, {s}.shop_shipment TO {r};
"""


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl()


async def test_least_privileged_worker_and_no_password_anywhere(pipeline: Pipeline) -> None:
    await pipeline.create_topics(TOPICS, partitions=1)
    init = subprocess.run([FAUST, "-A", "agents.app", "init-db"], env={**os.environ, **pipeline.env()},
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr

    role, password = f"app_{pipeline.app_id}", f"Pw-{secrets.token_hex(12)}"
    await pipeline.pg.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        schema = f'"{pipeline.schema}"'
        await pipeline.pg.execute(LEAST_PRIVILEGES.format(s=schema, r=role))
        url = with_credentials(pipeline.database_url, role, password)

        worker = pipeline.worker("agents.app", DATABASE_URL=url).start()
        await produce(pipeline.bootstrap, pipeline.topic("orders"), [order(i) for i in range(20)])
        await wait_until(lambda: counts(pipeline), lambda c: c["shop_shipment"] == 20, 60, "20 shipments")
        worker.stop()
        listing = subprocess.run([FAUST, "-A", "agents.app", "dlq-list"], capture_output=True, text=True,
                                 env={**os.environ, **pipeline.env(DATABASE_URL=url)}, timeout=120)
        wrong = subprocess.run([FAUST, "-A", "agents.app", "dlq-list"], capture_output=True, text=True,
                               env={**os.environ, **pipeline.env(DATABASE_URL=with_credentials(
                                   pipeline.database_url, role, password + "-wrong"))}, timeout=120)
    finally:
        await pipeline.pg.execute(f"DROP OWNED BY {role}")
        await pipeline.pg.execute(f"DROP ROLE {role}")

    assert listing.returncode == 0, listing.stderr
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stdout + wrong.stderr
    for text in (worker.log_text(), listing.stdout + listing.stderr, wrong.stdout + wrong.stderr, init.stdout):
        assert password not in text
    assert (await counts(pipeline))["dead_letter"] == 0


async def test_kafka_tls_and_sasl_settings_reach_both_clients() -> None:
    settings = Settings.from_env({
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "kafka-secret",
    })
    credentials = faust_credentials(settings)
    assert credentials is not None
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "svc", "kafka-secret", "SCRAM-SHA-512")
    producer = new_producer(settings)
    client = producer.client
    assert (client._security_protocol, client._sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
    assert (client._sasl_plain_username, client._sasl_plain_password) == ("svc", "kafka-secret")
    assert "kafka-secret" not in repr(settings)
    assert faust_credentials(Settings.from_env({})) is None
