"""Bulk cancel of a mixed set through the real admin-api process, and its Cancellation Summary
Report built by the real exporter process from the lifecycle topic: the callbacks not yet due
end COMPLETED(CANCELLED_BY_ADMIN), those routing may hold (QUEUED, ROUTING; no routing runs here)
show the cancel asked of routing and pending, PROCESSING and COMPLETED ones are left exactly as
they were, and the report (JSON and CSV) lists every one with the right status, for its actor
only. (The preview/confirm race is covered in process by test_bulk_cancel.py; routing's
answers by tests/pipeline/test_record_never_lies.py.)"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from callback_admin_api.report import CSV_HEADER
from callback_shared.documents import timeline_entry
from callback_shared.kafka import ensure_topics
from callback_shared.mongo import CALLBACKS, SHARED_INDEXES, Document, ensure_indexes
from callback_shared.settings import PlatformSettings
from callback_shared.states import CallbackResult, CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.admin_api.support import SECRET, Tokens, scheduled, tomorrow_at
from tests.support import ServiceProcess, start_service

pytestmark = pytest.mark.e2e

S, R = CallbackState, CallbackResult
API = "/api/v1"
PREVIEW, CONFIRM = "/callbacks/bulk-cancel/preview", "/callbacks/bulk-cancel"
REPORT = "/reports/cancellations"
CANCELLABLE = (S.SCHEDULED, S.QUEUED, S.ROUTING)
#: Two callbacks in each state, in the order they are created.
PLAN = [
    (state, result)
    for state, result in [
        (S.SCHEDULED, None),
        (S.QUEUED, None),
        (S.ROUTING, None),
        (S.PROCESSING, None),
        (S.COMPLETED, R.AGENT),
    ]
    for _ in range(2)
]


def number(n: int) -> str:
    """Numbers of this test only."""
    return f"+1650556{n:04d}"


def at(value: str) -> datetime:
    """A time of a JSON answer or a CSV cell."""
    return datetime.fromisoformat(value).astimezone(UTC)


def millis(value: datetime) -> datetime:
    """As a BSON date keeps it."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


async def move(
    db: AsyncDatabase[Document],
    callback_id: uuid.UUID,
    state: CallbackState,
    result: CallbackResult | None,
) -> None:
    """Routing moved the callback on (directly in the database, as routing writes it)."""
    now = millis(datetime.now(UTC))
    done = await db[CALLBACKS].update_one(
        {"_id": callback_id, "state": "SCHEDULED"},
        {
            "$set": {
                "state": state.value,
                "result": result.value if result else None,
                "updated_at": now,
                **({"completed_at": now} if state is S.COMPLETED else {}),
            },
            "$unset": {"dispatch_at": ""},
            "$push": {"timeline": timeline_entry(now, state, "routing", result=result)},
        },
    )
    assert done.modified_count == 1


def stopped(process: ServiceProcess) -> int | None:
    try:
        return process.terminate()
    except Exception:
        process.kill()
        return None


