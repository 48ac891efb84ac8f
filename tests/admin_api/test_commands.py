"""Cancel, reschedule and recreate through HTTP: rules, actors, places, lifecycle events."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from callback_admin_api.collections import SLOTS
from callback_admin_api.context import AdminApi
from callback_admin_api.settings import AdminApiSettings
from callback_shared.mongo import CALLBACKS, Document
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import (
    Tokens,
    configure,
    fields,
    immediate,
    lifecycle_events,
    number,
    problem,
    scheduled,
    stored_callback,
    tomorrow_at,
)

URL = "/api/v1/callbacks"
S, R = CallbackState, CallbackResult


async def slot_taken(mongo: AsyncDatabase[Document], service: str, start: datetime) -> int:
    slot = await mongo[SLOTS].find_one({"service_name": service, "start": start})
    return 0 if slot is None else slot["taken"]


async def test_a_callback_not_yet_due_is_cancelled_outright(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
) -> None:
    desired = tomorrow_at(12)
    created = await client.post(
        URL, json=scheduled(service, desired), headers=tokens.supervisor(sub="sam")
    )
    callback_id = created.json()["id"]
    assert await slot_taken(mongo, service, desired) == 1
    response = await client.post(f"{URL}/{callback_id}/cancel", headers=tokens.administrator())
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")
    assert body["can_cancel"] is False and body["can_recreate"] is True
    assert body["cancel_pending"] is False and body["cancel_request"] is None
    doc = await mongo[CALLBACKS].find_one({"_id": UUID(callback_id)})
    assert doc is not None
    assert "dispatch_at" not in doc
    last = doc["timeline"][-1]
    assert (last["state"], last["result"], last["actor"]) == (
        "COMPLETED",
        "CANCELLED_BY_ADMIN",
        "ada",
    )
    # the place is given back
    assert await slot_taken(mongo, service, desired) == 0
    events = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {doc["_id"]},
        expected=2,
    )
    assert [e["kind"] for e in events] == ["CREATED", "CANCELLED"]
    cancelled = events[1]
    assert cancelled["actor"] == "ada" and cancelled["previous_state"] == "SCHEDULED"
    assert (cancelled["state"], cancelled["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")


async def test_a_due_callback_is_cancelled_by_asking_routing(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
) -> None:
    """The scheduler may have emitted it: the cancel goes to routing, the record shows it
    pending, and the scheduler no longer emits it."""
    desired = tomorrow_at(13)
    created = await client.post(
        URL, json=scheduled(service, desired), headers=tokens.supervisor(sub="sam")
    )
    callback_id = UUID(created.json()["id"])
    # it is due (within the dispatch margin): the scheduler may have read it already
    due = datetime.now(UTC) + timedelta(seconds=1)
    await mongo[CALLBACKS].update_one({"_id": callback_id}, {"$set": {"dispatch_at": due}})
    response = await client.post(f"{URL}/{callback_id}/cancel", headers=tokens.administrator())
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["state"], body["result"]) == ("SCHEDULED", None)
    assert body["cancel_pending"] is True and body["can_cancel"] is False
    request = body["cancel_request"]
    assert (request["status"], request["actor"], request["state"]) == (
        "PENDING",
        "ada",
        "SCHEDULED",
    )
    doc = await mongo[CALLBACKS].find_one({"_id": callback_id})
    assert doc is not None
    assert "dispatch_at" not in doc and doc["cancel_pending_since"] is not None
    assert doc["timeline"][-1]["note"] == "cancel asked of routing"
    assert doc["timeline"][-1]["actor"] == "ada"
    commands = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_routing_commands,
        {callback_id},
        expected=1,
    )
    assert [(c["kind"], c["attempt"]) for c in commands] == [("CANCEL", 1)]
    events = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {callback_id},
        expected=2,
    )
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("CREATED", "sam"),
        ("CANCEL_REQUESTED", "ada"),
    ]
    # asked again while pending: the same answer, nothing written or sent again
    again = await client.post(f"{URL}/{callback_id}/cancel", headers=tokens.administrator())
    assert again.status_code == 202, again.text
    unchanged = await mongo[CALLBACKS].find_one({"_id": callback_id})
    assert unchanged is not None
    assert len(unchanged["timeline"]) == len(doc["timeline"])
    assert unchanged["cancel_request"] == doc["cancel_request"]


@pytest.mark.parametrize("state", [S.QUEUED, S.ROUTING])
async def test_queued_and_routing_callbacks_are_cancelled_by_asking_routing(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    state: CallbackState,
) -> None:
    doc = stored_callback(service, state=state)
    await mongo[CALLBACKS].insert_one(doc)
    response = await client.post(f"{URL}/{doc['_id']}/cancel", headers=tokens.supervisor())
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["state"], body["cancel_request"]["status"]) == (state.value, "PENDING")
    assert body["cancel_request"]["state"] == state.value
    after = await mongo[CALLBACKS].find_one({"_id": doc["_id"]})
    assert after is not None
    assert after["state"] == state.value and after["result"] is None


@pytest.mark.parametrize(
    ("state", "result"), [(S.PROCESSING, None), (S.COMPLETED, R.AGENT), (S.COMPLETED, R.CANCELLED)]
)
async def test_processing_and_completed_callbacks_cannot_be_cancelled(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
    state: CallbackState,
    result: CallbackResult | None,
) -> None:
    doc = stored_callback(service, state=state, result=result)
    await mongo[CALLBACKS].insert_one(doc)
    response = await client.post(f"{URL}/{doc['_id']}/cancel", headers=tokens.supervisor())
    assert problem(response, 409)["state"] == state
    after = await mongo[CALLBACKS].find_one({"_id": doc["_id"]})
    assert after is not None
    assert (after["state"], after["result"]) == (state.value, result)
    assert len(after["timeline"]) == len(doc["timeline"])
    (refused,) = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {doc["_id"]},
        expected=1,
    )
    assert refused["kind"] == "CANCELLATION_REFUSED" and refused["reason"] == state
    assert refused["actor"] == "sam"


@contextmanager
def changed_before_the_write(api: AdminApi, doc: Document, fields: Document) -> Iterator[None]:
    """Within it, the record ``doc`` gets ``fields`` (routing's change) just before the
    command's first conditional update: the command read it as it was, and its write misses."""
    real_update = api.repository.update
    raced = False

    async def update_after_the_change(filter_: Document, update: Document) -> Document | None:
        nonlocal raced
        if not raced:
            raced = True
            await api.repository.callbacks.update_one({"_id": doc["_id"]}, {"$set": fields})
        return await real_update(filter_, update)

    api.repository.update = update_after_the_change  # type: ignore[method-assign]
    try:
        yield
    finally:
        del api.repository.update


async def test_a_cancel_never_overwrites_a_change_it_did_not_see(
    client: httpx.AsyncClient, tokens: Tokens, service: str, api: AdminApi
) -> None:
    """Routing moves the callback to PROCESSING between the cancel's read and its write: the
    conditional update misses, the cancel decides again on PROCESSING and refuses."""
    doc = stored_callback(service, state=S.ROUTING)
    await api.repository.callbacks.insert_one(doc)
    with changed_before_the_write(api, doc, {"state": S.PROCESSING.value}):
        response = await client.post(f"{URL}/{doc['_id']}/cancel", headers=tokens.supervisor())
    assert problem(response, 409)["state"] == "PROCESSING"
    after = await api.repository.get(doc["_id"])
    assert after is not None
    assert after["state"] == "PROCESSING" and after["result"] is None


async def test_a_refusal_is_announced_when_the_call_ends_meanwhile(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    api: AdminApi,
    admin_settings: AdminApiSettings,
) -> None:
    """The call ends (PROCESSING to COMPLETED(AGENT)) between the cancel's read and its write:
    the refusal's write misses, the cancel decides again on COMPLETED, and the refusal is still
    written and announced (the report's row), in the state it was refused in."""
    doc = stored_callback(service, state=S.PROCESSING)
    await api.repository.callbacks.insert_one(doc)
    ended = {"state": S.COMPLETED.value, "result": R.AGENT.value}
    with changed_before_the_write(api, doc, ended):
        response = await client.post(f"{URL}/{doc['_id']}/cancel", headers=tokens.supervisor())
    assert problem(response, 409)["state"] == "COMPLETED"
    (refused,) = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {doc["_id"]},
        expected=1,
    )
    assert refused["kind"] == "CANCELLATION_REFUSED", refused
    assert (refused["reason"], refused["previous_state"]) == ("COMPLETED", "COMPLETED")
    assert refused["actor"] == "sam"


