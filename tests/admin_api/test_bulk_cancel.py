"""Bulk cancel through HTTP: preview and confirm by ids and by range, the preview/confirm race,
lifecycle events with the batch, permissions, and a large range cancelled by a job."""

import asyncio
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import UUID

import httpx
import pytest
from callback_admin_api.auth import Principal
from callback_admin_api.commands import Cancellation
from callback_admin_api.context import AdminApi
from callback_admin_api.settings import AdminApiSettings
from callback_shared.documents import new_callback_document
from callback_shared.models import CallbackType
from callback_shared.mongo import CALLBACKS, Document
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import (
    Tokens,
    fields,
    immediate,
    lifecycle_events,
    problem,
    scheduled,
    stored_callback,
    tomorrow_at,
)

URL = "/api/v1/callbacks"
PREVIEW, CONFIRM = f"{URL}/bulk-cancel/preview", f"{URL}/bulk-cancel"
S, R = CallbackState, CallbackResult


def number(n: int) -> str:
    """Numbers of these tests only (other tests search all services for theirs)."""
    return f"+1650555{n:04d}"


async def create(
    client: httpx.AsyncClient, tokens: Tokens, service: str, n: int, desired: datetime | None = None
) -> UUID:
    """An immediate callback (due at once), or one scheduled at ``desired``."""
    body = (
        immediate(service, number(n)) if desired is None else scheduled(service, desired, number(n))
    )
    response = await client.post(URL, json=body, headers=tokens.supervisor(service, sub="sam"))
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def move(
    mongo: AsyncDatabase[Document],
    callback_id: UUID,
    state: CallbackState,
    result: CallbackResult | None = None,
) -> None:
    """Routing moved the callback on (directly in the database)."""
    await mongo[CALLBACKS].update_one(
        {"_id": callback_id},
        {
            "$set": {"state": state.value, "result": result.value if result else None},
            "$unset": {"dispatch_at": ""},
        },
    )


