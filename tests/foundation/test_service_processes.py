"""Each service process starts, turns ready, serves health and metrics, and exits 0 on SIGTERM."""

import time
from pathlib import Path

import httpx
import pytest

from tests.support import start_service

SERVICES = ["scheduler", "state-tracker", "admin-api", "exporter", "routing-sim"]


@pytest.mark.e2e
@pytest.mark.parametrize("service", SERVICES)
def test_service_starts_ready_and_stops_cleanly(
    service: str, env: dict[str, str], tmp_path: Path
) -> None:
    process = start_service(service, env, tmp_path)
    try:
        process.wait_ready()
        assert httpx.get(f"{process.url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{process.url}/readyz").json()
        assert ready["checks"] == {"started": True, "mongodb": True, "kafka": True}
        metrics = httpx.get(f"{process.url}/metrics").text
        assert f'callback_service_ready{{service="{service}"}} 1.0' in metrics
    finally:
        code = process.terminate()
    assert code == 0, process.output()
    assert '"event": "service stopped"' in process.output()


@pytest.mark.e2e
def test_service_stays_up_not_ready_while_dependencies_are_unreachable(
    env: dict[str, str], tmp_path: Path
) -> None:
    process = start_service(
        "scheduler", {**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, tmp_path
    )
    try:
        for _ in range(50):
            try:
                if httpx.get(f"{process.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        response = httpx.get(f"{process.url}/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["started"] is False
    finally:
        code = process.terminate()
    assert code == 0, process.output()
