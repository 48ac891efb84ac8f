"""Create and schedule through HTTP, with every request guard, on the real MongoDB."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID

import httpx
import pytest
from callback_admin_api.collections import SLOTS
from callback_admin_api.settings import AdminApiSettings
from callback_shared.mongo import CALLBACKS, SERVICES, Document
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import (
    NUMBER,
    Tokens,
    configure,
    fields,
    immediate,
    lifecycle_events,
    number,
    problem,
    scheduled,
    tomorrow_at,
)

CALLBACKS_URL = "/api/v1/callbacks"


async def count(mongo: AsyncDatabase[Document], service: str) -> int:
    return await mongo[CALLBACKS].count_documents({"service_name": service})


async def test_immediate_create_records_the_actor_and_announces_it(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
) -> None:
    body = immediate(
        service, priority=7, name_recording_uri="https://recordings.example.com/ann.wav"
    )
    response = await client.post(CALLBACKS_URL, json=body, headers=tokens.supervisor(sub="sam"))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{CALLBACKS_URL}/{created['id']}"
    assert created["type"] == "IMMEDIATE" and created["originated_as_scheduled"] is False
    assert created["state"] == "SCHEDULED" and created["created_by"] == "sam"
    assert created["priority"] == 7
    assert created["name_recording_uri"] == "https://recordings.example.com/ann.wav"
    doc = await mongo[CALLBACKS].find_one({"_id": UUID(created["id"])})
    assert doc is not None
    # immediate: due at once
    assert doc["dispatch_at"] == doc["desired_time"] == doc["created_at"]
    assert doc["timeline"][0]["actor"] == "sam"
    (event,) = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {doc["_id"]},
        expected=1,
    )
    assert event["kind"] == "CREATED" and event["actor"] == "sam"
    assert event["callback_id"] == created["id"]
    # published: nothing left in the outbox
    assert not cast(Document, await mongo[CALLBACKS].find_one({"_id": doc["_id"]})).get("outbox")


async def test_scheduled_create_lands_in_its_slot(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    desired = tomorrow_at(10, 30)
    response = await client.post(
        CALLBACKS_URL, json=scheduled(service, desired), headers=tokens.administrator()
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["originated_as_scheduled"] is True
    assert datetime.fromisoformat(created["desired_time"]) == desired
    doc = await mongo[CALLBACKS].find_one({"_id": UUID(created["id"])})
    assert doc is not None
    assert doc["dispatch_at"] == desired
    assert doc["expire_at"] == desired + timedelta(days=14)
    slot = await mongo[SLOTS].find_one({"service_name": service, "start": desired})
    assert slot is not None
    assert slot["taken"] == 1 and slot["holders"] == [doc["_id"]]


async def test_national_number_is_completed_with_the_service_country(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(client, tokens, service, default_country="GB")
    response = await client.post(
        CALLBACKS_URL, json=immediate(service, "0121 234 5678"), headers=tokens.supervisor()
    )
    assert response.status_code == 201, response.text
    assert response.json()["customer_number"] == "+441212345678"


@pytest.mark.parametrize(
    ("customer_number", "why"),
    [
        ("12345", "cannot exist"),
        ("+1 555 0100", "cannot exist"),
        ("+19002345678", "premium-rate"),
        ("call me maybe", "not a phone number"),
    ],
)
async def test_impossible_and_premium_numbers_are_refused(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    customer_number: str,
    why: str,
) -> None:
    response = await client.post(
        CALLBACKS_URL, json=immediate(service, customer_number), headers=tokens.supervisor()
    )
    body = problem(response, 422)
    assert fields(body) == {"customer_number"}
    assert why in body["detail"]
    assert await count(mongo, service) == 0


async def test_premium_numbers_pass_when_the_service_allows_them(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(client, tokens, service, guards={"refuse_premium_rate": False})
    response = await client.post(
        CALLBACKS_URL, json=immediate(service, "+19002345678"), headers=tokens.supervisor()
    )
    assert response.status_code == 201, response.text


async def test_strict_duplicate_check_names_the_open_callback(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    await configure(client, tokens, service, guards={"duplicate_check": "strict_1"})
    headers = tokens.supervisor()
    # scheduled for tomorrow: a cancel closes it at once (no routing to ask)
    first = await client.post(
        CALLBACKS_URL, json=scheduled(service, tomorrow_at(10)), headers=headers
    )
    assert first.status_code == 201
    first_id = first.json()["id"]
    body = problem(await client.post(CALLBACKS_URL, json=immediate(service), headers=headers), 409)
    assert body["open_callback_ids"] == [first_id]
    assert first_id in body["detail"]
    assert await count(mongo, service) == 1
    # another number, and the same number in another service, are not duplicates
    other = await client.post(CALLBACKS_URL, json=immediate(service, number(1)), headers=headers)
    assert other.status_code == 201
    elsewhere = await client.post(CALLBACKS_URL, json=immediate(service + "-b"), headers=headers)
    assert elsewhere.status_code == 201
    # once the open one is cancelled, the number may ask again
    cancel = await client.post(f"{CALLBACKS_URL}/{first_id}/cancel", headers=headers)
    assert cancel.status_code == 200
    again = await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
    assert again.status_code == 201


async def test_max_two_duplicate_check_allows_two_open_callbacks(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(client, tokens, service, guards={"duplicate_check": "max_2"})
    headers = tokens.supervisor()
    ids = []
    for _ in range(2):
        response = await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
        assert response.status_code == 201
        ids.append(response.json()["id"])
    body = problem(await client.post(CALLBACKS_URL, json=immediate(service), headers=headers), 409)
    assert sorted(body["open_callback_ids"]) == sorted(ids)


async def test_duplicate_check_off_accepts_every_request(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(client, tokens, service, guards={"duplicate_check": "off"})
    for _ in range(3):
        response = await client.post(
            CALLBACKS_URL, json=immediate(service), headers=tokens.supervisor()
        )
        assert response.status_code == 201


async def test_requests_per_number_per_day_are_throttled(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    await configure(
        client,
        tokens,
        service,
        guards={"duplicate_check": "off", "max_requests_per_number_per_day": 2},
    )
    headers = tokens.supervisor()
    for _ in range(2):
        assert (
            await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
        ).status_code == 201
    response = await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
    body = problem(response, 429)
    assert NUMBER in body["detail"]
    seconds_to_midnight = (
        datetime.combine(datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)
        - datetime.now(UTC)
    ).total_seconds()
    assert 0 < int(response.headers["retry-after"]) <= seconds_to_midnight + 1
    assert await count(mongo, service) == 2
    # another number is not throttled
    other = await client.post(CALLBACKS_URL, json=immediate(service, number(2)), headers=headers)
    assert other.status_code == 201


async def test_settings_changed_by_another_replica_apply_to_the_next_create(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    """Each create reads its service's settings: a change another admin-api replica stored
    (written here straight into MongoDB) applies at once, whatever this process read before."""
    await configure(
        client,
        tokens,
        service,
        guards={"duplicate_check": "off", "max_requests_per_number_per_day": 3},
    )
    headers = tokens.supervisor()
    first = await client.post(CALLBACKS_URL, json=immediate(service), headers=headers)
    assert first.status_code == 201, first.text
    changed = await mongo[SERVICES].update_one(
        {"_id": service}, {"$set": {"guards.max_requests_per_number_per_day": 1}}
    )
    assert changed.modified_count == 1
    problem(await client.post(CALLBACKS_URL, json=immediate(service), headers=headers), 429)
    shown = await client.get(f"/api/v1/services/{service}", headers=headers)
    assert shown.json()["settings"]["guards"]["max_requests_per_number_per_day"] == 1


async def test_a_refused_request_does_not_use_up_the_daily_allowance(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(
        client,
        tokens,
        service,
        slot_capacity=1,
        guards={"duplicate_check": "off", "max_requests_per_number_per_day": 1},
    )
    desired = tomorrow_at(9)
    taken = await client.post(
        CALLBACKS_URL, json=scheduled(service, desired, number(3)), headers=tokens.supervisor()
    )
    assert taken.status_code == 201
    full = await client.post(
        CALLBACKS_URL, json=scheduled(service, desired), headers=tokens.supervisor()
    )
    problem(full, 409)
    # the refused request gave its count back: the number may still ask once today
    ok = await client.post(CALLBACKS_URL, json=immediate(service), headers=tokens.supervisor())
    assert ok.status_code == 201, ok.text


async def test_open_callbacks_per_service_are_capped(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(
        client,
        tokens,
        service,
        guards={"duplicate_check": "off", "max_open_callbacks": 2},
    )
    headers = tokens.supervisor()
    ids = []
    for n in range(2):
        response = await client.post(
            CALLBACKS_URL, json=scheduled(service, tomorrow_at(10), number(n)), headers=headers
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    refused = await client.post(CALLBACKS_URL, json=immediate(service, number(5)), headers=headers)
    assert "open callbacks" in problem(refused, 429)["detail"]
    cancelled = await client.post(f"{CALLBACKS_URL}/{ids[0]}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    accepted = await client.post(CALLBACKS_URL, json=immediate(service, number(5)), headers=headers)
    assert accepted.status_code == 201


async def test_immediate_outside_office_hours_refused_or_accepted_per_service(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    today = datetime.now(UTC).date().isoformat()
    await configure(client, tokens, service, closed_dates=[today])
    refused = await client.post(CALLBACKS_URL, json=immediate(service), headers=tokens.supervisor())
    assert fields(problem(refused, 422)) == {"type"}
    await configure(
        client,
        tokens,
        service,
        closed_dates=[today],
        guards={"immediate_outside_office_hours": "accept"},
    )
    accepted = await client.post(
        CALLBACKS_URL, json=immediate(service), headers=tokens.supervisor()
    )
    assert accepted.status_code == 201, accepted.text


async def test_office_hours_are_those_of_the_service_time_zone(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    """Open every day 09:00-17:00 in Tokyo (UTC+9, no DST): 00:00-08:00 UTC."""
    hours = {day: [{"opens": "09:00", "closes": "17:00"}] for day in _weekdays()}
    await configure(client, tokens, service, time_zone="Asia/Tokyo", office_hours=hours)
    day = datetime.now(UTC).date() + timedelta(days=2)
    inside = datetime(day.year, day.month, day.day, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    outside = datetime(day.year, day.month, day.day, 9, 0, tzinfo=UTC)  # 18:00 in Tokyo
    ok = await client.post(
        CALLBACKS_URL, json=scheduled(service, inside), headers=tokens.supervisor()
    )
    assert ok.status_code == 201, ok.text
    refused = await client.post(
        CALLBACKS_URL, json=scheduled(service, outside, number(7)), headers=tokens.supervisor()
    )
    assert fields(problem(refused, 422)) == {"desired_time"}


def _weekdays() -> list[str]:
    return ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@pytest.mark.parametrize(
    ("when", "settings"),
    [
        ("outside office hours", {"office_hours": {}}),
        ("closed date", {"closed_dates": ["TOMORROW"]}),
        ("off a slot boundary", {"slot_length_minutes": 30}),
        ("in the past", {}),
        ("beyond the horizon", {"schedule_horizon_days": 1}),
    ],
)
async def test_scheduled_time_must_be_an_open_future_slot(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    when: str,
    settings: dict[str, Any],
) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    if "closed_dates" in settings:
        settings = {"closed_dates": [tomorrow]}
    await configure(client, tokens, service, **settings)
    desired = {
        "off a slot boundary": tomorrow_at(9, 15),
        "in the past": datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        - timedelta(hours=1),
        "beyond the horizon": tomorrow_at(9) + timedelta(days=2),
    }.get(when, tomorrow_at(9))
    response = await client.post(
        CALLBACKS_URL, json=scheduled(service, desired), headers=tokens.supervisor()
    )
    assert fields(problem(response, 422)) == {"desired_time"}
    assert await count(mongo, service) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "IMMEDIATE", "desired_time": "2030-01-01T10:00:00Z"}, "desired_time"),
        ({"type": "SCHEDULED"}, "desired_time"),
        ({"type": "SCHEDULED", "desired_time": "2030-01-01T10:00:00"}, "desired_time"),
        ({"type": "CHAT"}, "type"),
        ({"type": "IMMEDIATE", "channel": "chat"}, "channel"),
        ({"type": "IMMEDIATE", "priority": 101}, "priority"),
        ({"type": "IMMEDIATE", "customer_number": ""}, "customer_number"),
        ({"type": "IMMEDIATE", "service_name": None}, "service_name"),
    ],
)
async def test_out_of_contract_requests_name_the_field_and_store_nothing(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    body: dict[str, Any],
    field: str,
) -> None:
    request = {"service_name": service, "customer_number": NUMBER, **body}
    response = await client.post(CALLBACKS_URL, json=request, headers=tokens.supervisor())
    assert field in fields(problem(response, 422))
    assert await count(mongo, service) == 0


async def test_malformed_json_is_a_bad_request(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    response = await client.post(
        CALLBACKS_URL,
        content=b'{"type": "IMMEDIATE", ',
        headers={**tokens.supervisor(), "content-type": "application/json"},
    )
    problem(response, 400)
    assert await count(mongo, service) == 0


async def test_slot_capacity_is_enforced(
    client: httpx.AsyncClient, tokens: Tokens, service: str
) -> None:
    await configure(client, tokens, service, slot_capacity=2)
    desired = tomorrow_at(11)
    for n in range(2):
        response = await client.post(
            CALLBACKS_URL, json=scheduled(service, desired, number(n)), headers=tokens.supervisor()
        )
        assert response.status_code == 201
    full = await client.post(
        CALLBACKS_URL, json=scheduled(service, desired, number(9)), headers=tokens.supervisor()
    )
    assert "full" in problem(full, 409)["detail"]


@pytest.mark.parametrize(("capacity", "racers"), [(1, 8), (3, 10)])
async def test_racing_creates_for_the_last_places_exactly_capacity_win(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    capacity: int,
    racers: int,
) -> None:
    await configure(client, tokens, service, slot_capacity=capacity)
    desired = tomorrow_at(14, 45)
    headers = tokens.supervisor()
    responses = await asyncio.gather(
        *(
            client.post(CALLBACKS_URL, json=scheduled(service, desired, number(n)), headers=headers)
            for n in range(racers)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * capacity + [409] * (racers - capacity)
    slot = await mongo[SLOTS].find_one({"service_name": service, "start": desired})
    assert slot is not None
    assert slot["taken"] == capacity and len(slot["holders"]) == capacity
    assert await count(mongo, service) == capacity
