"""callback_shared.healthcheck, the images' HEALTHCHECK: the service's port from its own settings,
and healthy only on a 2xx answer from the service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from callback_dev.services import SETTINGS_CLASSES
from callback_shared import healthcheck
from callback_shared.healthcheck import HEALTHY, SERVICE_VARIABLE, UNHEALTHY, http_port, main


class Probes(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def service_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A stand-in service on a free port, which HTTP_PORT names."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Probes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    monkeypatch.setenv("HTTP_PORT", str(port))
    monkeypatch.setenv(SERVICE_VARIABLE, "scheduler")
    yield port
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("service", sorted(SETTINGS_CLASSES))
def test_each_service_settings_class_and_its_default_port(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing else is needed: no Kafka or MongoDB address, as in the image before compose sets any
    for name in ("HTTP_PORT", "KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL"):
        monkeypatch.delenv(name, raising=False)
    cls = healthcheck.settings_class(service)
    assert cls is SETTINGS_CLASSES[service]
    assert http_port(cls) == cls.model_fields["http_port"].default


def test_http_port_reads_the_variable_as_the_service_does(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = SETTINGS_CLASSES["exporter"]
    monkeypatch.setenv("http_port", "9123")  # case-insensitive, like the settings
    assert http_port(cls) == 9123
    monkeypatch.setenv("HTTP_PORT", "0")
    with pytest.raises(ValueError):
        http_port(SETTINGS_CLASSES["admin-api"])  # the field's own bounds (1..65535)


def test_healthy_only_when_the_service_answers_2xx(
    service_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == HEALTHY
    assert main(["/healthz"]) == HEALTHY
    assert main(["/readyz"]) == UNHEALTHY
    assert "503" in capsys.readouterr().err


def test_unhealthy_when_nothing_listens_or_the_service_is_unknown(
    service_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERVICE_VARIABLE, "no-such-service")
    assert main([]) == UNHEALTHY
    monkeypatch.delenv(SERVICE_VARIABLE)
    assert main([]) == UNHEALTHY
    monkeypatch.setenv(SERVICE_VARIABLE, "scheduler")
    monkeypatch.setenv("HTTP_PORT", "1")  # nothing listens there
    assert main([]) == UNHEALTHY
