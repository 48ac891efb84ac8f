"""The report's store (callback_exporter.report), query and CSV (callback_admin_api.report): pure
functions, and the writes
and reads against the real MongoDB-protocol server."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from callback_admin_api.report import (
    ALL_SERVICES,
    CSV_HEADER,
    ReportEntry,
    recent_cancellations,
    report_csv,
    safe_cell,
)
from callback_exporter.report import (
    IgnoreReason,
    entry_id,
    event_version,
    ignore_reason,
    record_cancellations,
)
from callback_shared.models import RETENTION, LifecycleEvent, utcnow
from callback_shared.mongo import CANCELLATION_REPORT, Document
from callback_shared.reports import ReportStatus
from callback_shared.states import CallbackState
from pymongo.asynchronous.database import AsyncDatabase

from tests.exporter.support import K, cancellation, expected_report, summary_of_entry

# --- pure functions ----------------------------------------------------------------------------


def test_entry_id_is_derived_from_actor_batch_and_callback_only() -> None:
    callback, batch = uuid.uuid4(), uuid.uuid4()
    assert entry_id("alice", batch, callback) == entry_id("alice", batch, callback)
    others = {
        entry_id("bob", batch, callback),
        entry_id("alice", None, callback),
        entry_id("alice", uuid.uuid4(), callback),
        entry_id("alice", batch, uuid.uuid4()),
        entry_id("alice", batch, callback),
    }
    assert len(others) == 5
    # the parts cannot run into each other, whatever a username holds
    assert entry_id('a", "b', None, callback) != entry_id("a", None, callback)


def test_event_version_orders_by_time_then_event_id() -> None:
    at = utcnow().replace(microsecond=123_000)
    # within one millisecond (what a BSON date keeps) the microseconds still order them
    early = cancellation(at=at + timedelta(microseconds=1))
    late = cancellation(at=at + timedelta(microseconds=2))
    assert event_version(early) < event_version(late)
    low = cancellation(at=at, event_id=uuid.UUID(int=1))
    high = cancellation(at=at, event_id=uuid.UUID(int=2**127))
    assert event_version(low) < event_version(high)
    years_apart = cancellation(at=at.replace(year=999)), cancellation(at=at)
    assert event_version(years_apart[0]) < event_version(years_apart[1])


def test_only_cancellations_with_an_actor_within_retention_are_reported() -> None:
    now = utcnow()
    assert ignore_reason(cancellation(at=now), RETENTION, now) is None
    refused = cancellation(at=now, kind=K.CANCELLATION_REFUSED)
    assert ignore_reason(refused, RETENTION, now) is None
    for kind in (K.CREATED, K.STATE_CHANGED, K.RESCHEDULED, K.RECREATED):
        assert ignore_reason(cancellation(at=now, kind=kind), RETENTION, now) is (
            IgnoreReason.OTHER_KIND
        )
    assert ignore_reason(cancellation(at=now, actor=None), RETENTION, now) is (
        IgnoreReason.NO_ACTOR
    )
    old = cancellation(at=now - RETENTION - timedelta(seconds=1))
    assert ignore_reason(old, RETENTION, now) is IgnoreReason.EXPIRED


def entry(**fields: Any) -> ReportEntry:
    defaults = {
        "callback_id": uuid.uuid4(),
        "batch_id": uuid.uuid4(),
        "actor": "alice",
        "status": ReportStatus.CANCELLED,
        "cancelled_at": utcnow(),
        "service_name": "billing",
        "customer_number": "+14155552671",
        "desired_time": utcnow(),
        "previous_state": CallbackState.SCHEDULED,
        "reason": None,
    }
    return ReportEntry(**{**defaults, **fields})


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_safe_cell_quotes_what_a_spreadsheet_would_run(first: str) -> None:
    assert safe_cell(f"{first}1+1") == f"'{first}1+1"


def test_safe_cell_leaves_plain_text_alone() -> None:
    for value in ["billing", "", "2026-01-01T00:00:00.000Z", "a=b", "1-2", "'already"]:
        assert safe_cell(value) == value


def test_csv_has_a_header_quotes_every_cell_and_round_trips() -> None:
    tricky = 'Sales, "East"\nfloor 2'
    rows = [
        entry(service_name=tricky, reason="PROCESSING", status=ReportStatus.REFUSED),
        entry(batch_id=None, previous_state=None),
    ]
    text = report_csv(rows)
    assert text.startswith('"Callback ID","Batch ID",')
    assert text.endswith("\r\n") and '"Sales, ""East""\nfloor 2"' in text
    parsed = parse(text)
    assert parsed[0] == list(CSV_HEADER)
    assert len(parsed) == 3
    assert parsed[1][0] == str(rows[0].callback_id)
    assert parsed[1][4] == tricky
    assert parsed[1][2:3] == ["REFUSED"] and parsed[1][8] == "PROCESSING"
    assert parsed[2][1] == "" and parsed[2][7] == ""
    assert parsed[1][3].endswith("Z") and parsed[1][-1] == "alice"


def test_csv_cells_cannot_inject_formulas() -> None:
    hostile = [
        entry(service_name='=HYPERLINK("http://evil","x")', reason="@SUM(A1)"),
        entry(service_name="-2+3+cmd|' /C calc'!A0", actor="+alice", reason="\tx"),
    ]
    parsed = parse(report_csv(hostile))
    assert parsed[1][4] == '\'=HYPERLINK("http://evil","x")' and parsed[1][8] == "'@SUM(A1)"
    assert parsed[2][4].startswith("'-2+3") and parsed[2][-1] == "'+alice"
    assert parsed[2][8] == "'\tx"
    # E.164 numbers start with '+': they are quoted too (documented in safe_cell)
    assert parsed[1][5] == "'+14155552671"
    for row in parsed[1:]:
        assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") for cell in row)


def test_empty_report_is_just_the_header() -> None:
    assert parse(report_csv([])) == [list(CSV_HEADER)]


# --- writes and reads against the real server --------------------------------------------------


def mixed_events(now: datetime) -> list[LifecycleEvent]:
    """Several entries, each with several events (refusals, cancellations, ties in time)."""
    batch = uuid.uuid4()
    callbacks = [uuid.uuid4() for _ in range(6)]
    events = []
    for n, callback in enumerate(callbacks):
        base = now - timedelta(minutes=30 - n)
        events += [
            cancellation(callback_id=callback, batch_id=batch, at=base, actor="alice"),
            cancellation(
                callback_id=callback,
                batch_id=batch,
                at=base + timedelta(seconds=5),
                kind=K.CANCELLATION_REFUSED,
                previous_state=CallbackState.PROCESSING,
                actor="alice",
            ),
            cancellation(callback_id=callback, at=base + timedelta(seconds=n), actor="bob"),
        ]
    tied = now - timedelta(minutes=1)
    events += [
        cancellation(callback_id=callbacks[0], at=tied, actor="carol", event_id=uuid.UUID(int=7)),
        cancellation(
            callback_id=callbacks[0],
            at=tied,
            actor="carol",
            kind=K.CANCELLATION_REFUSED,
            event_id=uuid.UUID(int=9),
        ),
    ]
    return events


async def snapshot(db: AsyncDatabase[Document]) -> list[Document]:
    docs = await db[CANCELLATION_REPORT].find().sort("_id", 1).to_list()
    return docs


async def test_any_order_any_batching_any_repetition_gives_the_same_report(
    db: AsyncDatabase[Document],
) -> None:
    now = utcnow()
    events = mixed_events(now)
    report = db[CANCELLATION_REPORT]
    await record_cancellations(report, events, RETENTION)
    reference = await snapshot(db)
    expected = expected_report(events)
    for actor, rows in expected.items():
        got = await recent_cancellations(db, actor, ALL_SERVICES, now - timedelta(hours=1))
        assert [summary_of_entry(e) for e in got] == rows
    rng = random.Random(7)
    for _ in range(6):
        await report.delete_many({})
        shuffled = events + rng.sample(events, len(events) // 2)  # with duplicates
        rng.shuffle(shuffled)
        size = rng.randint(1, 6)
        for at in range(0, len(shuffled), size):
            await record_cancellations(report, shuffled[at : at + size], RETENTION)
        assert await snapshot(db) == reference
    # a full replay over the existing report changes nothing
    await record_cancellations(report, events, RETENTION)
    assert await snapshot(db) == reference


async def test_an_older_event_never_overwrites_a_newer_one(db: AsyncDatabase[Document]) -> None:
    now = utcnow()
    callback = uuid.uuid4()
    newer = cancellation(
        callback_id=callback, at=now, kind=K.CANCELLATION_REFUSED, reason="PROCESSING"
    )
    older = cancellation(callback_id=callback, at=now - timedelta(seconds=1))
    report = db[CANCELLATION_REPORT]
    await record_cancellations(report, [newer], RETENTION)
    await record_cancellations(report, [older], RETENTION)
    (doc,) = await report.find().to_list()
    assert (doc["status"], doc["reason"], doc["event_id"]) == (
        "REFUSED",
        "PROCESSING",
        str(newer.event_id),
    )
    assert doc["expire_at"] == doc["occurred_at"] + RETENTION


async def test_a_cancel_asked_of_routing_is_requested_until_routing_answers(
    db: AsyncDatabase[Document],
) -> None:
    """The entry says REQUESTED while routing has not answered, then what routing did."""
    now = utcnow()
    answered, waiting = uuid.uuid4(), uuid.uuid4()
    batch = uuid.uuid4()
    requested = [
        cancellation(callback_id=c, at=now, kind=K.CANCEL_REQUESTED, batch_id=batch)
        for c in (answered, waiting)
    ]
    refused = cancellation(
        callback_id=answered,
        at=now + timedelta(milliseconds=300),
        kind=K.CANCELLATION_REFUSED,
        batch_id=batch,
        reason="routing: already connected to an agent",
    )
    report = db[CANCELLATION_REPORT]
    await record_cancellations(report, requested, RETENTION)
    statuses = {doc["callback_id"]: doc["status"] for doc in await report.find().to_list()}
    assert statuses == {answered: "REQUESTED", waiting: "REQUESTED"}
    await record_cancellations(report, [refused, *requested], RETENTION)  # replayed, any order
    entries = await recent_cancellations(db, "alice", ALL_SERVICES, now - timedelta(hours=1))
    assert {(e.callback_id, e.status, e.reason) for e in entries} == {
        (answered, ReportStatus.REFUSED, "routing: already connected to an agent"),
        (waiting, ReportStatus.REQUESTED, None),
    }


async def test_concurrent_upserts_of_a_new_entry_converge_to_the_newest(
    db: AsyncDatabase[Document],
) -> None:
    """Writers racing to create one entry: whoever inserts first, the newest event wins (a
    loser's duplicate key, where the server reports one, is retried without upsert)."""
    now = utcnow()
    report = db[CANCELLATION_REPORT]
    for round_ in range(10):
        callback = uuid.uuid4()
        events = [
            cancellation(callback_id=callback, at=now + timedelta(milliseconds=n), reason=str(n))
            for n in range(4)
        ]
        random.Random(round_).shuffle(events)
        await asyncio.gather(*(record_cancellations(report, [e], RETENTION) for e in events))
        doc = await report.find_one({"callback_id": callback})
        assert doc is not None
        assert doc["reason"] == "3", round_


async def test_a_duplicate_key_on_upsert_is_retried_without_upsert(
    db: AsyncDatabase[Document],
) -> None:
    """The race itself cannot be staged on a server that serialises writes, so a unique index
    of a scratch collection makes the server answer an upsert with E11000: the op is retried
    as a plain update (which finds no entry here) instead of failing the batch, and the other
    ops of the bulk are applied."""
    now = utcnow()
    scratch = db["report_duplicate_keys"]
    await scratch.create_index("callback_id", unique=True)
    blocked, free = cancellation(at=now), cancellation(at=now)
    await scratch.insert_one({"_id": "someone else", "callback_id": blocked.callback_id})
    assert await record_cancellations(scratch, [blocked, free], RETENTION) == 2
    assert await scratch.count_documents({}) == 2
    assert await scratch.count_documents({"callback_id": free.callback_id}) == 1


async def test_recent_cancellations_is_the_callers_permitted_recent_entries(
    db: AsyncDatabase[Document],
) -> None:
    now = utcnow()
    batch = uuid.uuid4()
    events = [
        cancellation(actor="alice", batch_id=batch, at=now - timedelta(minutes=n), service_name=s)
        for n, s in enumerate(["billing", "sales", "billing", "support", "sales"])
    ]
    events += [
        cancellation(actor="bob", at=now - timedelta(minutes=2), service_name="billing"),
        cancellation(actor="alice", at=now - timedelta(days=3), service_name="billing"),
    ]
    await record_cancellations(db[CANCELLATION_REPORT], events, RETENTION)
    day_ago = now - timedelta(days=1)

    everything = await recent_cancellations(db, "alice", ALL_SERVICES, day_ago)
    assert [e.service_name for e in everything] == [
        "billing",
        "sales",
        "billing",
        "support",
        "sales",
    ]
    assert [e.cancelled_at for e in everything] == sorted(
        (e.cancelled_at for e in everything), reverse=True
    )
    assert all(e.actor == "alice" and e.batch_id == batch for e in everything)

    granted = await recent_cancellations(db, "alice", {"billing", "support"}, day_ago)
    assert [e.service_name for e in granted] == ["billing", "billing", "support"]
    assert await recent_cancellations(db, "alice", set(), day_ago) == []
    assert await recent_cancellations(db, "alice", {"unknown"}, day_ago) == []
    assert await recent_cancellations(db, "nobody", ALL_SERVICES, day_ago) == []

    window = await recent_cancellations(
        db,
        "alice",
        ALL_SERVICES,
        now - timedelta(minutes=3, seconds=30),
        now - timedelta(minutes=1),
    )
    assert [e.cancelled_at for e in window] == [everything[n].cancelled_at for n in (2, 3)]
    older = await recent_cancellations(db, "alice", ALL_SERVICES, now - timedelta(days=4))
    assert len(older) == 6

    # past its expiry but not yet removed by the TTL monitor: left out
    later = now + RETENTION - timedelta(minutes=2, seconds=30)
    assert len(await recent_cancellations(db, "alice", ALL_SERVICES, day_ago, now=later)) == 3


async def test_events_that_make_no_entry_are_not_written(db: AsyncDatabase[Document]) -> None:
    """Expired ones above all: a replay must not bring back what the TTL index deleted."""
    now = utcnow()
    skipped = [
        cancellation(at=now - RETENTION - timedelta(minutes=1)),
        cancellation(at=now, actor=None),
        cancellation(at=now, kind=K.STATE_CHANGED),
    ]
    assert await record_cancellations(db[CANCELLATION_REPORT], skipped, RETENTION) == 0
    assert await db[CANCELLATION_REPORT].count_documents({}) == 0


def stages(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for key in ("inputStage", "queryPlan"):
        if isinstance(plan.get(key), dict):
            found += stages(plan[key])
    for child in plan.get("inputStages", []):
        found += stages(child)
    return found


async def test_report_queries_ride_indexes(db: AsyncDatabase[Document]) -> None:
    """The read is one bounded range on (actor, occurred_at); the write's filter is an _id
    point lookup: neither scans the collection."""
    now = utcnow()
    events = [
        cancellation(actor=f"user{n % 20}", at=now - timedelta(seconds=n)) for n in range(200)
    ]
    await record_cancellations(db[CANCELLATION_REPORT], events, RETENTION)
    report = db[CANCELLATION_REPORT]

    read = await (
        report.find({"actor": "user3", "occurred_at": {"$gte": now - timedelta(hours=1)}})
        .sort([("occurred_at", -1), ("_id", -1)])
        .explain()
    )
    plan = stages(read["queryPlanner"]["winningPlan"])
    assert "COLLSCAN" not in [stage.get("stage") for stage in plan], read
    assert "report_by_actor_occurred_at" in [stage.get("indexName") for stage in plan], read
    if "executionStats" in read:
        assert read["executionStats"]["totalDocsExamined"] <= 10, read["executionStats"]

    one = events[0]
    doc = await report.find_one({"callback_id": one.callback_id})
    assert doc is not None
    write = await report.find({"_id": doc["_id"]}).explain()
    plan = stages(write["queryPlanner"]["winningPlan"])
    assert "COLLSCAN" not in [stage.get("stage") for stage in plan], write
    if "executionStats" in write:
        assert write["executionStats"]["totalDocsExamined"] <= 1, write["executionStats"]
