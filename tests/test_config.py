"""Settings: constructor over environment over defaults, validated, secrets masked."""

import pytest

from streamproc import ConfigurationError, Settings
from streamproc.config import mask_url


def test_defaults_reach_the_local_services() -> None:
    s = Settings.from_env({})
    assert s.broker == "kafka://127.0.0.1:9092"
    assert s.database_url == "postgresql+asyncpg://streamproc:streamproc@127.0.0.1:5433/streamproc"
    assert s.bootstrap_servers == ["127.0.0.1:9092"]


def test_constructor_wins_over_environment() -> None:
    env = {"STREAMPROC_BATCH_SIZE": "7", "STREAMPROC_SCHEMA": "from_env", "STREAMPROC_RELAY": "off"}
    s = Settings.from_env(env, schema="from_code")
    assert (s.batch_size, s.schema, s.relay_enabled) == (7, "from_code", False)


def test_several_brokers() -> None:
    for value in ("kafka://a:1;kafka://b:2", "kafka://a:1,b:2", "kafka://a:1, kafka://b:2"):
        s = Settings.from_env({"KAFKA_BROKER": value})
        assert s.bootstrap_servers == ["a:1", "b:2"]
        assert s.faust_broker == "kafka://a:1;kafka://b:2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMPROC_BATCH_SIZE": "many"}, "STREAMPROC_BATCH_SIZE='many' is not a valid int"),
        ({"STREAMPROC_BATCH_SIZE": "0"}, "batch_size must be at least 1"),
        ({"STREAMPROC_SCHEMA": "x; drop table"}, "not a plain SQL identifier"),
        ({"DATABASE_URL": "postgresql://u:hunter2@h/db"}, "postgresql+asyncpg://"),
        ({"KAFKA_BROKER": "127.0.0.1:9092"}, "kafka://host:port"),
        ({"KAFKA_BROKER": "kafka://nohostport"}, "kafka://host:port"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka_security_protocol"),
    ],
)
def test_bad_settings_fail_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace("+", r"\+")):
        Settings.from_env(env)


def test_passwords_never_show() -> None:
    s = Settings.from_env(
        {"DATABASE_URL": "postgresql+asyncpg://app:hunter2@db:5432/x", "KAFKA_SASL_PASSWORD": "s3cret"}
    )
    assert "hunter2" not in repr(s) and "s3cret" not in repr(s)
    assert "app:***@db:5432" in repr(s)
    with pytest.raises(ConfigurationError) as failed:
        Settings.from_env({"DATABASE_URL": "postgresql://app:hunter2@db/x"})
    assert "hunter2" not in str(failed.value)
    assert mask_url("postgresql+asyncpg://db/x") == "postgresql+asyncpg://db/x"


def test_sslmode_goes_to_asyncpg() -> None:
    from streamproc.database import _split_ssl

    url, args = _split_ssl("postgresql+asyncpg://u:p@db:5432/x?sslmode=verify-full&application_name=a")
    assert url == "postgresql+asyncpg://u:p@db:5432/x?application_name=a"
    assert args == {"ssl": "verify-full"}
