"""One callback with its metrics (basic and advanced), and Callback Search."""

from datetime import UTC, datetime, timedelta

import httpx
from callback_shared.mongo import CALLBACKS, Document
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import (
    Tokens,
    number,
    problem,
    scheduled,
    stored_callback,
    tomorrow_at,
)

URL = "/api/v1/callbacks"


async def test_detail_shows_basic_metrics_and_advanced_adds_the_timeline(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    created = await client.post(
        URL, json=scheduled(service, tomorrow_at(11)), headers=tokens.supervisor(sub="sam")
    )
    callback_id = created.json()["id"]
    await client.post(f"{URL}/{callback_id}/cancel", headers=tokens.administrator(sub="ada"))
    queued = stored_callback(
        service,
        state=CallbackState.QUEUED,
        position_in_queue=3,
        estimated_wait_seconds=42.5,
        customer_number=number(1),
    )
    await mongo[CALLBACKS].insert_one(queued)
    basic = (await client.get(f"{URL}/{queued['_id']}", headers=tokens.monitor())).json()
    assert (basic["position_in_queue"], basic["estimated_wait_seconds"]) == (3, 42.5)
    assert basic["timeline"] is None
    advanced = (
        await client.get(
            f"{URL}/{callback_id}", params={"advanced": "true"}, headers=tokens.monitor()
        )
    ).json()
    actors = [(entry["state"], entry["result"], entry["actor"]) for entry in advanced["timeline"]]
    assert actors == [("SCHEDULED", None, "sam"), ("COMPLETED", "CANCELLED_BY_ADMIN", "ada")]
    assert advanced["created_by"] == "sam"


async def test_detail_of_an_unknown_or_malformed_id(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    problem(
        await client.get(f"{URL}/6a1e4b0c-0000-4000-8000-000000000000", headers=tokens.monitor()),
        404,
    )
    response = await client.get(f"{URL}/not-a-uuid", headers=tokens.monitor())
    assert {e["field"] for e in problem(response, 422)["errors"]} == {"callback_id"}


async def test_search_by_number_spans_every_retained_record_with_the_guides_columns(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    wanted = number(7077)
    old = stored_callback(
        service,
        customer_number=wanted,
        desired=now - timedelta(days=13),
        state=CallbackState.COMPLETED,
        result=CallbackResult.AGENT,
        from_number="+14155550000",
        to_number=wanted,
        route_point="RP-1",
        queue="VQ-billing",
        diagnostic_data={"ors_session": "abc"},
    )
    future = stored_callback(service, customer_number=wanted, desired=now + timedelta(days=20))
    other_number = stored_callback(service, customer_number=number(7078))
    await mongo[CALLBACKS].insert_many([old, future, other_number])
    for q in (wanted, wanted.removeprefix("+"), "+1 (415) 555-7077"):
        response = await client.get("/api/v1/search", params={"q": q}, headers=tokens.monitor())
        assert response.status_code == 200, response.text
        rows = response.json()["items"]
        assert [row["callback_id"] for row in rows] == [str(future["_id"]), str(old["_id"])]
    row = rows[1]
    assert row == {
        "from_number": "+14155550000",
        "state": "COMPLETED",
        "result": "AGENT",
        "route_point": "RP-1",
        "last_updated_time": old["updated_at"].isoformat().replace("+00:00", "Z"),
        "queue": "VQ-billing",
        "to_number": wanted,
        "callback_id": str(old["_id"]),
        "scheduled_time": old["desired_time"].isoformat().replace("+00:00", "Z"),
        "diagnostic_data": {"ors_session": "abc"},
        "service_name": service,
        "customer_number": wanted,
        # the same derived fields as every other view
        "overdue": False,
        "overdue_message": None,
        "cancel_pending": False,
        "originated_as_scheduled": True,
        "can_cancel": False,
        "can_reschedule": False,
        "can_recreate": True,
    }
    # a SCHEDULED one past its window, found by search, carries the warning as the list does
    late = stored_callback(service, customer_number=number(7079), desired=now - timedelta(hours=1))
    await mongo[CALLBACKS].insert_one(late)
    (row,) = (
        await client.get("/api/v1/search", params={"q": number(7079)}, headers=tokens.monitor())
    ).json()["items"]
    listed = (await client.get(f"/api/v1/callbacks/{late['_id']}", headers=tokens.monitor())).json()
    assert row["overdue"] is True
    assert row["overdue_message"] == listed["overdue_message"] is not None


async def test_search_by_callback_id(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    doc = stored_callback(
        service,
        desired=datetime.now(UTC) - timedelta(days=12),
        state=CallbackState.QUEUED,
        # a cancel asked of routing, not yet answered
        cancel_request={
            "requested_at": datetime.now(UTC),
            "actor": "ada",
            "batch_id": None,
            "state": "QUEUED",
            "status": "PENDING",
        },
    )
    await mongo[CALLBACKS].insert_one(doc)
    for q in (str(doc["_id"]), str(doc["_id"]).upper()):
        rows = (
            await client.get("/api/v1/search", params={"q": q}, headers=tokens.monitor())
        ).json()["items"]
        assert [row["callback_id"] for row in rows] == [str(doc["_id"])]
        assert rows[0]["cancel_pending"] is True


async def test_search_refuses_text_that_is_neither_id_nor_number(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    for q in ("hello", "+1415{$gt:1}", "1" * 16):
        response = await client.get("/api/v1/search", params={"q": q}, headers=tokens.monitor())
        assert {e["field"] for e in problem(response, 422)["errors"]} == {"q"}
    problem(await client.get("/api/v1/search", headers=tokens.monitor()), 422)
