"""The real callback-admin-api process: create and cancel over HTTP, the lifecycle events on
Kafka, and events a crashed writer left in an outbox published by the relay loop."""

from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from callback_shared.documents import lifecycle_event
from callback_shared.models import LifecycleEventKind, utcnow
from callback_shared.mongo import CALLBACKS, make_mongo_client
from callback_shared.outbox import outbox_entry
from callback_shared.record import F
from callback_shared.settings import PlatformSettings

from tests.admin_api.support import (
    SECRET,
    Tokens,
    immediate,
    lifecycle_events,
    number,
    stored_callback,
)
from tests.support import start_service

pytestmark = pytest.mark.e2e


async def test_create_and_cancel_reach_the_lifecycle_topic(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "JWT_SECRET": SECRET}
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    settings = PlatformSettings(**values)
    # a writer crashed after storing its change: the event is still in the outbox
    client = make_mongo_client(settings)
    left = stored_callback("e2e-billing", customer_number=number(1))
    event = lifecycle_event(left, LifecycleEventKind.CREATED, occurred_at=utcnow(), actor="ghost")
    left[F.OUTBOX] = [outbox_entry(settings.topic_lifecycle_events, event)]
    left[F.OUTBOX_SINCE] = utcnow() - timedelta(minutes=1)
    await client[settings.mongodb_database][CALLBACKS].insert_one(left)

    process = start_service("admin-api", env, tmp_path)
    tokens = Tokens()
    try:
        process.wait_ready()
        async with httpx.AsyncClient(base_url=f"{process.url}/api/v1", timeout=10) as http:
            created = await http.post(
                "/callbacks", json=immediate("e2e-billing"), headers=tokens.supervisor(sub="sam")
            )
            assert created.status_code == 201, created.text
            callback_id = created.json()["id"]
            cancelled = await http.post(
                f"/callbacks/{callback_id}/cancel", headers=tokens.supervisor(sub="sam")
            )
            # an immediate callback is due at once: its cancel is asked of routing
            assert cancelled.status_code == 202, cancelled.text
            assert cancelled.json()["cancel_request"]["status"] == "PENDING"
            unauthenticated = await http.get("/callbacks")
            assert unauthenticated.status_code == 401
        events = await lifecycle_events(
            settings.kafka_bootstrap_servers,
            settings.topic_lifecycle_events,
            {UUID(callback_id), left["_id"]},
            expected=3,
        )
    finally:
        code = process.terminate()
        await client.drop_database(settings.mongodb_database)
        await client.close()
    assert code == 0, process.output()
    mine = [e for e in events if e["callback_id"] == callback_id]
    assert [(e["kind"], e["actor"]) for e in mine] == [
        ("CREATED", "sam"),
        ("CANCEL_REQUESTED", "sam"),
    ]
    assert (mine[1]["state"], mine[1]["previous_state"]) == ("SCHEDULED", "SCHEDULED")
    relayed = [e for e in events if e["callback_id"] == str(left["_id"])]
    assert [(e["kind"], e["actor"]) for e in relayed] == [("CREATED", "ghost")]