async def test_reschedule_moves_the_place_and_the_retention(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
) -> None:
    await configure(client, tokens, service, slot_capacity=1)
    old, new = tomorrow_at(9), tomorrow_at(16)
    created = await client.post(
        URL,
        json=scheduled(service, old, name_recording_uri="https://recordings.example.com/1.wav"),
        headers=tokens.supervisor(),
    )
    callback_id = created.json()["id"]
    response = await client.post(
        f"{URL}/{callback_id}/reschedule",
        json={"desired_time": new.isoformat()},
        headers=tokens.supervisor(sub="rita"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert datetime.fromisoformat(body["desired_time"]) == new
    assert body["name_recording_uri"] == "https://recordings.example.com/1.wav"
    doc = await mongo[CALLBACKS].find_one({"_id": UUID(callback_id)})
    assert doc is not None
    assert doc["dispatch_at"] == new and doc["expire_at"] == new + timedelta(days=14)
    assert doc["timeline"][-1]["actor"] == "rita" and doc["state"] == "SCHEDULED"
    assert (await slot_taken(mongo, service, old), await slot_taken(mongo, service, new)) == (0, 1)
    # the old place is free again for someone else
    again = await client.post(
        URL, json=scheduled(service, old, number(4)), headers=tokens.supervisor()
    )
    assert again.status_code == 201
    events = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {doc["_id"]},
        expected=2,
    )
    assert events[1]["kind"] == "RESCHEDULED" and events[1]["actor"] == "rita"
    assert datetime.fromisoformat(events[1]["desired_time"]) == new


async def test_reschedule_needs_an_open_slot_with_capacity(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    await configure(client, tokens, service, slot_capacity=1)
    first = await client.post(
        URL, json=scheduled(service, tomorrow_at(9)), headers=tokens.supervisor()
    )
    full_slot = tomorrow_at(10)
    await client.post(
        URL, json=scheduled(service, full_slot, number(1)), headers=tokens.supervisor()
    )
    callback_id = first.json()["id"]
    full = await client.post(
        f"{URL}/{callback_id}/reschedule",
        json={"desired_time": full_slot.isoformat()},
        headers=tokens.supervisor(),
    )
    problem(full, 409)
    off_boundary = await client.post(
        f"{URL}/{callback_id}/reschedule",
        json={"desired_time": tomorrow_at(10, 7).isoformat()},
        headers=tokens.supervisor(),
    )
    assert fields(problem(off_boundary, 422)) == {"desired_time"}
    past = await client.post(
        f"{URL}/{callback_id}/reschedule",
        json={"desired_time": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
        headers=tokens.supervisor(),
    )
    assert fields(problem(past, 422)) == {"desired_time"}
    doc = await mongo[CALLBACKS].find_one({"_id": UUID(callback_id)})
    assert doc is not None
    assert doc["desired_time"] == tomorrow_at(9)
    assert await slot_taken(mongo, service, tomorrow_at(9)) == 1


@pytest.mark.parametrize(
    ("state", "extra"),
    [
        (S.QUEUED, {}),
        (S.PROCESSING, {}),
        (S.COMPLETED, {"result": R.AGENT}),
        # due already: the scheduler has emitted it, or is emitting it
        (S.SCHEDULED, {"dispatch_at": datetime.now(UTC) - timedelta(seconds=1)}),
    ],
)
async def test_only_a_scheduled_callback_not_yet_dispatched_can_be_rescheduled(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    state: CallbackState,
    extra: dict[str, Any],
) -> None:
    doc = stored_callback(service, state=state, **extra)
    await mongo[CALLBACKS].insert_one(doc)
    response = await client.post(
        f"{URL}/{doc['_id']}/reschedule",
        json={"desired_time": tomorrow_at(13).isoformat()},
        headers=tokens.supervisor(),
    )
    problem(response, 409)
    after = await mongo[CALLBACKS].find_one({"_id": doc["_id"]})
    assert after is not None
    assert after["desired_time"] == doc["desired_time"]
    assert await slot_taken(mongo, service, tomorrow_at(13)) == 0


@pytest.mark.parametrize(("days_ago", "kept"), [(3, True), (5, False)])
async def test_recreate_links_the_new_record_and_keeps_the_recording_within_four_days(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
    days_ago: int,
    kept: bool,
) -> None:
    completed_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days_ago)
    original = stored_callback(
        service,
        state=S.COMPLETED,
        result=R.CANCELLED,
        desired=completed_at - timedelta(minutes=5),
        completed_at=completed_at,
        name_recording_uri="https://recordings.example.com/name.wav",
    )
    original["priority"] = 4
    await mongo[CALLBACKS].insert_one(original)
    response = await client.post(
        f"{URL}/{original['_id']}/recreate", headers=tokens.supervisor(sub="rob")
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["recreated_from"] == str(original["_id"])
    assert body["id"] != str(original["_id"])
    assert (body["state"], body["type"], body["created_by"]) == ("SCHEDULED", "IMMEDIATE", "rob")
    assert body["customer_number"] == original["customer_number"]
    assert body["priority"] == 4
    assert body["name_recording_uri"] == (
        "https://recordings.example.com/name.wav" if kept else None
    )
    (event,) = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {UUID(body["id"])},
        expected=1,
    )
    assert event["kind"] == "RECREATED" and event["actor"] == "rob"
    assert str(original["_id"]) in event["reason"]


async def test_recreate_can_schedule_into_a_slot(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    original = stored_callback(service, state=S.COMPLETED, result=R.AGENT)
    await mongo[CALLBACKS].insert_one(original)
    desired = tomorrow_at(15, 15)
    response = await client.post(
        f"{URL}/{original['_id']}/recreate",
        json={"type": "SCHEDULED", "desired_time": desired.isoformat()},
        headers=tokens.supervisor(),
    )
    assert response.status_code == 201, response.text
    assert datetime.fromisoformat(response.json()["desired_time"]) == desired
    assert await slot_taken(mongo, service, desired) == 1


@pytest.mark.parametrize("state", [S.SCHEDULED, S.QUEUED, S.ROUTING, S.PROCESSING])
async def test_only_a_completed_callback_can_be_recreated(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    state: CallbackState,
) -> None:
    doc = stored_callback(service, state=state)
    await mongo[CALLBACKS].insert_one(doc)
    response = await client.post(f"{URL}/{doc['_id']}/recreate", headers=tokens.supervisor())
    assert problem(response, 409)["state"] == state
    assert await mongo[CALLBACKS].count_documents({"service_name": service}) == 1


async def test_commands_on_a_missing_callback_are_404(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for path, body in [
        ("cancel", None),
        ("recreate", None),
        ("reschedule", {"desired_time": tomorrow_at(9).isoformat()}),
    ]:
        response = await client.post(
            f"{URL}/{missing}/{path}", json=body, headers=tokens.supervisor()
        )
        problem(response, 404)


async def test_the_outbox_keeps_an_event_kafka_did_not_take(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    api: AdminApi,
    mongo: AsyncDatabase[Document],
) -> None:
    """Kafka refuses the publish: the command still succeeds and its event stays in the
    document's outbox for the relay loop."""

    async def kafka_down(entries: Iterable[Document]) -> None:
        raise ConnectionError("kafka down")

    api.relay.publish = kafka_down  # type: ignore[method-assign]
    try:
        response = await client.post(URL, json=immediate(service), headers=tokens.supervisor())
    finally:
        del api.relay.publish
    assert response.status_code == 201
    doc = await mongo[CALLBACKS].find_one({"_id": UUID(response.json()["id"])})
    assert doc is not None
    assert [entry["event_id"] for entry in doc["outbox"]]
    assert doc["outbox_since"] is not None
