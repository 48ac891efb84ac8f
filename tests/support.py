"""Helpers for tests that run services and scripts as separate OS processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from callback_dev.infra import Infrastructure, free_port

BIN = Path(sys.executable).parent


def isolated_env(infra: Infrastructure) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        **infra.env(),
        "MONGODB_DATABASE": f"test_{tag}",
        "TOPIC_DUE_CALLBACKS": f"{tag}.due",
        "TOPIC_ROUTING_EVENTS": f"{tag}.routing-events",
        "TOPIC_ROUTING_COMMANDS": f"{tag}.routing-commands",
        "TOPIC_LIFECYCLE_EVENTS": f"{tag}.lifecycle",
        "TOPIC_DEAD_LETTER": f"{tag}.dead-letter",
        "TOPIC_PARTITIONS": "3",
    }


@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.output()}")

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


def start_service(name: str, env: dict[str, str], log_dir: Path, **extra: str) -> ServiceProcess:
    """Run ``callback-<name>`` as its own process on a free port."""
    port = free_port()
    log = log_dir / f"{name}-{port}.log"
    full_env = {**os.environ, **env, **extra, "HTTP_PORT": str(port), "LOG_FORMAT": "json"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / f"callback-{name}")], env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    return ServiceProcess(name, proc, port, log)
