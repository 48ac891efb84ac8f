"""Helpers of the admin API tests: tokens, request bodies, direct record set-up."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from aiokafka import AIOKafkaConsumer
from callback_admin_api.tokens import mint_token
from callback_shared.documents import new_callback_document, timeline_entry
from callback_shared.models import CallbackType
from callback_shared.mongo import Document
from callback_shared.states import CallbackResult, CallbackState

SECRET = "test-secret-of-the-admin-api: at least 64 bytes, enough for HS512 too"
MONITOR, SUPERVISOR, ADMINISTRATOR = (
    "callback_monitor",
    "callback_supervisor",
    "callback_administrator",
)
#: Valid numbers (US fixed line or mobile) for tests; +1 900 numbers are premium rate.
NUMBER = "+14155552671"


def number(n: int) -> str:
    """A distinct valid US number per ``n`` (0..9999)."""
    return f"+1415555{n:04d}"


@dataclass
class Tokens:
    secret: str = SECRET

    def header(
        self, *roles: str, services: tuple[str, ...] = ("*",), sub: str = "alice"
    ) -> dict[str, str]:
        token = mint_token(self.secret, sub, roles, services)
        return {"Authorization": f"Bearer {token}"}

    def monitor(self, *services: str, sub: str = "mona") -> dict[str, str]:
        return self.header(MONITOR, services=services or ("*",), sub=sub)

    def supervisor(self, *services: str, sub: str = "sam") -> dict[str, str]:
        return self.header(SUPERVISOR, services=services or ("*",), sub=sub)

    def administrator(self, *services: str, sub: str = "ada") -> dict[str, str]:
        return self.header(ADMINISTRATOR, services=services or ("*",), sub=sub)


def immediate(service: str, customer_number: str = NUMBER, **extra: Any) -> dict[str, Any]:
    return {
        "type": "IMMEDIATE",
        "service_name": service,
        "customer_number": customer_number,
        **extra,
    }


def scheduled(
    service: str, desired: datetime, customer_number: str = NUMBER, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "SCHEDULED",
        "service_name": service,
        "customer_number": customer_number,
        "desired_time": desired.isoformat(),
        **extra,
    }


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    """A slot start tomorrow (UTC) under the default settings (open all day, 15-minute slots)."""
    day = datetime.now(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def stored_callback(
    service: str,
    *,
    state: CallbackState = CallbackState.SCHEDULED,
    result: CallbackResult | None = None,
    desired: datetime | None = None,
    customer_number: str = NUMBER,
    completed_at: datetime | None = None,
    name_recording_uri: str | None = None,
    type_: CallbackType = CallbackType.SCHEDULED,
    **fields: Any,
) -> Document:
    """A callback document as the other services would leave it (routing moved it on)."""
    now = datetime.now(UTC).replace(microsecond=0)
    desired = desired or now + timedelta(hours=1)
    doc = new_callback_document(
        callback_id=uuid4(),
        service_name=service,
        customer_number=customer_number,
        type=type_,
        desired_time=desired,
        now=now,
        name_recording_uri=name_recording_uri,
        created_by="seed",
    )
    if state is not CallbackState.SCHEDULED:
        at = completed_at or now
        doc.pop("dispatch_at")
        doc.update(state=state.value, result=result.value if result else None, updated_at=at)
        doc["timeline"].append(timeline_entry(at, state, "routing", result=result))
    doc.update(fields)
    return doc


async def lifecycle_events(
    bootstrap_servers: str, topic: str, callback_ids: set[UUID], expected: int
) -> list[dict[str, Any]]:
    """Read the lifecycle topic from the start until ``expected`` events of these callbacks."""
    keys = {str(callback_id).encode() for callback_id in callback_ids}
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:

        async def collect() -> None:
            async for message in consumer:
                if message.key in keys:
                    events.append(json.loads(message.value))
                    if len(events) >= expected:
                        return

        await asyncio.wait_for(collect(), 30)
    finally:
        await consumer.stop()
    return events


async def configure(client: Any, tokens: Tokens, service: str, **settings: Any) -> dict[str, Any]:
    """Store the service's settings through the API (as an administrator)."""
    response = await client.put(
        f"/api/v1/services/{service}",
        json={"name": service, **settings},
        headers=tokens.administrator(),
    )
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()["settings"]
    return stored


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem document of an error response, checked for status and media type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {error["field"] for error in body.get("errors", [])}
