"""The invariant auditor: what MongoDB and every topic hold after a soak, checked against the
product's rules and against what the API acknowledged. Pure functions over a :class:`Snapshot`
(no I/O), so each check is unit-tested on hand-built inconsistent data.

Checks (each violation names its check, the callback and the evidence):

- ``timeline``: every callback's timeline is a path of the state machine from SCHEDULED, and
  ends in the record's state and result.
- ``waiting``: every callback not COMPLETED is legitimately waiting: due in the future, or
  within the bound of what it waits for (redispatch, reclaim, the cancel resend, a call's
  length; a call lost with a killed routing process is only flagged stalled: accepted).
- ``acknowledged``: nothing reached routing (a due callback, a routing event) after a cancel
  answered 200 (or a bulk CANCELLED), nor between a reschedule's 200 and its new time; after a
  cancel answered 202 (bulk REQUESTED), routing connected no agent after it answered CANCELLED,
  and the record ends COMPLETED(CANCELLED_BY_ADMIN) or shows the cancel refused.
- ``truth``: the record agrees with routing's own events: recorded cancelled or failed, never
  connected to an agent; recorded AGENT or ABANDONED_IN_QUEUE, routing says so.
- ``announced``: every change of the timeline was announced on the lifecycle topic, exactly
  once after de-duplication by event id, and nothing was announced that did not happen (a
  refused cancellation without a timeline entry only for a cancel answered 409, or unanswered).
- ``report``: the Cancellation Summary Report equals what the cancellation events imply.
- ``slots``: each slot's places are held by distinct scheduled callbacks of that slot, not
  cancelled; each scheduled callback holds one place, in its slot (none leaked, none double).
- ``throttle``: each daily request counter equals the callbacks created for that number, day
  and service.
- ``open_counts``: no customer number holds more open callbacks than its service's duplicate
  check allows, no service more than its open-callbacks cap, and no create guard's count is
  below the open callbacks it counts.
- ``dead_letter``: nothing was parked on the dead-letter topic.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from callback_admin_api.repository import OpenCount
from callback_admin_api.rules import OPEN_CALLBACKS_ALLOWED
from callback_exporter.report import ignore_reason, newest_per_entry, report_document
from callback_shared.documents import EVENT_NAMESPACE
from callback_shared.models import LifecycleEvent, ServiceConfig
from callback_shared.states import CallbackResult, CallbackState, is_allowed

from bench.harness import percentile

S, R = CallbackState, CallbackResult
Doc = dict[str, Any]

#: Clock granularity between processes of one machine (Kafka timestamps are milliseconds).
TICK = timedelta(milliseconds=5)


@dataclass(frozen=True)
class Message:
    """A record of a topic: its Kafka timestamp and its parsed JSON value."""

    at: datetime
    value: Doc


@dataclass(frozen=True)
class CommandRecord:
    """What the load generator sent and what the API answered (``status`` None: no answer)."""

    kind: str  # create, reschedule, cancel, bulk_cancel, recreate
    callback_id: str | None
    acked_at: datetime | None
    status: int | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FaultRecord:
    kind: str
    target: str
    at: datetime
    repaired_at: datetime | None


@dataclass(frozen=True)
class Bounds:
    """How long a callback may legitimately wait for each thing (the soak's settings)."""

    redispatch_after: timedelta
    lease: timedelta
    reclaim_interval: timedelta
    cancel_resend: timedelta
    #: longest call (handle time) and dial per service
    call_seconds: dict[str, float]
    slack: timedelta = timedelta(seconds=10)


@dataclass
class Snapshot:
    taken_at: datetime
    callbacks: dict[str, Doc]
    services: dict[str, ServiceConfig]
    slots: list[Doc]
    counters: list[Doc]
    report: list[Doc]
    lifecycle: list[Message]
    due: list[Message]
    routing_events: list[Message]
    dead_letters: list[Message]
    commands: list[CommandRecord]
    faults: list[FaultRecord]
    bounds: Bounds
    #: the create guards' counts (admin-api's ``open_counts``)
    open_counts: list[Doc] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    check: str
    callback_id: str | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "callback_id": self.callback_id,
            "message": self.message,
            "evidence": {k: _plain(v) for k, v in self.evidence.items()},
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def audit(snapshot: Snapshot) -> list[Violation]:
    found: list[Violation] = []
    for check in CHECKS:
        found += check(snapshot)
    return found


# --- helpers


def _by_callback(messages: list[Message]) -> dict[str, list[Message]]:
    grouped: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        grouped[str(message.value.get("callback_id"))].append(message)
    for group in grouped.values():
        group.sort(key=lambda m: m.at)
    return grouped


def _routing_kinds(events: list[Message]) -> list[str]:
    return [f"{m.value['kind']}#{m.value['attempt']}.{m.value['sequence']}" for m in events]


# --- timeline


def check_timeline(snap: Snapshot) -> list[Violation]:
    found = []
    for cid, doc in snap.callbacks.items():
        timeline = doc.get("timeline") or []
        path = [(e["state"], e.get("result")) for e in timeline]
        evidence = {"timeline": path, "state": doc["state"], "result": doc.get("result")}
        if not timeline or timeline[0]["state"] != S.SCHEDULED:
            found.append(Violation("timeline", cid, "does not start SCHEDULED", evidence))
            continue
        for (before, _), (after, result), entry in zip(path, path[1:], timeline[1:], strict=False):
            if before == after and after != S.COMPLETED:
                continue  # an entry that changes nothing (reschedule, cancel asked)
            if before == after == S.COMPLETED and (entry.get("note") or "").startswith(
                "cancel refused"
            ):
                continue  # routing's refusal settles a cancel of a completed callback
            if not is_allowed(S(before), S(after), R(result) if result else None):
                found.append(
                    Violation(
                        "timeline",
                        cid,
                        f"timeline moves {before} -> {after}({result}): not allowed",
                        evidence,
                    )
                )
                break
        last_state, last_result = path[-1]
        if (last_state, last_result) != (doc["state"], doc.get("result")):
            found.append(
                Violation(
                    "timeline",
                    cid,
                    f"record is {doc['state']}({doc.get('result')}) but its timeline ends "
                    f"{last_state}({last_result})",
                    evidence,
                )
            )
        elif (doc["state"] == S.COMPLETED) != (doc.get("result") is not None):
            found.append(Violation("timeline", cid, "a result iff COMPLETED", evidence))
    return found


# --- waiting


def check_waiting(snap: Snapshot) -> list[Violation]:
    found = []
    now, b = snap.taken_at, snap.bounds
    routing = _by_callback(snap.routing_events)
    routing_kills = [f.at for f in snap.faults if f.kind == "kill:routing-sim"]
    for cid, doc in snap.callbacks.items():
        state = doc["state"]
        if state == S.COMPLETED:
            continue
        config = snap.services.get(doc["service_name"]) or ServiceConfig(name=doc["service_name"])
        request = doc.get("cancel_request") or {}
        evidence: dict[str, Any] = {
            "state": state,
            "attempt": doc.get("attempt"),
            "dispatch_at": doc.get("dispatch_at"),
            "routing_seen_at": doc.get("routing_seen_at"),
            "cancel_request": request or None,
            "audited_at": now,
        }
        if request.get("status") == "PENDING":
            since = doc.get("cancel_pending_since")
            if since is None or now - since > b.cancel_resend + b.slack:
                found.append(
                    Violation("waiting", cid, "cancel asked of routing still unanswered", evidence)
                )
            continue
        if state == S.SCHEDULED:
            due = doc.get("dispatch_at")
            if due is None:
                found.append(
                    Violation("waiting", cid, "SCHEDULED with nothing to emit it", evidence)
                )
            elif now - due > b.redispatch_after + b.lease * 4 / 3 + b.slack:
                found.append(
                    Violation("waiting", cid, "due long ago and not taken by routing", evidence)
                )
            continue
        seen = doc.get("routing_seen_at")
        if seen is None:
            found.append(Violation("waiting", cid, f"{state} without a sign of life", evidence))
            continue
        if state in (S.QUEUED, S.ROUTING):
            bound = timedelta(seconds=config.routing_silence_seconds) + b.reclaim_interval
            if now - seen > bound + b.slack:
                found.append(
                    Violation("waiting", cid, f"{state}, silent past the reclaim bound", evidence)
                )
            continue
        # PROCESSING: a call lasts at most the profile's handle time
        call = timedelta(seconds=b.call_seconds.get(doc["service_name"], 0))
        if now - seen <= call + b.slack:
            continue
        ended = any(
            m.value["kind"] == "COMPLETED" and m.value["attempt"] == doc.get("attempt")
            for m in routing.get(cid, [])
        )
        lost = any(seen - b.slack <= kill <= now for kill in routing_kills)
        if ended or not lost:
            evidence["routing_events"] = _routing_kinds(routing.get(cid, []))
            found.append(
                Violation(
                    "waiting",
                    cid,
                    "PROCESSING past its call's end"
                    + (" although routing reported the end" if ended else ""),
                    evidence,
                )
            )
    return found


# --- what the API acknowledged


def _acknowledged(snap: Snapshot) -> list[tuple[str, str, datetime, dict[str, Any]]]:
    """(callback, outcome, ack time, detail): cancel outcomes CANCELLED (200) and REQUESTED
    (202), single or bulk, and RESCHEDULED (200) with the new desired time."""
    found = []
    for c in snap.commands:
        if c.acked_at is None:
            continue
        if c.kind == "cancel" and c.status in (200, 202) and c.callback_id:
            outcome = "CANCELLED" if c.status == 200 else "REQUESTED"
            found.append((c.callback_id, outcome, c.acked_at, c.detail))
        elif c.kind == "reschedule" and c.status == 200 and c.callback_id:
            found.append((c.callback_id, "RESCHEDULED", c.acked_at, c.detail))
        elif c.kind == "bulk_cancel" and c.status == 200:
            for cid, outcome in c.detail.get("items", []):
                if outcome in ("CANCELLED", "REQUESTED"):
                    found.append((cid, outcome, c.acked_at, {"bulk": c.detail.get("batch_id")}))
    return found


def check_acknowledged(snap: Snapshot) -> list[Violation]:
    found = []
    due = _by_callback(snap.due)
    routing = _by_callback(snap.routing_events)
    acks = sorted(_acknowledged(snap), key=lambda a: a[2])
    by_callback: dict[str, list[tuple[str, datetime, dict[str, Any]]]] = defaultdict(list)
    for cid, outcome, at, detail in acks:
        by_callback[cid].append((outcome, at, detail))
    for cid, acked in by_callback.items():
        doc = snap.callbacks.get(cid)
        events = routing.get(cid, [])
        emitted = due.get(cid, [])
        if doc is None:
            found.append(Violation("acknowledged", cid, "acknowledged, yet no record", {}))
            continue
        for n, (outcome, at, detail) in enumerate(acked):
            evidence = {
                "acknowledged": outcome,
                "acked_at": at,
                "due_emitted": [
                    (m.at, m.value["attempt"], m.value["desired_time"]) for m in emitted
                ],
                "routing_events": [(m.at, m.value["kind"], m.value["attempt"]) for m in events],
                "state": doc["state"],
                "result": doc.get("result"),
            }
            if outcome == "CANCELLED":
                late = [m for m in [*emitted, *events] if m.at > at + TICK]
                if late:
                    found.append(
                        Violation(
                            "acknowledged",
                            cid,
                            "reached routing after its cancel was answered 200",
                            {**evidence, "first_after": (late[0].at, late[0].value.get("kind"))},
                        )
                    )
                if (doc["state"], doc.get("result")) != (S.COMPLETED, R.CANCELLED_BY_ADMIN):
                    found.append(
                        Violation(
                            "acknowledged", cid, "cancelled (200) but not recorded so", evidence
                        )
                    )
            elif outcome == "RESCHEDULED":
                desired = detail["desired_time"]
                later = [a for a in acked[n + 1 :] if a[0] in ("RESCHEDULED", "CANCELLED")]
                until = min(desired, later[0][1]) if later else desired
                early = [m for m in [*emitted, *events] if at + TICK < m.at < until - TICK]
                if early:
                    found.append(
                        Violation(
                            "acknowledged",
                            cid,
                            "reached routing after its reschedule was answered 200, before its "
                            "new desired time",
                            {**evidence, "new_desired_time": desired, "until": until},
                        )
                    )
            else:  # REQUESTED: routing settles it
                answers = [m for m in events if m.value["kind"] == "CANCELLED" and m.at > at - TICK]
                if answers:
                    connected = [
                        m
                        for m in events
                        if m.value["kind"] == "PROCESSING" and m.at > answers[0].at
                    ]
                    if connected:
                        found.append(
                            Violation(
                                "acknowledged",
                                cid,
                                "routing connected an agent after it answered CANCELLED",
                                evidence,
                            )
                        )
                request = doc.get("cancel_request") or {}
                status = request.get("status")
                if status is None:
                    found.append(
                        Violation(
                            "acknowledged",
                            cid,
                            "cancel answered 202, no cancel on record",
                            evidence,
                        )
                    )
                elif status == "CANCELLED" and doc.get("result") != R.CANCELLED_BY_ADMIN:
                    found.append(
                        Violation(
                            "acknowledged", cid, "cancel answered CANCELLED, record not", evidence
                        )
                    )
                elif status == "REFUSED" and doc.get("result") == R.CANCELLED_BY_ADMIN:
                    found.append(
                        Violation(
                            "acknowledged", cid, "cancel refused, yet recorded cancelled", evidence
                        )
                    )
    return found


# --- the record agrees with routing


def check_truth(snap: Snapshot) -> list[Violation]:
    found = []
    routing = _by_callback(snap.routing_events)
    for cid, doc in snap.callbacks.items():
        events = routing.get(cid, [])
        kinds = {m.value["kind"] for m in events}
        result = doc.get("result")
        evidence = {
            "state": doc["state"],
            "result": result,
            "attempt": doc.get("attempt"),
            "routing_events": _routing_kinds(events),
        }
        if "PROCESSING" in kinds and (doc["state"] != S.PROCESSING and result != R.AGENT):
            found.append(
                Violation(
                    "truth",
                    cid,
                    f"routing connected it to an agent, the record says {doc['state']}({result})",
                    evidence,
                )
            )
        if result == R.AGENT and "COMPLETED" not in kinds:
            found.append(
                Violation("truth", cid, "recorded AGENT, routing never completed a call", evidence)
            )
        if result == R.ABANDONED_IN_QUEUE and "ABANDONED_IN_QUEUE" not in kinds:
            found.append(
                Violation("truth", cid, "recorded ABANDONED_IN_QUEUE, routing says not", evidence)
            )
    return found


# --- lifecycle announcements


def _expected_announcements(doc: Doc) -> tuple[set[UUID], Counter[tuple[str, str, str | None]]]:
    """From the timeline: the exact ids of the announcements of routing's changes, and the
    (kind, state, result) of the others."""
    exact: set[UUID] = set()
    others: Counter[tuple[str, str, str | None]] = Counter()
    for n, entry in enumerate(doc.get("timeline") or []):
        source, note = entry.get("source"), entry.get("note") or ""
        state, result = entry["state"], entry.get("result")
        if n == 0:
            kind = "RECREATED" if doc.get("recreated_from") else "CREATED"
            others[(kind, S.SCHEDULED, None)] += 1
        elif source == "routing" and entry.get("event_id") is not None:
            exact.add(uuid5(EVENT_NAMESPACE, f"lifecycle:{entry['event_id']}"))
        elif result == R.CANCELLED_BY_ADMIN:
            others[("CANCELLED", S.COMPLETED, R.CANCELLED_BY_ADMIN)] += 1
        elif source == "admin-api" and note.startswith("rescheduled"):
            others[("RESCHEDULED", S.SCHEDULED, None)] += 1
        elif source == "admin-api" and note.startswith("cancel asked of routing"):
            others[("CANCEL_REQUESTED", state, None)] += 1
        else:
            others[("STATE_CHANGED", state, result)] += 1
    return exact, others


def check_announced(snap: Snapshot) -> list[Violation]:
    found = []
    lifecycle = _by_callback(snap.lifecycle)
    refusable: Counter[str] = Counter()  # cancels that may have been refused at once
    for c in snap.commands:
        if c.kind == "cancel" and c.callback_id and c.status in (409, None):
            refusable[c.callback_id] += 1
        elif c.kind == "bulk_cancel":
            for cid, outcome in c.detail.get("items", []):
                refusable[cid] += outcome == "REFUSED"
            if c.status is None or c.detail.get("truncated"):
                refusable["*"] += 1_000_000  # its outcomes are unknown
    for cid in set(snap.callbacks) | set(lifecycle):
        doc = snap.callbacks.get(cid)
        messages = lifecycle.get(cid, [])
        if doc is None:
            found.append(
                Violation(
                    "announced",
                    cid,
                    "announced, yet no such callback",
                    {"kinds": [m.value["kind"] for m in messages]},
                )
            )
            continue
        unique: dict[str, Doc] = {}
        for m in messages:
            kept = unique.setdefault(m.value["event_id"], m.value)
            if kept != m.value:
                found.append(
                    Violation(
                        "announced",
                        cid,
                        "one event id announced two different things",
                        {"first": kept, "second": m.value},
                    )
                )
        exact, others = _expected_announcements(doc)
        evidence = {
            "timeline": [
                (e["state"], e.get("result"), e.get("source"), e.get("note"))
                for e in doc.get("timeline") or []
            ],
            "announced": [(e["kind"], e["state"], e.get("result")) for e in unique.values()],
        }
        for event_id in exact:
            if str(event_id) not in unique:
                found.append(
                    Violation(
                        "announced",
                        cid,
                        "a change routing made was not announced",
                        {**evidence, "missing_event_id": event_id},
                    )
                )
        actual: Counter[tuple[str, str, str | None]] = Counter(
            (e["kind"], e["state"], e.get("result"))
            for event_id, e in unique.items()
            if UUID(event_id) not in exact
        )
        refused_at_once = sum(n for key, n in actual.items() if key[0] == "CANCELLATION_REFUSED")
        for key in [k for k in actual if k[0] == "CANCELLATION_REFUSED"]:
            del actual[key]
        missing, extra = others - actual, actual - others
        if missing:
            found.append(
                Violation(
                    "announced",
                    cid,
                    "changes not announced",
                    {**evidence, "missing": sorted(map(str, missing.elements()))},
                )
            )
        if extra:
            found.append(
                Violation(
                    "announced",
                    cid,
                    "announced, yet not in the record (or announced twice)",
                    {**evidence, "extra": sorted(map(str, extra.elements()))},
                )
            )
        if refused_at_once > refusable[cid] + refusable["*"]:
            found.append(
                Violation(
                    "announced",
                    cid,
                    f"{refused_at_once} refused cancellations announced for "
                    f"{refusable[cid]} cancels refused or unanswered",
                    evidence,
                )
            )
    return found


# --- the Cancellation Summary Report


def check_report(snap: Snapshot) -> list[Violation]:
    events: dict[str, Doc] = {}
    for m in snap.lifecycle:
        events.setdefault(m.value["event_id"], m.value)
    parsed = [LifecycleEvent.model_validate(value) for value in events.values()]
    retention = timedelta(days=14)
    reportable = [e for e in parsed if ignore_reason(e, retention, snap.taken_at) is None]
    expected = {
        str(doc["_id"]): doc
        for doc in (report_document(e, retention) for e in newest_per_entry(reportable))
    }
    actual = {str(doc["_id"]): doc for doc in snap.report}
    found = []
    compared = ("status", "event_id", "version", "actor")
    for key in expected.keys() | actual.keys():
        want, got = expected.get(key), actual.get(key)
        cid = str((want or got or {}).get("callback_id"))
        if want is None:
            found.append(Violation("report", cid, "report entry no event implies", {"entry": got}))
        elif got is None:
            found.append(
                Violation(
                    "report",
                    cid,
                    "cancellation event missing from the report",
                    {"expected": {k: want[k] for k in compared}},
                )
            )
        elif any(str(want[k]) != str(got.get(k)) for k in compared):
            found.append(
                Violation(
                    "report",
                    cid,
                    "report entry differs from the newest event",
                    {
                        "expected": {k: want[k] for k in compared},
                        "actual": {k: got.get(k) for k in compared},
                    },
                )
            )
    return found


# --- slots and daily throttle counters


def _slot_key(service: str, start: datetime) -> str:
    from datetime import UTC

    return f"{service}|{start.astimezone(UTC).isoformat()}"


def _holds_place(doc: Doc) -> bool:
    """A scheduled callback keeps its place unless cancelled (outright, or asked of routing)."""
    return (
        doc["type"] == "SCHEDULED"
        and not doc.get("cancel_request")
        and doc.get("result") != R.CANCELLED_BY_ADMIN
    )


def check_slots(snap: Snapshot) -> list[Violation]:
    found = []
    held_by: dict[str, list[str]] = defaultdict(list)
    for slot in snap.slots:
        sid = str(slot["_id"])
        holders = [str(h) for h in slot.get("holders", [])]
        evidence = {"slot": sid, "taken": slot.get("taken"), "holders": holders}
        if slot.get("taken") != len(holders) or len(set(holders)) != len(holders):
            found.append(Violation("slots", None, "places taken != distinct holders", evidence))
        config = snap.services.get(slot.get("service_name", ""))
        if config is not None and len(holders) > config.slot_capacity:
            found.append(Violation("slots", None, "more places held than the capacity", evidence))
        for holder in holders:
            held_by[holder].append(sid)
            doc = snap.callbacks.get(holder)
            if doc is None:
                found.append(Violation("slots", holder, "place held by no callback", evidence))
            elif _slot_key(doc["service_name"], doc["desired_time"]) != sid:
                found.append(
                    Violation(
                        "slots",
                        holder,
                        "place held in a slot that is not the callback's",
                        {**evidence, "desired_time": doc["desired_time"]},
                    )
                )
            elif not _holds_place(doc):
                found.append(
                    Violation(
                        "slots",
                        holder,
                        "place still held by a cancelled callback",
                        {
                            **evidence,
                            "result": doc.get("result"),
                            "cancel": doc.get("cancel_request"),
                        },
                    )
                )
    for cid, doc in snap.callbacks.items():
        if _holds_place(doc) and not held_by.get(cid):
            found.append(
                Violation(
                    "slots",
                    cid,
                    "scheduled callback holds no place in its slot",
                    {"slot": _slot_key(doc["service_name"], doc["desired_time"])},
                )
            )
        if len(held_by.get(cid, [])) > 1:
            found.append(
                Violation("slots", cid, "callback holds several places", {"slots": held_by[cid]})
            )
    return found


def check_throttle(snap: Snapshot) -> list[Violation]:
    created: Counter[str] = Counter()
    for doc in snap.callbacks.values():
        config = snap.services.get(doc["service_name"]) or ServiceConfig(name=doc["service_name"])
        if config.guards.max_requests_per_number_per_day is None:
            continue
        day = doc["created_at"].astimezone(config.zone).date()
        created[f"{doc['service_name']}|{doc['customer_number']}|{day.isoformat()}"] += 1
    counted = {str(c["_id"]): int(c.get("count", 0)) for c in snap.counters}
    found = []
    for key in created.keys() | counted.keys():
        if created[key] != counted.get(key, 0):
            found.append(
                Violation(
                    "throttle",
                    None,
                    "daily request counter differs from the callbacks created",
                    {"counter": key, "counted": counted.get(key, 0), "created": created[key]},
                )
            )
    return found


def check_open_counts(snap: Snapshot) -> list[Violation]:
    open_of: Counter[str] = Counter()
    for doc in snap.callbacks.values():
        if doc["state"] != S.COMPLETED:
            for number in (None, doc["customer_number"]):
                open_of[OpenCount(doc["service_name"], number, 0).key] += 1
    found = []
    for key, held in sorted(open_of.items()):
        kind, service = key.split("|")[:2]
        guards = (snap.services.get(service) or ServiceConfig(name=service)).guards
        if kind == "number":
            limit = OPEN_CALLBACKS_ALLOWED[guards.duplicate_check]
            message = "more open callbacks for a number than the duplicate check allows"
        else:
            limit = guards.max_open_callbacks
            message = "more open callbacks in a service than its cap"
        if limit is not None and held > limit:
            found.append(Violation("open_counts", None, message, {"count": key, "open": held}))
    for count in snap.open_counts:
        key = str(count["_id"])
        if count["open"] < open_of[key]:
            found.append(
                Violation(
                    "open_counts",
                    None,
                    "a create guard counts fewer open callbacks than there are",
                    {"count": key, "counted": count["open"], "open": open_of[key]},
                )
            )
    return found


def check_dead_letters(snap: Snapshot) -> list[Violation]:
    return [
        Violation(
            "dead_letter",
            None,
            "a message was parked on the dead-letter topic",
            {k: m.value.get(k) for k in ("source_topic", "reason", "key")},
        )
        for m in snap.dead_letters
    ]


CHECKS = [
    check_timeline,
    check_waiting,
    check_acknowledged,
    check_truth,
    check_announced,
    check_report,
    check_slots,
    check_throttle,
    check_open_counts,
    check_dead_letters,
]


# --- figures


def lateness_ms(due: list[Message]) -> list[tuple[datetime, float]]:
    """(due time, emit time minus due time) of each first attempt's first emission."""
    first: dict[str, Message] = {}
    for m in sorted(due, key=lambda m: m.at):
        if m.value.get("attempt") == 1:
            first.setdefault(m.value["event_id"], m)
    found = []
    for m in first.values():
        desired = datetime.fromisoformat(m.value["desired_time"])
        found.append((desired, max(0.0, (m.at - desired).total_seconds() * 1000)))
    return found


def p99(values: list[float]) -> float:
    return percentile(values, 99) if values else 0.0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
