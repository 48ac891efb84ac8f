"""The soak's invariant auditor: silent on a consistent snapshot, and each check catches its
violation on hand-built inconsistent data (an auditor that cannot fail proves nothing)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid5

import pytest
from callback_exporter.report import report_document
from callback_shared.documents import EVENT_NAMESPACE, lifecycle_event, timeline_entry
from callback_shared.models import LifecycleEventKind, ServiceConfig
from callback_shared.states import CallbackResult, CallbackState

from soak import memory
from soak.audit import Bounds, CommandRecord, Message, Snapshot, audit

S, R = CallbackState, CallbackResult
T0 = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)
SERVICE = "svc"
NUMBER = "+14155550100"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def base_doc(cid: uuid.UUID, type_: str, desired: datetime) -> dict[str, Any]:
    return {
        "_id": cid,
        "service_name": SERVICE,
        "customer_number": NUMBER,
        "type": type_,
        "desired_time": desired,
        "state": "SCHEDULED",
        "result": None,
        "created_at": at(0),
        "attempt": 1,
        "timeline": [timeline_entry(at(0), S.SCHEDULED, "admin-api", actor="ann", note="created")],
    }


def lifecycle(
    doc: dict[str, Any], kind: LifecycleEventKind, when: datetime, **fields: Any
) -> Message:
    event = lifecycle_event(doc, kind, occurred_at=when, **fields)
    return Message(when, event.model_dump(mode="json"))


def routing_event(cid: uuid.UUID, kind: str, sequence: int, when: datetime) -> Message:
    return Message(
        when,
        {
            "event_id": str(uuid.uuid4()),
            "callback_id": str(cid),
            "kind": kind,
            "attempt": 1,
            "sequence": sequence,
            "service_name": SERVICE,
        },
    )


def consistent() -> Snapshot:
    """A: immediate, connected to an agent; B: scheduled, cancelled outright (200); C:
    scheduled in the future, holding its slot place."""
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    later = T0 + timedelta(hours=1)
    doc_a = base_doc(a, "IMMEDIATE", at(0))
    doc_b = base_doc(b, "SCHEDULED", later)
    doc_c = base_doc(c, "SCHEDULED", later)
    messages_lifecycle = [
        lifecycle(d, LifecycleEventKind.CREATED, at(0), actor="ann") for d in (doc_a, doc_b, doc_c)
    ]
    routing = []
    for n, (kind, state, result) in enumerate(
        [
            ("QUEUED", S.QUEUED, None),
            ("ROUTING", S.ROUTING, None),
            ("PROCESSING", S.PROCESSING, None),
            ("COMPLETED", S.COMPLETED, R.AGENT),
        ]
    ):
        event = routing_event(a, kind, n, at(1 + n))
        routing.append(event)
        event_id = uuid.UUID(event.value["event_id"])
        doc_a["timeline"].append(
            timeline_entry(event.at, state, "routing", result=result, event_id=event_id)
        )
        previous = doc_a["state"]
        doc_a.update(state=state.value, result=result.value if result else None)
        announced = lifecycle_event(
            doc_a,
            LifecycleEventKind.STATE_CHANGED,
            occurred_at=event.at,
            previous_state=S(previous),
            caused_by=event_id,
        )
        assert announced.event_id == uuid5(EVENT_NAMESPACE, f"lifecycle:{event_id}")
        messages_lifecycle.append(Message(event.at, announced.model_dump(mode="json")))
    doc_a["routing_seen_at"] = None
    doc_b["timeline"].append(
        timeline_entry(
            at(2), S.COMPLETED, "admin-api", result=R.CANCELLED_BY_ADMIN, actor="ann", note="x"
        )
    )
    cancelled = lifecycle(
        {**doc_b, "state": S.COMPLETED, "result": R.CANCELLED_BY_ADMIN},
        LifecycleEventKind.CANCELLED,
        at(2),
        previous_state=S.SCHEDULED,
        actor="ann",
    )
    messages_lifecycle.append(cancelled)
    doc_b.update(state="COMPLETED", result="CANCELLED_BY_ADMIN")
    doc_c["dispatch_at"] = later
    from callback_shared.models import LifecycleEvent

    entry = report_document(LifecycleEvent.model_validate(cancelled.value), timedelta(days=14))
    slot_id = f"{SERVICE}|{later.isoformat()}"
    return Snapshot(
        taken_at=at(60),
        callbacks={str(d["_id"]): d for d in (doc_a, doc_b, doc_c)},
        services={SERVICE: ServiceConfig(name=SERVICE)},
        slots=[{"_id": slot_id, "service_name": SERVICE, "taken": 1, "holders": [c]}],
        counters=[{"_id": f"{SERVICE}|{NUMBER}|{T0.date().isoformat()}", "count": 3}],
        report=[entry],
        lifecycle=messages_lifecycle,
        due=[
            Message(
                at(0.5),
                {
                    "event_id": str(uuid.uuid4()),
                    "callback_id": str(a),
                    "attempt": 1,
                    "desired_time": at(0).isoformat(),
                },
            )
        ],
        routing_events=routing,
        dead_letters=[],
        commands=[CommandRecord("cancel", str(b), at(2.1), 200)],
        faults=[],
        bounds=Bounds(
            redispatch_after=timedelta(seconds=15),
            lease=timedelta(seconds=5),
            reclaim_interval=timedelta(seconds=1),
            cancel_resend=timedelta(seconds=10),
            call_seconds={SERVICE: 5},
        ),
    )


def ids(snap: Snapshot) -> tuple[str, str, str]:
    a, b, c = list(snap.callbacks)
    return a, b, c


def checks_failing(snap: Snapshot) -> set[str]:
    return {v.check for v in audit(snap)}


def test_a_consistent_snapshot_has_no_violation() -> None:
    assert audit(consistent()) == []


def test_timeline_that_does_not_explain_the_state() -> None:
    snap = consistent()
    a, _, _ = ids(snap)
    snap.callbacks[a]["state"], snap.callbacks[a]["result"] = "SCHEDULED", None
    assert "timeline" in checks_failing(snap)
    snap = consistent()
    a, _, _ = ids(snap)
    del snap.callbacks[a]["timeline"][1:3]  # SCHEDULED -> PROCESSING: forbidden
    assert "timeline" in checks_failing(snap)


def test_a_callback_waiting_for_nothing() -> None:
    snap = consistent()
    _, _, c = ids(snap)
    snap.callbacks[c]["dispatch_at"] = at(-60)  # due long ago, never taken
    assert checks_failing(snap) == {"waiting"}
    snap = consistent()
    del snap.callbacks[ids(snap)[2]]["dispatch_at"]  # SCHEDULED, nothing will emit it
    assert checks_failing(snap) == {"waiting"}


def test_a_processing_call_past_its_end_is_explained_only_by_a_killed_routing() -> None:
    from soak.audit import FaultRecord

    snap = consistent()
    _, _, c = ids(snap)
    snap.callbacks[c].update(state="PROCESSING", routing_seen_at=at(5))
    snap.callbacks[c]["timeline"] += [
        timeline_entry(at(3), s, "scheduler") for s in (S.QUEUED, S.ROUTING, S.PROCESSING)
    ]
    failing = [v for v in audit(snap) if v.check == "waiting"]
    assert len(failing) == 1 and "PROCESSING" in failing[0].message
    snap.faults.append(FaultRecord("kill:routing-sim", "routing-sim", at(20), at(22)))
    assert [v for v in audit(snap) if v.check == "waiting"] == []


def test_routing_reached_after_an_acknowledged_cancel() -> None:
    snap = consistent()
    _, b, _ = ids(snap)
    snap.due.append(
        Message(at(3), {"event_id": "x", "callback_id": b, "attempt": 1, "desired_time": "t"})
    )
    assert "acknowledged" in checks_failing(snap)


def test_routing_reached_between_a_reschedule_and_its_new_time() -> None:
    snap = consistent()
    _, _, c = ids(snap)
    snap.commands.append(CommandRecord("reschedule", c, at(10), 200, {"desired_time": at(600)}))
    assert audit(snap) == []
    snap.routing_events.append(routing_event(uuid.UUID(c), "QUEUED", 0, at(20)))
    assert "acknowledged" in checks_failing(snap)


def test_an_agent_connected_after_routing_answered_cancelled() -> None:
    snap = consistent()
    a, _, _ = ids(snap)
    snap.commands.append(CommandRecord("cancel", a, at(0.8), 202))
    snap.callbacks[a]["cancel_request"] = {"status": "REFUSED"}
    snap.routing_events.insert(0, routing_event(uuid.UUID(a), "CANCELLED", 9, at(0.9)))
    failing = [v for v in audit(snap) if v.check == "acknowledged"]
    assert any("connected an agent after" in v.message for v in failing)


def test_a_record_that_contradicts_routing() -> None:
    snap = consistent()
    a, _, _ = ids(snap)
    snap.callbacks[a]["result"] = "FAILED"
    snap.callbacks[a]["timeline"][-1]["result"] = "FAILED"
    assert "truth" in checks_failing(snap)


def test_changes_not_announced_and_announcements_that_did_not_happen() -> None:
    snap = consistent()
    a, _, c = ids(snap)
    snap.lifecycle = [m for m in snap.lifecycle if m.value["kind"] != "STATE_CHANGED"]
    failing = [v for v in audit(snap) if v.check == "announced"]
    assert failing and all(v.callback_id == a for v in failing)
    snap = consistent()
    a, _, c = ids(snap)
    doc = snap.callbacks[c]
    snap.lifecycle.append(
        lifecycle(doc, LifecycleEventKind.RESCHEDULED, at(5), previous_state=S.SCHEDULED)
    )
    assert checks_failing(snap) == {"announced"}
    snap = consistent()
    twice = copy.deepcopy(snap.lifecycle[0].value)
    twice["event_id"] = str(uuid.uuid4())  # the same change under another id
    snap.lifecycle.append(Message(at(0), twice))
    assert checks_failing(snap) == {"announced"}
    snap = consistent()
    a, _, _ = ids(snap)
    refused = lifecycle(
        snap.callbacks[a],
        LifecycleEventKind.CANCELLATION_REFUSED,
        at(9),
        previous_state=S.COMPLETED,
        actor="ann",
    )
    snap.lifecycle.append(refused)
    assert "announced" in checks_failing(snap)  # no cancel was refused
    snap.commands.append(CommandRecord("cancel", a, at(9), 409))
    assert "announced" not in checks_failing(snap)


def test_a_report_that_differs_from_the_events() -> None:
    snap = consistent()
    snap.report[0] = {**snap.report[0], "status": "REFUSED"}
    assert checks_failing(snap) == {"report"}
    snap.report = []
    assert checks_failing(snap) == {"report"}


def test_leaked_and_double_booked_slot_places() -> None:
    snap = consistent()
    _, b, _ = ids(snap)
    snap.slots[0]["holders"].append(uuid.UUID(b))  # the cancelled one kept its place
    assert checks_failing(snap) == {"slots"}
    snap = consistent()
    snap.slots[0].update(holders=[], taken=0)  # C holds none
    assert checks_failing(snap) == {"slots"}
    snap = consistent()
    snap.slots[0]["taken"] = 2  # a place taken by nobody
    assert checks_failing(snap) == {"slots"}


def test_a_throttle_counter_that_differs_from_the_creates() -> None:
    snap = consistent()
    snap.counters[0]["count"] = 4
    assert checks_failing(snap) == {"throttle"}


def test_open_callbacks_over_a_guard_and_a_count_below_them() -> None:
    snap = consistent()
    a, _, _ = ids(snap)
    snap.open_counts = [
        {"_id": f"service|{SERVICE}", "open": 1},
        {"_id": f"number|{SERVICE}|{NUMBER}", "open": 1},
    ]
    assert audit(snap) == []
    snap.callbacks[a]["state"] = "QUEUED"  # two open for one number under the strict check
    snap.callbacks[a]["timeline"] = snap.callbacks[a]["timeline"][:2]
    snap.callbacks[a]["result"] = None
    found = [v for v in audit(snap) if v.check == "open_counts"]
    assert {v.message for v in found} == {
        "more open callbacks for a number than the duplicate check allows",
        "a create guard counts fewer open callbacks than there are",
    }
    snap.services[SERVICE] = ServiceConfig.model_validate(
        {"name": SERVICE, "guards": {"duplicate_check": "off", "max_open_callbacks": 1}}
    )
    snap.open_counts = []
    assert [v.message for v in audit(snap) if v.check == "open_counts"] == [
        "more open callbacks in a service than its cap"
    ]


def test_anything_on_the_dead_letter_topic() -> None:
    snap = consistent()
    snap.dead_letters.append(Message(at(1), {"source_topic": "t", "reason": "unknown callback"}))
    assert checks_failing(snap) == {"dead_letter"}


@pytest.mark.parametrize(("slope", "growing"), [(0.0, False), (0.5, False), (6.0, True)])
def test_memory_growth_is_told_from_noise(slope: float, growing: bool) -> None:
    samples = [
        memory.Sample(t, "svc", 1, 100 + slope * t / 60 + (3 if t % 50 == 0 else 0))
        for t in range(0, 600, 5)
    ]
    found, unjudged = memory.trends(samples, judge_from=120)
    assert unjudged == [] and len(found) == 1
    assert found[0].growing is growing
