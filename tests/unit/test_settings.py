"""Settings: defaults, parsing, and one clear line for each kind of mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from quotes_consumer.settings import SETTING_NAMES, SettingsError, load

MINIMAL = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:29092",
    "POSTGRES_HOST": "postgres",
    "POSTGRES_DB": "quotes",
    "POSTGRES_USER": "lab",
    "POSTGRES_PASSWORD": "secret-value",
    "MONGO_URI": "mongodb://user:pw@mongo:27017/?authSource=admin",
}
REPO = Path(__file__).resolve().parents[2]


def test_defaults_fill_everything_optional() -> None:
    settings = load(MINIMAL)
    assert settings.kafka_topic == "quotes"
    assert settings.kafka_dlq_topic == "quotes.dlq"
    assert settings.kafka_group_id == "quotes-consumer"
    assert settings.kafka_auto_offset_reset == "earliest"
    assert settings.postgres_port == 5432
    assert settings.mongo_db == "quotes"
    assert settings.mongo_collection == "quotes"
    assert settings.consumer_batch_size == 1000
    assert settings.consumer_metrics_port == 8000
    assert settings.log_level == "INFO"


def test_dlq_topic_follows_the_topic() -> None:
    assert load({**MINIMAL, "KAFKA_TOPIC": "events"}).kafka_dlq_topic == "events.dlq"
    custom = load({**MINIMAL, "KAFKA_DLQ_TOPIC": "rejects"})
    assert custom.kafka_dlq_topic == "rejects"


def test_values_are_parsed_and_normalized() -> None:
    settings = load(
        {
            **MINIMAL,
            "KAFKA_BOOTSTRAP_SERVERS": " a:1 , b:2 ",
            "POSTGRES_PORT": "15432",
            "CONSUMER_UNHEALTHY_AFTER_S": "2.5",
            "LOG_LEVEL": "debug",
            "KAFKA_AUTO_OFFSET_RESET": "LATEST",
        }
    )
    assert settings.kafka_bootstrap_servers == "a:1,b:2"
    assert settings.postgres_port == 15432
    assert settings.consumer_unhealthy_after_s == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.kafka_auto_offset_reset == "latest"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka", "expected host:port"),
        ("KAFKA_TOPIC", "bad topic!", "expected a Kafka topic name"),
        ("POSTGRES_PORT", "70000", "from 1 to 65535"),
        ("POSTGRES_PORT", "five", "from 1 to 65535"),
        ("CONSUMER_BATCH_SIZE", "0", "from 1 to 100000"),
        ("CONSUMER_BATCH_TIMEOUT_MS", "-5", "from 1 to 600000"),
        ("CONSUMER_UNHEALTHY_AFTER_S", "soon", "number of seconds"),
        ("CONSUMER_RETRY_MAX_BACKOFF_S", "0", "greater than 0"),
        ("LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR"),
        ("KAFKA_AUTO_OFFSET_RESET", "middle", "one of earliest, latest"),
        ("POSTGRES_DB", "   ", "non-empty"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load({**MINIMAL, name: value})
    assert str(raised.value).startswith(f"{name}=")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", [n for n in MINIMAL])
def test_each_required_setting_is_required(name: str) -> None:
    env = {k: v for k, v in MINIMAL.items() if k != name}
    with pytest.raises(SettingsError, match=f"^{name} is required: "):
        load(env)


def test_secrets_are_never_echoed() -> None:
    with pytest.raises(SettingsError) as raised:
        load({**MINIMAL, "MONGO_URI": "http://user:hunter2hunter2@mongo"})
    assert "hunter2" not in str(raised.value)
    assert str(raised.value).startswith("MONGO_URI is invalid")


def test_dlq_must_differ_from_topic() -> None:
    with pytest.raises(SettingsError, match="KAFKA_DLQ_TOPIC must differ"):
        load({**MINIMAL, "KAFKA_DLQ_TOPIC": "quotes"})


def test_every_setting_is_documented_in_env_example() -> None:
    example = (REPO / ".env.example").read_text()
    documented = {line.split("=", 1)[0].strip() for line in example.splitlines() if "=" in line}
    missing = [name for name in SETTING_NAMES if name not in documented]
    assert not missing, f".env.example lacks {missing}"


def test_the_service_stops_with_one_line_on_a_bad_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **MINIMAL, "CONSUMER_BATCH_SIZE": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "quotes_consumer"],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "quotes-consumer: CONSUMER_BATCH_SIZE='lots' is invalid: "
        "expected a whole number from 1 to 100000"
    ]
    assert result.stdout == ""


def test_dotenv_file_is_read_but_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CONSUMER_BATCH_SIZE=oops\nPOSTGRES_PORT=bad\n")
    env = {"PATH": "/usr/bin:/bin", **MINIMAL, "POSTGRES_PORT": "5432"}
    result = subprocess.run(
        [sys.executable, "-m", "quotes_consumer"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CONSUMER_BATCH_SIZE='oops'" in result.stderr
