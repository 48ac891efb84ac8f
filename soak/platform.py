"""The system under soak: Kafka and MongoDB as local processes, every service its own process
(two scheduler replicas), each one killable, restartable and pausable."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from callback_dev.infra import Infrastructure, free_port, provide

BIN = Path(sys.executable).parent

TOPICS = {
    "TOPIC_DUE_CALLBACKS": "soak.due",
    "TOPIC_ROUTING_EVENTS": "soak.routing-events",
    "TOPIC_ROUTING_COMMANDS": "soak.routing-commands",
    "TOPIC_LIFECYCLE_EVENTS": "soak.lifecycle",
    "TOPIC_DEAD_LETTER": "soak.dead-letter",
}
DATABASE = "soak"
#: Scheduler settings of the soak (the auditor's bounds are derived from them).
LEASE_SECONDS = 5.0
REDISPATCH_AFTER_SECONDS = 15.0
RECLAIM_INTERVAL_SECONDS = 1.0
CANCEL_RESEND_SECONDS = 10.0

#: Routing profiles per service: dial failures and abandons in both, one agent short in "slow".
PROFILES = {
    "soak-fast": {
        "agents": 3,
        "handle_seconds_min": 1.0,
        "handle_seconds_max": 4.0,
        "dial_seconds": 0.5,
        "dial_failure_probability": 0.25,
        "abandon_probability": 0.1,
        "abandon_after_seconds": 2.0,
        "heartbeat_seconds": 2.0,
    },
    "soak-slow": {
        "agents": 1,
        "handle_seconds_min": 2.0,
        "handle_seconds_max": 6.0,
        "dial_seconds": 1.0,
        "dial_failure_probability": 0.15,
        "abandon_probability": 0.05,
        "abandon_after_seconds": 3.0,
        "patience_seconds": 40.0,
        "heartbeat_seconds": 2.0,
    },
}
#: Stored service settings: one-minute slots of a few places, quick retries, a silence bound
#: above the longest outage the chaos makes (a Kafka restart), daily caps the load can reach.
SERVICE_SETTINGS = {
    "soak-fast": {
        "slot_length_minutes": 1,
        "slot_capacity": 4,
        "dial_retry": {"max_attempts": 3, "min_interval_seconds": 5},
        "routing_silence_seconds": 45,
        "processing_stall_seconds": 60,
        "guards": {
            "duplicate_check": "off",
            "max_requests_per_number_per_day": 12,
            "max_open_callbacks": 20,
            "immediate_outside_office_hours": "accept",
        },
    },
    "soak-slow": {
        "slot_length_minutes": 1,
        "slot_capacity": 3,
        "dial_retry": {"max_attempts": 2, "min_interval_seconds": 8},
        "routing_silence_seconds": 45,
        "processing_stall_seconds": 60,
        "guards": {
            "duplicate_check": "max_2",
            "max_requests_per_number_per_day": 6,
            "immediate_outside_office_hours": "accept",
        },
    },
}
SERVICE_NAMES = [
    "admin-api",
    "scheduler-1",
    "scheduler-2",
    "state-tracker",
    "routing-sim",
    "exporter",
]


@dataclass
class ServiceProcess:
    """One service process; restarted with the same command, port, settings and log."""

    name: str
    program: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        env = {**os.environ, **self.env, "HTTP_PORT": str(self.port), "LOG_FORMAT": "json"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / f"callback-{self.program}")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.paused = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive() or self.paused:
            return False
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        return False

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}; see {self.log}")
            if self.ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.paused = False

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def terminate(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@dataclass
class Platform:
    """Kafka, MongoDB and the services of one soak run, under ``work_dir``."""

    work_dir: Path
    jwt_secret: str
    seed: int
    infra: Infrastructure | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        assert self.infra is not None
        return {
            **self.infra.env(),
            **TOPICS,
            "MONGODB_DATABASE": DATABASE,
            "TOPIC_PARTITIONS": "3",
        }

    def start_infrastructure(self) -> None:
        self.infra = provide(self.work_dir / "infra", use_env=False)
        if self.infra.kafka is None or self.infra.mongo is None:
            raise RuntimeError(
                f"the soak restarts Kafka and MongoDB: it needs local processes, not "
                f"{self.infra.source}"
            )

    def define_services(self) -> None:
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        scheduler = {
            "SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS),
            "SCHEDULER_REDISPATCH_AFTER_SECONDS": str(REDISPATCH_AFTER_SECONDS),
            "SCHEDULER_RECLAIM_INTERVAL_SECONDS": str(RECLAIM_INTERVAL_SECONDS),
            "SCHEDULER_CANCEL_RESEND_SECONDS": str(CANCEL_RESEND_SECONDS),
        }
        extra: dict[str, dict[str, str]] = {
            "admin-api": {"JWT_SECRET": self.jwt_secret},
            "scheduler-1": scheduler,
            "scheduler-2": scheduler,
            "routing-sim": {
                "ROUTING_SIM_SEED": str(self.seed),
                "ROUTING_SIM_SERVICES": json.dumps(PROFILES),
            },
        }
        for name in SERVICE_NAMES:
            program = name.split("-")[0] if name.startswith("scheduler") else name
            self.services[name] = ServiceProcess(
                name, program, {**self.env, **extra.get(name, {})}, logs / f"{name}.log"
            )

    def start_services(self) -> None:
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            service.wait_ready()

    def stop(self) -> dict[str, int | None]:
        codes = {name: service.terminate() for name, service in self.services.items()}
        if self.infra is not None:
            self.infra.close()
        return codes

    def restart_kafka(self, down_seconds: float) -> None:
        assert self.infra is not None and self.infra.kafka is not None
        self.infra.kafka.stop()
        time.sleep(down_seconds)
        self.infra.kafka.start()

    def restart_mongodb(self, down_seconds: float) -> None:
        assert self.infra is not None and self.infra.mongo is not None
        self.infra.mongo.stop()
        time.sleep(down_seconds)
        self.infra.mongo.start()
