"""GET /reports/cancellations: the caller's Cancellation Summary Report, JSON or CSV."""

import csv
import io
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from callback_admin_api.auth import Principal, Role
from callback_admin_api.context import AdminApi
from callback_admin_api.problems import NotFound
from callback_admin_api.queries import cancellation_report
from callback_exporter.report import record_cancellations
from callback_shared.documents import lifecycle_event
from callback_shared.models import RETENTION, LifecycleEventKind
from callback_shared.mongo import CANCELLATION_REPORT, Document
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import Tokens, number, problem, stored_callback

URL = "/api/v1/reports/cancellations"
S = CallbackState


async def report(
    mongo: AsyncDatabase[Document],
    actor: str,
    service: str,
    *,
    refused: bool = False,
    n: int = 0,
    ago: timedelta = timedelta(minutes=1),
    retention: timedelta = RETENTION,
) -> Document:
    """One report entry of ``actor`` in ``service``, written as the exporter writes it (with the
    exporter's default retention unless ``retention``)."""
    doc = stored_callback(service, customer_number=number(n))
    if refused:
        doc.update(state=S.PROCESSING.value)
        kind, previous, reason = LifecycleEventKind.CANCELLATION_REFUSED, S.PROCESSING, "PROCESSING"
    else:
        doc.update(state=S.COMPLETED.value, result=CallbackResult.CANCELLED_BY_ADMIN.value)
        kind, previous, reason = LifecycleEventKind.CANCELLED, S.SCHEDULED, None
    event = lifecycle_event(
        doc,
        kind,
        occurred_at=datetime.now(UTC) - ago,
        previous_state=previous,
        actor=actor,
        batch_id=uuid.uuid4(),
        reason=reason,
    )
    await record_cancellations(mongo[CANCELLATION_REPORT], [event], retention)
    return doc


async def test_json_report_of_the_callers_granted_services_newest_first(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"
    other = service + "-other"
    older = await report(mongo, actor, service, n=1, ago=timedelta(hours=2))
    newer = await report(mongo, actor, service, refused=True, n=2)
    hidden = await report(mongo, actor, other, n=3)
    await report(mongo, "someone-else", service, n=4)
    # older than the report's 14 days (but not yet expired): left out
    await report(mongo, actor, service, n=5, ago=timedelta(days=14, hours=1))

    response = await client.get(URL, headers=tokens.supervisor(service, sub=actor))
    assert response.status_code == 200, response.text
    entries = response.json()
    assert [e["callback_id"] for e in entries] == [str(newer["_id"]), str(older["_id"])]
    assert [e["status"] for e in entries] == ["REFUSED", "CANCELLED"]
    assert entries[0]["reason"] == "PROCESSING" and entries[0]["actor"] == actor
    # a service not granted never appears, not even by id or number
    assert str(hidden["_id"]) not in response.text
    assert hidden["customer_number"] not in response.text

    everything = await client.get(URL, headers=tokens.administrator(sub=actor))
    assert {e["callback_id"] for e in everything.json()} == {
        str(doc["_id"]) for doc in (older, newer, hidden)
    }


async def test_csv_download(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"
    doc = await report(mongo, actor, service, n=7)
    response = await client.get(
        URL, params={"format": "csv"}, headers=tokens.administrator(service, sub=actor)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and ".csv" in disposition
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][0] == "Callback ID" and len(rows) == 2
    assert rows[1][0] == str(doc["_id"]) and rows[1][2] == "CANCELLED"
    assert rows[1][5] == "'" + doc["customer_number"]  # formula-safe cell
    assert rows[1][-1] == actor


async def test_no_recent_cancellations_is_404(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"
    problem(await client.get(URL, headers=tokens.supervisor(sub=actor)), 404)
    # entries only in services the caller is not granted: none for them either
    await report(mongo, actor, service + "-other", n=8)
    problem(await client.get(URL, headers=tokens.supervisor(service, sub=actor)), 404)
    csv_response = await client.get(
        URL, params={"format": "csv"}, headers=tokens.supervisor(service, sub=actor)
    )
    problem(csv_response, 404)


async def test_monitor_may_not_export_and_bad_format_is_422(
    client: httpx.AsyncClient, tokens: Tokens, service: str, mongo: AsyncDatabase[Document]
) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"
    await report(mongo, actor, service, n=9)
    problem(await client.get(URL, headers=tokens.monitor(sub=actor)), 403)
    problem(await client.get(URL), 401)
    bad = await client.get(URL, params={"format": "xml"}, headers=tokens.supervisor(sub=actor))
    problem(bad, 422)


async def test_the_report_reaches_back_as_far_as_its_retention_setting(
    api: AdminApi, service: str, mongo: AsyncDatabase[Document]
) -> None:
    actor = f"user-{uuid.uuid4().hex[:8]}"
    kept = timedelta(days=30)
    doc = await report(mongo, actor, service, n=8, ago=timedelta(days=20), retention=kept)
    principal = Principal(actor, frozenset({Role.SUPERVISOR}), frozenset({service}))
    # the default: as far back as the callback records
    assert api.settings.report_retention == RETENTION
    with pytest.raises(NotFound):
        await cancellation_report(api, principal)
    settings = api.settings.model_copy(update={"exporter_report_retention_days": kept.days})
    entries = await cancellation_report(replace(api, settings=settings), principal)
    assert [entry.callback_id for entry in entries] == [doc["_id"]]
