"""The infrastructure provider names what is missing instead of hanging."""

import os
from pathlib import Path

import pytest
from callback_shared import infra
from callback_shared.infra import InfraError, LocalKafka


def test_missing_java_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CALLBACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InfraError, match="`java` not found"):
        LocalKafka(tmp_path / "kafka").start(timeout=5)


def test_missing_maven_is_named(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = next(
        Path(p) / "java" for p in os.environ["PATH"].split(":") if (Path(p) / "java").exists()
    )
    (bin_dir / "java").symlink_to(java)
    monkeypatch.setenv("CALLBACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(InfraError, match="`mvn` not found"):
        LocalKafka(tmp_path / "kafka").start(timeout=5)


def test_environment_source_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.setenv("MONGODB_URL", "mongodb://mongo.example:27017")
    provided = infra.provide(tmp_path)
    assert provided.source == "environment"
    assert provided.env() == {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092",
        "MONGODB_URL": "mongodb://mongo.example:27017",
    }
