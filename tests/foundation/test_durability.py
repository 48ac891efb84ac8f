"""An acknowledged create survives ``kill -9`` of the MongoDB-protocol server right after the 201.

The admin API runs as its own process with the default write concern (``w: majority, j: true``)
against a server of this test's own (SecantusDB, ``LocalMongo``), which is killed with SIGKILL as
soon as each 201 arrives and restarted on the same data; then the record is read back directly.
SecantusDB commits a write that asks for ``j: true`` with a WiredTiger log fsync before it
answers, so every acknowledged create must survive. A control run of unjournaled writes
(``j: false``) on the same server shows that the kill comes early enough to lose a write that
is not yet on disk.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from callback_dev.infra import Infrastructure, LocalMongo
from callback_shared.mongo import CALLBACKS, make_mongo_client
from callback_shared.settings import PlatformSettings
from pymongo import monitoring

from tests.admin_api.support import SECRET, Tokens, immediate, number
from tests.support import isolated_env, start_service

pytestmark = pytest.mark.e2e

TRIALS = 50
#: unjournaled writes killed the same way: how many survive without ``j`` (reported only)
CONTROL_TRIALS = 10
SERVICE = "durability"


def kill_and_restart(mongo: LocalMongo) -> None:
    """SIGKILL the server's process group (no clean shutdown), reap it, start it again on the
    same port and data directory."""
    pid = mongo.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    mongo.start()


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.events: list[monitoring.CommandStartedEvent] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def settings_of(env: dict[str, str], **overrides: Any) -> PlatformSettings:
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    return PlatformSettings(**values, **overrides)


async def stored(settings: PlatformSettings, collection: str, doc_id: UUID) -> bool:
    client = make_mongo_client(settings)
    try:
        found = await client[settings.mongodb_database][collection].find_one({"_id": doc_id})
        return found is not None
    finally:
        await client.close()


async def concerns_on_the_wire(settings: PlatformSettings) -> tuple[Any, Any]:
    """The writeConcern of an insert and the readConcern of a find that a client made by
    ``make_mongo_client`` with these settings sends."""
    listener = Commands()
    client = make_mongo_client(settings, event_listeners=[listener])
    try:
        collection = client[settings.mongodb_database]["wire_check"]
        doc_id = uuid4()
        await collection.insert_one({"_id": doc_id})
        await collection.find_one({"_id": doc_id})
    finally:
        await client.close()
    sent = {event.command_name: event.command for event in listener.events}
    return sent["insert"].get("writeConcern"), sent["find"].get("readConcern")


async def unjournaled_survivors(env: dict[str, str], mongo: LocalMongo) -> int:
    """Writes acknowledged with ``w: 1, j: false``, each followed at once by kill -9."""
    settings = settings_of(env, mongodb_write_concern="1", mongodb_journal=False)
    survivors = 0
    for trial in range(CONTROL_TRIALS):
        doc_id = uuid4()
        client = make_mongo_client(settings)
        await client[settings.mongodb_database]["control"].insert_one({"_id": doc_id, "n": trial})
        await asyncio.to_thread(kill_and_restart, mongo)
        # the old client's connections died with the server: close it only now, on the new one
        await client.close()
        survivors += await stored(settings, "control", doc_id)
    return survivors


async def test_acknowledged_creates_survive_kill_9_of_the_server(
    infra: Infrastructure, tmp_path: Path
) -> None:
    mongo = LocalMongo(tmp_path / "mongodb")
    mongo.start()
    env = {**isolated_env(infra), "MONGODB_URL": mongo.url}
    settings = settings_of(env)
    process = start_service("admin-api", env, tmp_path, JWT_SECRET=SECRET)
    headers = Tokens().supervisor(sub="sam")
    lost: list[UUID] = []
    try:
        # what every service's client sends (the admin API builds its client the same way)
        write_concern, read_concern = await concerns_on_the_wire(settings)
        assert write_concern == {"w": "majority", "j": True, "wtimeout": 10_000}
        assert read_concern == {"level": "majority"}

        await asyncio.to_thread(process.wait_ready, 90)
        async with httpx.AsyncClient(base_url=f"{process.url}/api/v1", timeout=15) as http:
            for trial in range(TRIALS):
                created = await http.post(
                    "/callbacks", json=immediate(SERVICE, number(trial)), headers=headers
                )
                assert created.status_code == 201, created.text
                await asyncio.to_thread(kill_and_restart, mongo)
                await asyncio.to_thread(process.wait_ready, 60)
                callback_id = UUID(created.json()["id"])
                if not await stored(settings, CALLBACKS, callback_id):
                    lost.append(callback_id)
        control = await unjournaled_survivors(env, mongo)
    finally:
        process.terminate()
        mongo.stop()
    report = (
        f"{TRIALS - len(lost)}/{TRIALS} acknowledged creates survived kill -9 of the server "
        f"right after the 201 (control, w:1 j:false: {control}/{CONTROL_TRIALS} survived)"
    )
    print(f"\n{report}")
    assert not lost, f"{report}; lost: {lost}"