async def mixed_set(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> dict[CallbackState, UUID]:
    """One callback in each state, created through the API: {state: id}. The SCHEDULED one is
    not yet due (tomorrow); the others are due, and routing moved them on."""
    ids = {}
    for n, (state, result) in enumerate(
        [
            (S.SCHEDULED, None),
            (S.QUEUED, None),
            (S.ROUTING, None),
            (S.PROCESSING, None),
            (S.COMPLETED, R.AGENT),
        ]
    ):
        desired = tomorrow_at(9) if state is S.SCHEDULED else None
        ids[state] = await create(client, tokens, service, 100 + n, desired)
        if state is not S.SCHEDULED:
            await move(mongo, ids[state], state, result)
    return ids


async def test_mixed_set_by_ids_cancels_exactly_the_cancellable_ones(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
) -> None:
    ids = await mixed_set(client, tokens, service, mongo)
    hidden = stored_callback(service + "-other", customer_number=number(150))
    await mongo[CALLBACKS].insert_one(hidden)
    missing = uuid.uuid4()
    body = {"ids": [str(i) for i in [*ids.values(), hidden["_id"], missing]]}
    headers = tokens.supervisor(service, sub="bulky")

    preview = await client.post(PREVIEW, json=body, headers=headers)
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert (shown["total"], shown["would_cancel"], shown["excluded"]) == (7, 3, 4)
    assert shown["excluded_by_reason"] == {"PROCESSING": 1, "COMPLETED": 1, "NOT_FOUND": 2}
    assert {item["id"] for item in shown["items"]} == {
        str(ids[s]) for s in (S.SCHEDULED, S.QUEUED, S.ROUTING)
    }
    excluded = {item["id"]: item for item in shown["excluded_items"]}
    assert excluded[str(ids[S.PROCESSING])]["reason"] == "PROCESSING"
    assert excluded[str(ids[S.COMPLETED])]["reason"] == "COMPLETED"
    # an ungranted record answers exactly as a missing one: its id and NOT_FOUND, nothing else
    assert excluded[str(hidden["_id"])] == {
        "id": str(hidden["_id"]),
        "outcome": "EXCLUDED",
        "reason": "NOT_FOUND",
        "state": None,
        "service_name": None,
        "customer_number": None,
        "desired_time": None,
        "derived": None,
    }
    # every view's derived fields, as the list shows them
    would = {item["id"]: item["derived"] for item in shown["items"]}
    assert would[str(ids[S.SCHEDULED])]["originated_as_scheduled"] is True
    assert all(view["can_cancel"] and not view["cancel_pending"] for view in would.values())
    assert excluded[str(ids[S.COMPLETED])]["derived"]["can_recreate"] is True
    assert excluded[str(ids[S.PROCESSING])]["derived"]["can_cancel"] is False
    assert excluded[str(missing)] | {"id": None} == excluded[str(hidden["_id"])] | {"id": None}
    assert hidden["customer_number"] not in preview.text
    # a preview changes nothing
    assert await mongo[CALLBACKS].count_documents({"_id": ids[S.SCHEDULED], "state": "SCHEDULED"})

    confirm = await client.post(CONFIRM, json=body, headers=headers)
    assert confirm.status_code == 200, confirm.text
    done = confirm.json()
    batch_id = done["batch_id"]
    assert (done["state"], done["actor"]) == ("done", "bulky")
    counts = ("total_seen", "cancelled", "requested", "refused", "skipped")
    assert tuple(done[count] for count in counts) == (7, 1, 2, 2, 2)
    assert done["refused_by_reason"] == {"PROCESSING": 1, "COMPLETED": 1}
    outcomes = {item["id"]: (item["outcome"], item["reason"]) for item in done["items"]}
    assert outcomes == {
        str(ids[S.SCHEDULED]): ("CANCELLED", None),
        str(ids[S.QUEUED]): ("REQUESTED", None),
        str(ids[S.ROUTING]): ("REQUESTED", None),
        str(ids[S.PROCESSING]): ("REFUSED", "PROCESSING"),
        str(ids[S.COMPLETED]): ("REFUSED", "COMPLETED"),
        str(hidden["_id"]): ("SKIPPED", "NOT_FOUND"),
        str(missing): ("SKIPPED", "NOT_FOUND"),
    }
    assert hidden["customer_number"] not in confirm.text
    # the derived fields are of the record as the cancel left it
    after = {item["id"]: item["derived"] for item in done["items"]}
    scheduled_after = after[str(ids[S.SCHEDULED])]
    assert (scheduled_after["can_cancel"], scheduled_after["can_recreate"]) == (False, True)
    assert after[str(ids[S.QUEUED])]["cancel_pending"] is True
    assert after[str(ids[S.ROUTING])]["can_cancel"] is False  # its cancel is pending
    assert after[str(missing)] is None

    for state, callback_id in ids.items():
        doc = await mongo[CALLBACKS].find_one({"_id": callback_id})
        assert doc is not None
        if state is S.SCHEDULED:
            assert (doc["state"], doc["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")
            assert doc["timeline"][-1]["actor"] == "bulky"
            assert "dispatch_at" not in doc
        elif state in (S.QUEUED, S.ROUTING):  # asked of routing: pending until it answers
            assert (doc["state"], doc["result"]) == (state.value, None)
            request = doc["cancel_request"]
            assert (request["status"], request["actor"]) == ("PENDING", "bulky")
            assert request["batch_id"] == UUID(batch_id)
            assert doc["timeline"][-1]["actor"] == "bulky"
        else:
            assert doc["state"] == state.value and len(doc["timeline"]) == 1
    assert (
        cast(Document, await mongo[CALLBACKS].find_one({"_id": hidden["_id"]}))["state"]
        == "SCHEDULED"
    )

    events = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        set(ids.values()) | {hidden["_id"]},
        expected=5 + 5,  # five CREATED, a CANCELLED, two CANCEL_REQUESTED, two REFUSED
    )
    announced = {(e["callback_id"], e["kind"]): e for e in events if e["kind"] != "CREATED"}
    assert set(announced) == {
        (str(ids[S.SCHEDULED]), "CANCELLED"),
        (str(ids[S.QUEUED]), "CANCEL_REQUESTED"),
        (str(ids[S.ROUTING]), "CANCEL_REQUESTED"),
        (str(ids[S.PROCESSING]), "CANCELLATION_REFUSED"),
        (str(ids[S.COMPLETED]), "CANCELLATION_REFUSED"),
    }
    for (callback_id, kind), event in announced.items():
        assert event["batch_id"] == batch_id and event["actor"] == "bulky"
        state = next(s for s, i in ids.items() if str(i) == callback_id)
        assert event["previous_state"] == state.value
        if kind == "CANCELLED":
            assert (event["state"], event["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")
        elif kind == "CANCEL_REQUESTED":
            assert (event["state"], event["result"]) == (state.value, None)
        else:
            assert event["reason"] == state.value


async def test_a_callback_reaching_processing_after_the_preview_is_refused(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
) -> None:
    first = await create(client, tokens, service, 200)
    second = await create(client, tokens, service, 201)
    body = {"ids": [str(first), str(second)]}
    headers = tokens.administrator(service, sub="racer")
    preview = await client.post(PREVIEW, json=body, headers=headers)
    assert preview.json()["would_cancel"] == 2
    await move(mongo, second, S.PROCESSING)  # routing handed it to an agent meanwhile

    confirm = await client.post(CONFIRM, json=body, headers=headers)
    assert confirm.status_code == 200, confirm.text
    done = confirm.json()
    # the first is due (immediate): asked of routing
    assert (done["cancelled"], done["requested"], done["refused"]) == (0, 1, 1)
    refused = next(item for item in done["items"] if item["id"] == str(second))
    assert (refused["outcome"], refused["reason"]) == ("REFUSED", "PROCESSING")
    after = await mongo[CALLBACKS].find_one({"_id": second})
    assert after is not None
    assert (after["state"], after["result"]) == ("PROCESSING", None)

    events = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        {second},
        expected=2,
    )
    assert [e["kind"] for e in events] == ["CREATED", "CANCELLATION_REFUSED"]
    assert events[1]["batch_id"] == done["batch_id"]
    assert (events[1]["actor"], events[1]["previous_state"]) == ("racer", "PROCESSING")


async def test_all_in_range_cancels_the_open_callbacks_of_the_filters(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    docs = [
        stored_callback(service, customer_number=number(300 + n), desired=now + timedelta(hours=n))
        for n in range(1, 4)
    ]
    processing = stored_callback(service, customer_number=number(310), state=S.PROCESSING)
    completed = stored_callback(
        service, customer_number=number(311), state=S.COMPLETED, result=R.AGENT
    )
    later = stored_callback(
        service, customer_number=number(312), desired=now + timedelta(days=20)
    )  # outside the range
    await mongo[CALLBACKS].insert_many([*docs, processing, completed, later])
    body = {"all_in_range": {"range": "next_7_days", "service": [service]}}
    headers = tokens.supervisor(service, sub="ranger")

    preview = (await client.post(PREVIEW, json=body, headers=headers)).json()
    # a range selects its open callbacks: the completed one is no candidate
    assert (preview["total"], preview["would_cancel"], preview["excluded"]) == (4, 3, 1)
    assert [i["id"] for i in preview["items"]] == [str(doc["_id"]) for doc in docs]  # list order
    assert preview["excluded_by_reason"] == {"PROCESSING": 1}

    confirm = await client.post(CONFIRM, json=body, headers=headers)
    assert confirm.status_code == 200, confirm.text
    done = confirm.json()
    assert (done["total_seen"], done["cancelled"], done["refused"]) == (4, 3, 1)
    states = {
        doc["_id"]: (doc["state"], doc["result"])
        async for doc in mongo[CALLBACKS].find({"service_name": service})
    }
    for doc in docs:
        assert states[doc["_id"]] == ("COMPLETED", "CANCELLED_BY_ADMIN")
    assert states[processing["_id"]] == ("PROCESSING", None)
    assert states[completed["_id"]] == ("COMPLETED", "AGENT")
    assert states[later["_id"]] == ("SCHEDULED", None)

    # the search box and state filters narrow the range as they narrow the list
    again = await client.post(
        PREVIEW,
        json={"all_in_range": {**body["all_in_range"], "state": ["PROCESSING"]}},
        headers=headers,
    )
    assert again.json()["total"] == 1


async def test_permissions_and_validation(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    doc = stored_callback(service, customer_number=number(400))
    await mongo[CALLBACKS].insert_one(doc)
    ids = {"ids": [str(doc["_id"])]}
    for url in (PREVIEW, CONFIRM):
        problem(await client.post(url, json=ids, headers=tokens.monitor(service)), 403)
    problem(await client.get(f"{CONFIRM}/{uuid.uuid4()}", headers=tokens.monitor(service)), 403)
    # naming a service not granted is 403, as in the list
    named = {"all_in_range": {"service": [service]}}
    problem(await client.post(CONFIRM, json=named, headers=tokens.supervisor("elsewhere")), 403)
    # the whole granted range of someone else's grant: nothing of this service
    other = await client.post(
        CONFIRM, json={"all_in_range": {"range": "next_7_days"}}, headers=tokens.supervisor("x")
    )
    assert str(doc["_id"]) not in other.text
    assert (
        cast(Document, await mongo[CALLBACKS].find_one({"_id": doc["_id"]}))["state"] == "SCHEDULED"
    )

    headers = tokens.supervisor(service)
    both = {**ids, "all_in_range": {}}
    problem(await client.post(PREVIEW, json=both, headers=headers), 422)
    problem(await client.post(PREVIEW, json={}, headers=headers), 422)
    too_many = {"ids": [str(uuid.uuid4()) for _ in range(1001)]}
    assert "ids" in fields(problem(await client.post(CONFIRM, json=too_many, headers=headers), 422))
    half = {"all_in_range": {"from": datetime.now(UTC).isoformat()}}
    named_field = fields(problem(await client.post(CONFIRM, json=half, headers=headers), 422))
    assert named_field == {"all_in_range.to"}
    bad_zone = {"all_in_range": {"tz": "Mars/Olympus"}}
    named_field = fields(problem(await client.post(PREVIEW, json=bad_zone, headers=headers), 422))
    assert named_field == {"all_in_range.tz"}
    bad_state = {"all_in_range": {"state": ["LOST"]}}
    problem(await client.post(PREVIEW, json=bad_state, headers=headers), 422)
    assert (
        cast(Document, await mongo[CALLBACKS].find_one({"_id": doc["_id"]}))["state"] == "SCHEDULED"
    )


@pytest.mark.timeout(120)
async def test_a_large_range_is_cancelled_by_a_job(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    docs = [
        new_callback_document(
            callback_id=uuid.uuid4(),
            service_name=service,
            customer_number=number(n % 10000),
            type=CallbackType.SCHEDULED,
            desired_time=now + timedelta(hours=1, seconds=n // 3),  # ties on desired time
            now=now,
            created_by="seed",
        )
        for n in range(1500)
    ]
    processing = stored_callback(service, customer_number=number(9999), state=S.PROCESSING)
    await mongo[CALLBACKS].insert_many([*docs, processing])
    body = {"all_in_range": {"range": "next_2_weeks", "service": [service]}}
    headers = tokens.supervisor(service, sub="jobber")

    preview = (await client.post(PREVIEW, json=body, headers=headers)).json()
    assert (preview["total"], preview["would_cancel"], preview["excluded"]) == (1501, 1500, 1)
    assert len(preview["items"]) == 250 and preview["truncated"] is True

    response = await client.post(CONFIRM, json=body, headers=headers)
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch_id"]
    location = response.headers["location"]
    assert location == f"{CONFIRM}/{batch_id}"
    assert response.json()["state"] == "running"
    # only its actor sees it
    problem(await client.get(location, headers=tokens.supervisor(service, sub="other")), 404)

    for _ in range(600):
        job = (await client.get(location, headers=headers)).json()
        if job["state"] != "running":
            break
        await asyncio.sleep(0.1)
    assert job["state"] == "done", job
    assert (job["total_seen"], job["cancelled"], job["refused"], job["skipped"]) == (
        1501,
        1500,
        1,
        0,
    )
    assert job["refused_by_reason"] == {"PROCESSING": 1} and job["finished_at"]
    cancelled = await mongo[CALLBACKS].count_documents(
        {"service_name": service, "result": "CANCELLED_BY_ADMIN"}
    )
    assert cancelled == 1500
    assert (
        cast(Document, await mongo[CALLBACKS].find_one({"_id": processing["_id"]}))["state"]
        == "PROCESSING"
    )


async def test_kafka_down_stops_a_job_and_the_relay_announces_what_it_cancelled(
    client: httpx.AsyncClient,
    tokens: Tokens,
    service: str,
    api: AdminApi,
    mongo: AsyncDatabase[Document],
    admin_settings: AdminApiSettings,
) -> None:
    """The first batch is cancelled but Kafka refuses its events: the job stops (failed) with
    the events in its outbox; the relay later publishes those of the callbacks the batch did
    cancel, and none for a callback it did not."""
    now = datetime.now(UTC).replace(microsecond=0)
    docs = [
        new_callback_document(
            callback_id=uuid.uuid4(),
            service_name=service,
            customer_number=number(n),
            type=CallbackType.SCHEDULED,
            desired_time=now + timedelta(hours=1, seconds=n),
            now=now,
            created_by="seed",
        )
        for n in range(1200)
    ]
    await mongo[CALLBACKS].insert_many(docs)
    body = {"all_in_range": {"range": "next_2_weeks", "service": [service]}}
    headers = tokens.supervisor(service, sub="jobber")

    async def kafka_down(entries: Iterable[Document]) -> None:
        list(entries)
        raise ConnectionError("kafka down")

    api.relay.publish = api.job_relay.publish = kafka_down  # type: ignore[method-assign]
    try:
        response = await client.post(CONFIRM, json=body, headers=headers)
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        for _ in range(600):
            job = (await client.get(location, headers=headers)).json()
            if job["state"] != "running":
                break
            await asyncio.sleep(0.1)
    finally:
        del api.relay.publish, api.job_relay.publish
    assert job["state"] == "failed" and "Kafka" in job["error"], job
    batch_id = UUID(job["batch_id"])
    cancelled = (
        await mongo[CALLBACKS]
        .find({"service_name": service, "result": "CANCELLED_BY_ADMIN"}, {"_id": 1})
        .to_list()
    )
    assert len(cancelled) == 500  # the first batch only
    stored = await mongo["bulk_cancel_jobs"].find_one({"_id": batch_id})
    assert stored is not None
    assert len(stored["announcing"]) == 500 and stored["announcing_since"]

    # an event of a callback the batch did not cancel (it crashed before): never announced
    untouched = docs[-1]
    jobber = Principal("jobber", frozenset(), frozenset())
    [void] = Cancellation(untouched, jobber, now, batch_id).outbox(api)
    await mongo["bulk_cancel_jobs"].update_one(
        {"_id": batch_id},
        {"$push": {"announcing": void}},
    )
    # (the service's own relay loop waits 30 s before it takes over; here at once)
    assert await api.job_relay.relay_pending(older_than=timedelta(0)) == 1
    stored = await mongo["bulk_cancel_jobs"].find_one({"_id": batch_id})
    assert stored is not None
    assert not stored.get("announcing") and "announcing_since" not in stored
    ids = {doc["_id"] for doc in cancelled}
    events = await lifecycle_events(
        admin_settings.kafka_bootstrap_servers,
        admin_settings.topic_lifecycle_events,
        ids | {untouched["_id"]},
        expected=500,
    )
    assert {UUID(e["callback_id"]) for e in events} == ids
    assert {e["kind"] for e in events} == {"CANCELLED"}
    assert {e["batch_id"] for e in events} == {str(batch_id)}
    assert await api.job_relay.relay_pending(older_than=timedelta(0)) == 0  # nothing left


async def test_a_job_whose_process_stopped_is_marked_failed(
    api: AdminApi, mongo: AsyncDatabase[Document]
) -> None:
    now = datetime.now(UTC)
    stale, alive = uuid.uuid4(), uuid.uuid4()
    await mongo["bulk_cancel_jobs"].insert_many(
        [
            {
                "_id": stale,
                "actor": "a",
                "state": "running",
                "updated_at": now - timedelta(hours=2),
            },
            {"_id": alive, "actor": "a", "state": "running", "updated_at": now},
        ]
    )
    # the service's own relay loop reaps every second too: whichever comes first marks it
    await api.repository.reap_jobs(now - timedelta(minutes=10), now)
    assert (
        cast(Document, await mongo["bulk_cancel_jobs"].find_one({"_id": stale}))["state"]
        == "failed"
    )
    assert (
        cast(Document, await mongo["bulk_cancel_jobs"].find_one({"_id": alive}))["state"]
        == "running"
    )
