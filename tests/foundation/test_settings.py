"""Invalid configuration fails at start with one line naming the setting."""

import os
import subprocess

import pytest
from callback_shared.mongo import make_mongo_client
from callback_shared.settings import CONFIG_ERROR_EXIT_CODE, PlatformSettings, describe_error
from pydantic import ValidationError

from tests.support import BIN

SERVICES = ["scheduler", "state-tracker", "admin-api", "exporter", "routing-sim"]
GOOD = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "MONGODB_URL": "mongodb://127.0.0.1:27017"}
CONCERNS = [
    "MONGODB_WRITE_CONCERN",
    "MONGODB_JOURNAL",
    "MONGODB_WRITE_TIMEOUT_MS",
    "MONGODB_READ_CONCERN",
]


def settings_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key in [*GOOD, "HTTP_PORT", *CONCERNS]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as raised:
        PlatformSettings()
    return describe_error(raised.value)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MONGODB_URL": GOOD["MONGODB_URL"]}, "KAFKA_BOOTSTRAP_SERVERS: Field required"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}, "MONGODB_URL: Field required"),
        ({**GOOD, "KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS: 'localhost'"),
        ({**GOOD, "MONGODB_URL": "postgres://x"}, "MONGODB_URL: must start with mongodb://"),
        ({**GOOD, "MONGODB_URL": "mongodb://h:99999"}, "MONGODB_URL:"),
        ({**GOOD, "HTTP_PORT": "eighty"}, "HTTP_PORT:"),
    ],
)
def test_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    message = settings_error(monkeypatch, **env)
    assert named in message
    assert "\n" not in message


def test_valid_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    settings = PlatformSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_due_callbacks == "callbacks.due"


@pytest.mark.process
@pytest.mark.parametrize("service", SERVICES)
def test_service_refuses_to_start_with_bad_url(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in GOOD}
    env.update(GOOD, MONGODB_URL="http://not-mongo")
    run = subprocess.run(
        [str(BIN / f"callback-{service}")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == CONFIG_ERROR_EXIT_CODE
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("invalid configuration: MONGODB_URL:")


@pytest.mark.process
def test_service_refuses_to_start_without_kafka_setting() -> None:
    env = {k: v for k, v in os.environ.items() if k not in GOOD}
    env["MONGODB_URL"] = GOOD["MONGODB_URL"]
    run = subprocess.run(
        [str(BIN / "callback-scheduler")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == CONFIG_ERROR_EXIT_CODE
    assert run.stderr.strip() == "invalid configuration: KAFKA_BOOTSTRAP_SERVERS: Field required"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MONGODB_WRITE_CONCERN": "0"}, "MONGODB_WRITE_CONCERN: 0 nodes: must be 1 to 50"),
        ({"MONGODB_WRITE_CONCERN": "51"}, "MONGODB_WRITE_CONCERN: 51 nodes"),
        ({"MONGODB_WRITE_CONCERN": "all"}, "MONGODB_WRITE_CONCERN: 'all' is neither"),
        ({"MONGODB_WRITE_CONCERN": "-1"}, "MONGODB_WRITE_CONCERN: '-1' is neither"),
        ({"MONGODB_JOURNAL": "sometimes"}, "MONGODB_JOURNAL:"),
        ({"MONGODB_WRITE_TIMEOUT_MS": "-5"}, "MONGODB_WRITE_TIMEOUT_MS:"),
        ({"MONGODB_READ_CONCERN": "available"}, "MONGODB_READ_CONCERN:"),
        ({"MONGODB_READ_CONCERN": "linearizable"}, "MONGODB_READ_CONCERN:"),
    ],
)
def test_bad_mongodb_concern_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    message = settings_error(monkeypatch, **GOOD, **env)
    assert named in message
    assert "\n" not in message


def test_mongodb_concerns_default_to_majority_and_journal(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    for key in CONCERNS:
        monkeypatch.delenv(key, raising=False)
    settings = PlatformSettings()
    assert settings.mongodb_write_concern == "majority"
    assert settings.mongodb_journal is True
    assert settings.mongodb_write_timeout_ms == 10_000
    assert settings.mongodb_read_concern == "majority"
    client = make_mongo_client(settings)
    assert client.write_concern.document == {"w": "majority", "j": True, "wtimeout": 10_000}
    assert client.read_concern.document == {"level": "majority"}


def test_mongodb_concerns_from_settings_win_over_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", GOOD["KAFKA_BOOTSTRAP_SERVERS"])
    monkeypatch.setenv(
        "MONGODB_URL",
        "mongodb://127.0.0.1:27017/?w=majority&journal=true&readConcernLevel=majority",
    )
    monkeypatch.setenv("MONGODB_WRITE_CONCERN", " 02")
    monkeypatch.setenv("MONGODB_JOURNAL", "false")
    monkeypatch.setenv("MONGODB_WRITE_TIMEOUT_MS", "0")
    monkeypatch.setenv("MONGODB_READ_CONCERN", "local")
    settings = PlatformSettings()
    assert settings.mongodb_write_concern == "2"
    client = make_mongo_client(settings)
    assert client.write_concern.document == {"w": 2, "j": False, "wtimeout": 0}
    assert client.read_concern.document == {"level": "local"}
