"""docker-compose.yml: valid, and the same ports and credentials as the defaults.

No Docker engine runs here, so the file is validated with the docker-compose
CLI (Debian package ``docker-compose``, installed by ``make tools``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"


def docker_compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: run `make tools` (Debian package docker-compose)", pytrace=False)
    return subprocess.run(
        [exe, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def services_of(config: str) -> dict[str, dict[str, list[str]]]:
    """Per service, the lines under each key of the normalized ``docker-compose config``.

    That output is block-style YAML written by docker-compose itself; this
    reads just its ``services:`` mapping (a key's inline value, or the list
    items and ``key: value`` lines below it), so no YAML library is needed.
    """
    services: dict[str, dict[str, list[str]]] = {}
    in_services = False
    service = key = None
    for line in config.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        text = line.strip()
        if indent == 0:
            in_services, service, key = text == "services:", None, None
        elif not in_services:
            continue
        elif indent == 2:
            service, key = text.rstrip(":"), None
            services[service] = {}
        elif indent == 4 and not text.startswith("- ") and service is not None:
            key, _, inline = text.partition(":")
            services[service][key] = [inline.strip()] if inline.strip() else []
        elif service is not None and key is not None:
            services[service][key].append(text)
    return services


def unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in service.get("environment", []) if ":" in line)
    return {k.strip(): unquote(v) for k, v in pairs}


def ports(service: dict[str, list[str]]) -> list[str]:
    return [unquote(line[2:]) for line in service.get("ports", []) if line.startswith("- ")]


def test_compose_file_validates() -> None:
    result = docker_compose("config", "-q")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_compose_stack_matches_the_defaults() -> None:
    result = docker_compose("config")
    assert result.returncode == 0, result.stderr
    services = services_of(result.stdout)

    assert set(services) == {"kafka", "postgres"}
    kafka, postgres = services["kafka"], services["postgres"]

    assert ports(kafka) == ["127.0.0.1:9092:9092/tcp"]
    assert ports(postgres) == ["127.0.0.1:5433:5432/tcp"]

    assert kafka["image"][0].startswith("apache/kafka:"), kafka["image"]
    assert postgres["image"] == ["postgres:15"]
    env = environment(kafka)
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://127.0.0.1:9092"
    for setting in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_MIN_INSYNC_REPLICAS",
    ):
        assert env[setting] == "1", setting

    env = environment(postgres)
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == ("streamproc",) * 3
    assert "healthcheck" in kafka and "healthcheck" in postgres