@pytest.mark.timeout(120)
async def test_bulk_cancel_of_a_mixed_set_and_its_report(
    env: dict[str, str], settings: PlatformSettings, db: AsyncDatabase[Document], tmp_path: Path
) -> None:
    env = {**env, "JWT_SECRET": SECRET}
    # topics and indexes exist before either process starts reading or writing
    await ensure_topics(settings, "tests")
    await ensure_indexes(db, SHARED_INDEXES)
    service = f"svc-{uuid.uuid4().hex[:10]}"
    tokens = Tokens()
    sam = tokens.supervisor(sub="sam")

    processes: list[ServiceProcess] = []
    try:
        processes += [start_service(name, env, tmp_path) for name in ("admin-api", "exporter")]
        await asyncio.gather(*(asyncio.to_thread(p.wait_ready) for p in processes))
        admin_api = processes[0]
        async with httpx.AsyncClient(base_url=f"{admin_api.url}{API}", timeout=15) as http:
            configured = await http.put(
                f"/services/{service}",
                json={"name": service, "slot_capacity": 3},
                headers=tokens.administrator(),
            )
            assert configured.status_code == 200, configured.text

            # --- the mixed set: created over HTTP, then moved on by "routing" -----------------
            ids: dict[CallbackState, list[uuid.UUID]] = {state: [] for state in S}
            desired: dict[uuid.UUID, datetime] = {}
            numbers: dict[uuid.UUID, str] = {}
            for n, (state, result) in enumerate(PLAN):
                when = tomorrow_at(9 + n // 4, n % 4 * 15)
                created = await http.post(
                    "/callbacks", json=scheduled(service, when, number(n)), headers=sam
                )
                assert created.status_code == 201, created.text
                callback_id = uuid.UUID(created.json()["id"])
                assert at(created.json()["desired_time"]) == when
                ids[state].append(callback_id)
                desired[callback_id], numbers[callback_id] = when, number(n)
                if state is not S.SCHEDULED:
                    await move(db, callback_id, state, result)
            cancellable = {i for state in CANCELLABLE for i in ids[state]}
            outright = set(ids[S.SCHEDULED])  # not yet due: cancelled at once
            asked_of_routing = cancellable - outright
            refusable = {*ids[S.PROCESSING], *ids[S.COMPLETED]}
            previous = {i: state for state, chosen in ids.items() for i in chosen}
            missing = [uuid.uuid4() for _ in range(3)]
            chosen = [
                *ids[S.COMPLETED],
                *ids[S.PROCESSING],
                *ids[S.ROUTING],
                *ids[S.QUEUED],
                *ids[S.SCHEDULED],
            ]
            # a missing id among them, and one id given twice (counted once)
            order = [*chosen[:3], missing[0], *chosen[3:], missing[1], chosen[0], missing[2]]
            body = {"ids": [str(i) for i in order]}
            before = {
                doc["_id"]: doc
                async for doc in db[CALLBACKS].find({"_id": {"$in": list(refusable)}})
            }
            assert len(before) == 4
            for callback_id, doc in before.items():
                assert doc["state"] == previous[callback_id].value
                assert len(doc["timeline"]) == 2 and not doc.get("outbox")

            # --- preview: nothing changes, the excluded ones with their reasons ---------------
            preview = await http.post(PREVIEW, json=body, headers=sam)
            assert preview.status_code == 200, preview.text
            shown = preview.json()
            assert (shown["total"], shown["would_cancel"], shown["excluded"]) == (13, 6, 7)
            assert shown["excluded_by_reason"] == {"PROCESSING": 2, "COMPLETED": 2, "NOT_FOUND": 3}
            assert shown["truncated"] is False
            assert {uuid.UUID(item["id"]) for item in shown["items"]} == cancellable
            for item in shown["items"]:
                callback_id = uuid.UUID(item["id"])
                assert (item["outcome"], item["reason"]) == ("WOULD_CANCEL", None)
                assert item["state"] == previous[callback_id].value
                assert (item["service_name"], item["customer_number"]) == (
                    service,
                    numbers[callback_id],
                )
                assert at(item["desired_time"]) == desired[callback_id]
            excluded = {
                uuid.UUID(item["id"]): (item["outcome"], item["reason"], item["state"])
                for item in shown["excluded_items"]
            }
            assert excluded == {
                **{i: ("EXCLUDED", previous[i].value, previous[i].value) for i in refusable},
                **{i: ("EXCLUDED", "NOT_FOUND", None) for i in missing},
            }
            assert await db[CALLBACKS].count_documents(
                {"_id": {"$in": list(cancellable)}, "result": None}
            ) == len(cancellable)

            # --- confirm ------------------------------------------------------------------------
            asked = datetime.now(UTC)
            confirm = await http.post(CONFIRM, json=body, headers=sam)
            answered = datetime.now(UTC)
            assert confirm.status_code == 200, confirm.text
            done = confirm.json()
            batch_id = uuid.UUID(done["batch_id"])
            assert (done["state"], done["actor"]) == ("done", "sam")
            counts = ("total_seen", "cancelled", "requested", "refused", "skipped")
            assert tuple(done[count] for count in counts) == (13, 2, 4, 4, 3)
            assert done["refused_by_reason"] == {"PROCESSING": 2, "COMPLETED": 2}
            outcomes = {uuid.UUID(i["id"]): (i["outcome"], i["reason"]) for i in done["items"]}
            assert outcomes == {
                **{i: ("CANCELLED", None) for i in outright},
                **{i: ("REQUESTED", None) for i in asked_of_routing},
                **{i: ("REFUSED", previous[i].value) for i in refusable},
                **{i: ("SKIPPED", "NOT_FOUND") for i in missing},
            }

            # --- the records: exactly the cancellable ones cancelled, the others untouched -----
            after = {doc["_id"]: doc async for doc in db[CALLBACKS].find({"service_name": service})}
            assert set(after) == cancellable | refusable
            cancelled_at: dict[uuid.UUID, datetime] = {}
            for callback_id in asked_of_routing:
                doc = after[callback_id]
                assert (doc["state"], doc["result"]) == (previous[callback_id].value, None)
                request = doc["cancel_request"]
                assert (request["status"], request["actor"], request["batch_id"]) == (
                    "PENDING",
                    "sam",
                    batch_id,
                )
                assert millis(asked) <= request["requested_at"] <= answered
                assert doc["timeline"][-1]["note"] == f"cancel asked of routing in batch {batch_id}"
                cancelled_at[callback_id] = request["requested_at"]
            for callback_id in outright:
                doc = after[callback_id]
                assert (doc["state"], doc["result"]) == ("COMPLETED", "CANCELLED_BY_ADMIN")
                assert "dispatch_at" not in doc and not doc.get("outbox")
                last = doc["timeline"][-1]
                assert (last["state"], last["result"], last["actor"]) == (
                    "COMPLETED",
                    "CANCELLED_BY_ADMIN",
                    "sam",
                )
                assert last["note"] == f"cancelled in batch {batch_id}"
                expected_length = 1 if previous[callback_id] is S.SCHEDULED else 2
                assert len(doc["timeline"]) == expected_length + 1
                assert millis(asked) <= doc["completed_at"] <= answered
                assert doc["updated_at"] == doc["completed_at"] == last["at"]
                cancelled_at[callback_id] = doc["completed_at"]
            for callback_id in refusable:
                # the refusal left no trace in the record: the same document, field by field
                assert after[callback_id] == before[callback_id]

            # --- the report, once the exporter has applied the batch's events -----------------
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                response = await http.get(REPORT, headers=sam)
                rows = response.json() if response.status_code == 200 else []
                mine = {r["callback_id"]: r for r in rows if r["batch_id"] == str(batch_id)}
                if len(mine) >= len(cancellable | refusable):
                    break
                assert asyncio.get_running_loop().time() < deadline, (
                    f"the report lists {len(mine)} of the batch's 10 callbacks after 30s: "
                    f"{response.status_code} {response.text}\n{processes[1].output()}"
                )
                await asyncio.sleep(0.3)
            assert response.headers["content-type"].startswith("application/json")
            assert len(rows) == 10  # only this batch: nothing of the creations, no missing id
            assert set(mine) == {str(i) for i in cancellable | refusable}
            for key, row in mine.items():
                callback_id = uuid.UUID(key)
                state = previous[callback_id]
                assert (row["actor"], row["service_name"], row["customer_number"]) == (
                    "sam",
                    service,
                    numbers[callback_id],
                )
                assert at(row["desired_time"]) == desired[callback_id]
                assert row["previous_state"] == state.value
                if callback_id in outright:
                    assert (row["status"], row["reason"]) == ("CANCELLED", None)
                    assert at(row["cancelled_at"]) == cancelled_at[callback_id]
                elif callback_id in asked_of_routing:  # routing has not answered (none runs)
                    assert (row["status"], row["reason"]) == ("REQUESTED", None)
                    assert at(row["cancelled_at"]) == cancelled_at[callback_id]
                else:
                    assert (row["status"], row["reason"]) == ("REFUSED", state.value)
                    assert millis(asked) <= at(row["cancelled_at"]) <= answered
            times = [at(row["cancelled_at"]) for row in rows]
            assert times == sorted(times, reverse=True)  # newest first

            # --- the same report as a CSV file ----------------------------------------------
            download = await http.get(REPORT, params={"format": "csv"}, headers=sam)
            assert download.status_code == 200, download.text
            assert download.headers["content-type"] == "text/csv; charset=utf-8"
            assert download.headers["content-disposition"].startswith(
                'attachment; filename="cancellation-summary-'
            )
            assert download.text.endswith("\r\n")
            table = list(csv.reader(io.StringIO(download.text, newline="")))
            assert tuple(table[0]) == CSV_HEADER
            lines = [dict(zip(CSV_HEADER, line, strict=True)) for line in table[1:]]
            assert [line["Callback ID"] for line in lines] == [row["callback_id"] for row in rows]
            for line in lines:
                row = mine[line["Callback ID"]]
                assert line["Batch ID"] == str(batch_id)
                assert line["Cancellation Status"] == row["status"]
                assert at(line["Cancelled At (UTC)"]) == at(row["cancelled_at"])
                assert line["Service Name"] == service
                # a leading "+" gets the formula-injection quote
                assert line["Phone Number"] == "'" + row["customer_number"]
                assert at(line["Desired Callback Time (UTC)"]) == at(row["desired_time"])
                assert line["Previous State"] == row["previous_state"]
                assert line["Reason"] == (row["reason"] or "")
                assert line["Cancelled By"] == "sam"

            # --- nobody else's report ---------------------------------------------------------
            for other in (tokens.supervisor(sub="sue"), tokens.administrator(service, sub="ada")):
                for params in ({}, {"format": "csv"}):
                    refused = await http.get(REPORT, params=params, headers=other)
                    assert refused.status_code == 404, refused.text
                    assert str(batch_id) not in refused.text
            monitor = await http.get(REPORT, headers=tokens.monitor(sub="sam"))
            assert monitor.status_code == 403, monitor.text
            # sam granted only another service sees none of these entries
            elsewhere = await http.get(REPORT, headers=tokens.supervisor("elsewhere", sub="sam"))
            assert elsewhere.status_code == 404, elsewhere.text
    finally:
        codes = {p.name: stopped(p) for p in reversed(processes)}
    assert codes == {"exporter": 0, "admin-api": 0}, [p.output() for p in processes]
