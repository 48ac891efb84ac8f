"""All five services against a Kafka broker that only speaks SASL_SSL (an own CA, SCRAM-SHA-512),
a wrong password or an untrusted CA stopping a service at start with one line, and no secret in
any log. The broker is a second local one (certificates generated here); MongoDB is the
session's."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from callback_dev.infra import Infrastructure, KafkaSaslSsl, LocalKafka
from callback_shared.kafka import check_kafka_access, ensure_topics, make_admin_client
from callback_shared.mongo import CALLBACKS, make_mongo_client
from callback_shared.settings import PlatformSettings
from cryptography.hazmat.primitives import serialization

from tests.admin_api.support import SECRET, Tokens, immediate
from tests.foundation.certs import issue_server_cert, make_ca, pem_key
from tests.support import ServiceProcess, isolated_env, start_service

pytestmark = pytest.mark.e2e

SERVICES = ("state-tracker", "exporter", "routing-sim", "scheduler", "admin-api")
USER = "alice"
#: letters and digits only (the broker's SCRAM credentials are written on its command line)
PASSWORD = "Sup3rSecretPassw0rd" + uuid.uuid4().hex
PLAIN_USER, PLAIN_PASSWORD = "bob", "Pl41nPassw0rd" + uuid.uuid4().hex
SIM_SERVICES = json.dumps(
    {
        "secure": {
            "agents": 2,
            "dial_seconds": 0.05,
            "handle_seconds_min": 0.05,
            "handle_seconds_max": 0.1,
            "dial_failure_probability": 0.0,
        }
    }
)


@dataclass
class SecureKafka:
    broker: LocalKafka
    ca_file: Path
    other_ca_file: Path

    def env(self, password: str = PASSWORD, ca_file: Path | None = None) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD": password,
            "KAFKA_SSL_CAFILE": str(ca_file or self.ca_file),
        }


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    work = Path(tmp_path_factory.mktemp("secure-kafka"))
    ca_key, ca_cert = make_ca("callback test CA")
    key, cert = issue_server_cert(ca_key, ca_cert)
    _, other_ca = make_ca("callback test CA")  # same name, other key: not the broker's
    ca_file = work / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    other_ca_file = work / "other-ca.pem"
    other_ca_file.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    keystore = work / "broker-keystore.pem"
    keystore.write_bytes(
        pem_key(key)
        + cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    keystore.chmod(0o600)
    broker = LocalKafka(
        work / "kafka",
        sasl_ssl=KafkaSaslSsl(
            keystore_pem=keystore,
            ca_file=ca_file,
            users={USER: PASSWORD, PLAIN_USER: PLAIN_PASSWORD},
        ),
    )
    broker.start()
    try:
        yield SecureKafka(broker, ca_file, other_ca_file)
    finally:
        broker.stop()


def _settings(env: dict[str, str]) -> PlatformSettings:
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    return PlatformSettings(**values)


def _wait_exit(process: ServiceProcess, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.proc.poll()
        if code is not None:
            return code
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{process.name} still runs after {timeout}s:\n{process.output()}")


def _error_lines(process: ServiceProcess) -> list[str]:
    lines = process.log.read_text(errors="replace").splitlines()
    return [line for line in lines if '"level": "error"' in line or "Traceback" in line]


async def test_all_five_services_run_over_sasl_ssl(
    secure_kafka: SecureKafka, infra: Infrastructure, tmp_path: Path
) -> None:
    env = {**isolated_env(infra), **secure_kafka.env(), "JWT_SECRET": SECRET}
    settings = _settings(env)
    mongo = make_mongo_client(settings)
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            extra = {"ROUTING_SIM_SERVICES": SIM_SERVICES} if name == "routing-sim" else {}
            processes[name] = start_service(name, env, tmp_path, **extra)
        for process in processes.values():
            process.wait_ready(timeout=90)
        admin = processes["admin-api"]
        async with httpx.AsyncClient(base_url=f"{admin.url}/api/v1", timeout=10) as http:
            created = await http.post(
                "/callbacks", json=immediate("secure"), headers=Tokens().supervisor()
            )
        assert created.status_code == 201, created.text
        callback_id = uuid.UUID(created.json()["id"])
        callbacks = mongo[settings.mongodb_database][CALLBACKS]
        doc = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            doc = await callbacks.find_one({"_id": callback_id})
            if doc is not None and doc["state"] == "COMPLETED":
                break
            await asyncio.sleep(0.2)
        assert doc is not None
        assert (doc["state"], doc.get("result")) == ("COMPLETED", "AGENT"), doc
        codes = {name: process.terminate() for name, process in processes.items()}
        assert codes == dict.fromkeys(SERVICES, 0)
    finally:
        for process in processes.values():
            if process.proc.poll() is None:
                process.kill()
        await mongo.drop_database(settings.mongodb_database)
        await mongo.close()
    for process in processes.values():
        text = process.log.read_text(errors="replace")
        assert PASSWORD not in text, f"the SASL password is in the log of {process.name}"
        refusals = [
            line
            for line in _error_lines(process)
            if any(word in line for word in ("SSL", "SASL", "uthentication", "certificate"))
        ]
        assert not refusals, process.output()


@pytest.mark.parametrize(
    ("case", "expected"),
    [("wrong-password", "authentication"), ("untrusted-ca", "certificate not trusted")],
)
def test_a_refused_connection_stops_the_service_with_one_line(
    secure_kafka: SecureKafka, infra: Infrastructure, tmp_path: Path, case: str, expected: str
) -> None:
    wrong_password = "Wr0ngPassw0rd" + uuid.uuid4().hex
    if case == "wrong-password":
        kafka_env = secure_kafka.env(password=wrong_password)
    else:
        kafka_env = secure_kafka.env(ca_file=secure_kafka.other_ca_file)
    process = start_service("scheduler", {**isolated_env(infra), **kafka_env}, tmp_path)
    started = time.monotonic()
    code = _wait_exit(process)
    assert code == 2, process.output()
    assert time.monotonic() - started < 30
    errors = _error_lines(process)
    assert len(errors) == 1, process.output()
    line = json.loads(errors[0])
    assert line["event"].startswith("cannot start: Kafka 127.0.0.1:"), line
    assert expected in line["event"], line
    text = process.log.read_text(errors="replace")
    assert wrong_password not in text
    assert PASSWORD not in text


async def test_plain_over_tls_and_an_admin_client(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PLAIN_PASSWORD + "\n")
    settings = _settings(
        {
            **secure_kafka.env(),
            "MONGODB_URL": "mongodb://127.0.0.1:1",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": PLAIN_USER,
            "KAFKA_SASL_PASSWORD": "",
            "KAFKA_SASL_PASSWORD_FILE": str(password_file),
            "TOPIC_DUE_CALLBACKS": f"{uuid.uuid4().hex[:8]}.due",
        }
    )
    await check_kafka_access(settings)
    await ensure_topics(settings, "plain-test")
    admin = make_admin_client(settings, "plain-test-admin")
    await admin.start()
    try:
        assert settings.topic_due_callbacks in await admin.list_topics()
    finally:
        await admin.close()
