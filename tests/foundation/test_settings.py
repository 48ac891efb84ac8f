"""Invalid configuration fails at start with one line naming the setting."""

import os
import subprocess

import pytest
from callback_shared.settings import CONFIG_ERROR_EXIT_CODE, PlatformSettings, describe_error
from pydantic import ValidationError

from tests.support import BIN

SERVICES = ["scheduler", "state-tracker", "admin-api", "exporter", "routing-sim"]
GOOD = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "MONGODB_URL": "mongodb://127.0.0.1:27017"}


def settings_error(monkeypatch, **env: str) -> str:
    for key in [*GOOD, "HTTP_PORT"]:
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
def test_bad_setting_is_named(monkeypatch, env, named):
    message = settings_error(monkeypatch, **env)
    assert named in message
    assert "\n" not in message


def test_valid_settings_load(monkeypatch):
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    settings = PlatformSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_due_callbacks == "callbacks.due"


@pytest.mark.parametrize("service", SERVICES)
def test_service_refuses_to_start_with_bad_url(service):
    env = {k: v for k, v in os.environ.items() if k not in GOOD}
    env.update(GOOD, MONGODB_URL="http://not-mongo")
    run = subprocess.run(
        [str(BIN / f"callback-{service}")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == CONFIG_ERROR_EXIT_CODE
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("invalid configuration: MONGODB_URL:")


def test_service_refuses_to_start_without_kafka_setting():
    env = {k: v for k, v in os.environ.items() if k not in GOOD}
    env["MONGODB_URL"] = GOOD["MONGODB_URL"]
    run = subprocess.run(
        [str(BIN / "callback-scheduler")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == CONFIG_ERROR_EXIT_CODE
    assert run.stderr.strip() == "invalid configuration: KAFKA_BOOTSTRAP_SERVERS: Field required"
