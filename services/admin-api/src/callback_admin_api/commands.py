"""The commands of the guide: create/schedule, reschedule, cancel, recreate; service settings.

Each command that changes a callback writes the lifecycle event announcing it into the
document's outbox in the same single-document update, then publishes it, waiting at most
``ADMIN_PUBLISH_TIMEOUT_SECONDS`` (:func:`publish`); if Kafka is slow or down, the relay loop
publishes it later and the command still answers at once. A conditional filter on the state
makes a racing change win or lose cleanly: a change is never applied over one the command did
not see.

A cancel of a callback that routing may hold (the scheduler may have emitted it: due, or
QUEUED, ROUTING) cannot be carried out here: it is asked of routing (a CANCEL command on the
routing-commands topic, in the same outbox) and the record shows it pending until routing
answers (the state-tracker applies the answer). Only a callback not yet due is cancelled
outright (:func:`cancel_one`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4

import structlog
from callback_shared.documents import (
    CANCEL_PENDING_SINCE,
    CANCEL_REQUEST,
    CANCELLED_IN_BATCH,
    DISPATCH_FIELDS,
    DISPATCH_MARGIN,
    cancel_pending,
    lifecycle_event,
    new_callback_document,
    not_yet_due,
    routing_command,
    timeline_entry,
)
from callback_shared.models import (
    CallbackType,
    CancelRequest,
    CancelRequestStatus,
    CreateCallback,
    ImmediateOutsideOfficeHours,
    LifecycleEventKind,
    RoutingCommandKind,
    ServiceConfig,
    expire_at,
)
from callback_shared.mongo import Document
from callback_shared.outbox import OUTBOX, OUTBOX_SINCE, outbox_entry, with_outbox
from callback_shared.states import (
    CallbackResult,
    CallbackState,
    ForbiddenTransition,
    check_transition,
)

from callback_admin_api.auth import Principal
from callback_admin_api.context import AdminApi, spawn_task
from callback_admin_api.numbers import InvalidNumber, normalise_customer_number
from callback_admin_api.problems import (
    Conflict,
    Forbidden,
    InvalidField,
    NotFound,
    TooManyRequests,
)
from callback_admin_api.rules import OPEN_CALLBACKS_ALLOWED, keeps_name_recording
from callback_admin_api.schedule import is_open, is_slot_start, local_date, next_local_midnight
from callback_admin_api.views import RecreateCallback

SOURCE = "admin-api"
#: Attempts at a conditional update before a command gives up on a callback that keeps changing.
UPDATE_ATTEMPTS = 3

log = structlog.get_logger("admin-api")


def require_service(principal: Principal, service_name: str) -> None:
    if not principal.grants(service_name):
        raise Forbidden(f"service {service_name!r} is not granted to you")


async def load_callback(api: AdminApi, principal: Principal, callback_id: UUID) -> Document:
    """The callback, if it exists in a service granted to the caller: otherwise the same 404,
    so nobody learns whether a record exists in a service they do not see."""
    doc = await api.repository.get(callback_id)
    if doc is None or not principal.grants(doc["service_name"]):
        raise NotFound("no such callback among your services")
    return doc


async def publish(api: AdminApi, *docs: Document) -> None:
    """Publish the documents' outboxes, waiting at most ``admin_publish_timeout_seconds``: a
    command's answer never waits for Kafka. What is not acknowledged by then goes on in the
    background; if it fails, the relay loop publishes it later (the change is stored)."""
    flush = spawn_task(_flush(api, docs), "publish-outbox")
    await asyncio.wait([flush], timeout=api.settings.admin_publish_timeout_seconds)


async def _flush(api: AdminApi, docs: tuple[Document, ...]) -> None:
    try:
        await api.relay.flush(docs)
    except Exception:
        log.warning("events left for the outbox relay", count=len(docs), exc_info=True)


# --- create, schedule, recreate ------------------------------------------------------------------


@dataclass(frozen=True)
class NewCallback:
    service_name: str
    customer_number: str  # E.164
    type: CallbackType
    desired_time: datetime | None
    priority: int
    name_recording_uri: str | None
    recreated_from: UUID | None = None


async def create_callback(api: AdminApi, principal: Principal, command: CreateCallback) -> Document:
    require_service(principal, command.service_name)
    config, _ = await api.repository.service_config(command.service_name)
    try:
        number = normalise_customer_number(
            command.customer_number,
            config.default_country,
            refuse_premium=config.guards.refuse_premium_rate,
        )
    except InvalidNumber as exc:
        raise InvalidField("customer_number", str(exc)) from None
    new = NewCallback(
        service_name=command.service_name,
        customer_number=number,
        type=command.type,
        desired_time=command.desired_time,
        priority=command.priority,
        name_recording_uri=command.name_recording_uri,
    )
    return await _admit(api, principal, config, new)


async def recreate_callback(
    api: AdminApi, principal: Principal, callback_id: UUID, body: RecreateCallback
) -> Document:
    original = await load_callback(api, principal, callback_id)
    if original["state"] != CallbackState.COMPLETED:
        raise Conflict(
            f"only a COMPLETED callback can be recreated; this one is {original['state']}",
            state=original["state"],
        )
    config, _ = await api.repository.service_config(original["service_name"])
    now = api.clock()
    kept = keeps_name_recording(original, now)
    new = NewCallback(
        service_name=original["service_name"],
        customer_number=original["customer_number"],
        type=body.type,
        desired_time=body.desired_time,
        priority=original.get("priority", 0) if body.priority is None else body.priority,
        name_recording_uri=original.get("name_recording_uri") if kept else None,
        recreated_from=original["_id"],
    )
    return await _admit(api, principal, config, new)


async def _admit(
    api: AdminApi, principal: Principal, config: ServiceConfig, new: NewCallback
) -> Document:
    """Every request guard, then the record: places and counters taken atomically, given back
    if a later step fails."""
    repo = api.repository
    now = api.clock()
    desired = _desired_time(config, new.type, new.desired_time, now)
    await _check_duplicates(api, config, new.customer_number)
    await _check_open_callbacks(api, config)
    day = local_date(config, now)
    daily_cap = config.guards.max_requests_per_number_per_day
    if daily_cap is not None:
        midnight = next_local_midnight(config, now)
        counted = await repo.count_request(
            config.name, new.customer_number, day, daily_cap, midnight + timedelta(days=1)
        )
        if not counted:
            raise TooManyRequests(
                f"customer number {new.customer_number} reached today's {daily_cap} requests "
                f"in service {config.name!r}",
                retry_after_seconds=int((midnight - now).total_seconds()),
            )
    callback_id = uuid4()
    slot_taken = False
    try:
        if new.type is CallbackType.SCHEDULED:
            slot_taken = await repo.take_slot(
                config.name, desired, config.slot_capacity, callback_id
            )
            if not slot_taken:
                raise Conflict(f"desired_time: the slot at {desired.isoformat()} is full")
        doc = new_callback_document(
            callback_id=callback_id,
            service_name=config.name,
            customer_number=new.customer_number,
            type=new.type,
            desired_time=desired,
            now=now,
            priority=new.priority,
            name_recording_uri=new.name_recording_uri,
            created_by=principal.username,
            recreated_from=new.recreated_from,
        )
        if new.recreated_from is not None:
            kind, reason = LifecycleEventKind.RECREATED, f"recreated from {new.recreated_from}"
        else:
            kind, reason = LifecycleEventKind.CREATED, None
        event = lifecycle_event(doc, kind, occurred_at=now, actor=principal.username, reason=reason)
        doc[OUTBOX] = [outbox_entry(api.lifecycle_topic, event)]
        doc[OUTBOX_SINCE] = now
        await repo.insert(doc)
    except BaseException:
        if slot_taken:
            await repo.release_slot(config.name, desired, callback_id)
        if daily_cap is not None:
            await repo.uncount_request(config.name, new.customer_number, day)
        raise
    await publish(api, doc)
    return doc


def _desired_time(
    config: ServiceConfig, type_: CallbackType, desired: datetime | None, now: datetime
) -> datetime:
    if type_ is CallbackType.IMMEDIATE:
        if desired is not None:
            raise InvalidField("desired_time", "must be left out for an IMMEDIATE callback")
        refuse = config.guards.immediate_outside_office_hours is ImmediateOutsideOfficeHours.REFUSE
        if refuse and not is_open(config, now):
            raise InvalidField(
                "type",
                f"service {config.name!r} is outside office hours or closed today: immediate "
                "callbacks are refused now; schedule one in an available slot",
            )
        return now
    if desired is None:
        raise InvalidField("desired_time", "required for a SCHEDULED callback")
    check_scheduled_time(config, desired, now)
    return desired


def check_scheduled_time(config: ServiceConfig, desired: datetime, now: datetime) -> None:
    """A scheduled time must be a future slot start within the service's horizon."""
    if desired <= now:
        raise InvalidField("desired_time", "must be in the future")
    if desired > now + timedelta(days=config.schedule_horizon_days):
        raise InvalidField(
            "desired_time", f"must be at most {config.schedule_horizon_days} days ahead"
        )
    if not is_slot_start(config, desired):
        raise InvalidField(
            "desired_time",
            "is not the start of an open slot (outside office hours, a closed date, or not on "
            f"a slot boundary); see GET /api/v1/services/{config.name}/availability",
        )


async def _check_duplicates(api: AdminApi, config: ServiceConfig, customer_number: str) -> None:
    allowed = OPEN_CALLBACKS_ALLOWED[config.guards.duplicate_check]
    if allowed is None:
        return
    open_ids = await api.repository.open_callbacks_of_number(config.name, customer_number, allowed)
    if len(open_ids) >= allowed:
        shown = ", ".join(str(callback_id) for callback_id in open_ids)
        raise Conflict(
            f"customer number {customer_number} already has {len(open_ids)} open callback(s) "
            f"in service {config.name!r}: {shown}",
            open_callback_ids=[str(callback_id) for callback_id in open_ids],
        )


async def _check_open_callbacks(api: AdminApi, config: ServiceConfig) -> None:
    cap = config.guards.max_open_callbacks
    if cap is not None and await api.repository.count_open(config.name, cap) >= cap:
        raise TooManyRequests(
            f"service {config.name!r} already holds {cap} open callbacks, the most it accepts",
            retry_after_seconds=60,
        )


# --- reschedule, cancel ------------------------------------------------------------------------


async def reschedule_callback(
    api: AdminApi, principal: Principal, callback_id: UUID, desired: datetime
) -> Document:
    repo = api.repository
    doc = await load_callback(api, principal, callback_id)
    now = api.clock()
    if not not_yet_due(doc, now):
        raise Conflict(
            "only a SCHEDULED callback not yet due (dispatched) can be rescheduled; this one is "
            f"{doc['state']}",
            state=doc["state"],
        )
    if desired == doc["desired_time"]:
        raise InvalidField("desired_time", "is already the callback's desired time")
    config, _ = await repo.service_config(doc["service_name"])
    check_scheduled_time(config, desired, now)
    if not await repo.take_slot(config.name, desired, config.slot_capacity, callback_id):
        raise Conflict(f"desired_time: the slot at {desired.isoformat()} is full")
    previous = doc["desired_time"]
    note = f"rescheduled from {previous.isoformat()} to {desired.isoformat()}"
    event = lifecycle_event(
        {**doc, "desired_time": desired},
        LifecycleEventKind.RESCHEDULED,
        occurred_at=now,
        previous_state=CallbackState.SCHEDULED,
        actor=principal.username,
        reason=note,
    )
    update = {
        "$set": {
            "desired_time": desired,
            "dispatch_at": desired,
            "expire_at": expire_at(desired),
            "updated_at": now,
        },
        "$push": {
            "timeline": timeline_entry(
                now, CallbackState.SCHEDULED, SOURCE, actor=principal.username, note=note
            )
        },
    }
    updated = await repo.update(
        {
            "_id": callback_id,
            "state": CallbackState.SCHEDULED.value,
            "dispatch_at": {"$gt": now + DISPATCH_MARGIN},
            "desired_time": previous,
        },
        with_outbox(update, [outbox_entry(api.lifecycle_topic, event)]),
    )
    if updated is None:
        await repo.release_slot(config.name, desired, callback_id)
        raise Conflict("the callback was dispatched or changed meanwhile; reload it")
    await repo.release_slot(config.name, previous, callback_id)
    await publish(api, updated)
    return updated


class CancelOutcome(StrEnum):
    CANCELLED = "CANCELLED"
    #: asked of routing, which may hold it: the record shows the cancel pending until routing
    #: answers (cancelled, or refused once an agent was reached)
    REQUESTED = "REQUESTED"
    #: not cancellable (PROCESSING, COMPLETED): announced as a refused cancellation
    REFUSED = "REFUSED"
    #: gone (the retention deleted it) while being cancelled
    NOT_FOUND = "NOT_FOUND"
    #: its state kept changing under the conditional update: left as it is, not announced
    CHANGING = "CHANGING"


@dataclass(frozen=True)
class Cancellation:
    outcome: CancelOutcome
    #: the document after the cancel, or as last seen
    doc: Document | None
    #: the state it was cancelled or refused in
    state: CallbackState | None


async def cancel_callback(
    api: AdminApi, principal: Principal, callback_id: UUID
) -> tuple[Document, CancelOutcome]:
    """COMPLETED(CANCELLED_BY_ADMIN) when not yet due; asked of routing (REQUESTED) when routing
    may hold it; refused when PROCESSING or COMPLETED (409, announced as a refused
    cancellation)."""
    doc = await load_callback(api, principal, callback_id)
    done = await cancel_one(api, principal, doc)
    if done.outcome in (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED) and done.doc is not None:
        return done.doc, done.outcome
    if done.outcome is CancelOutcome.REFUSED:
        raise Conflict(f"a {done.state} callback cannot be cancelled", state=done.state)
    if done.outcome is CancelOutcome.NOT_FOUND:
        raise NotFound("no such callback among your services")
    raise Conflict("the callback kept changing state while being cancelled; try again")


def cancellation_update(principal: Principal, now: datetime, batch_id: UUID | None) -> Document:
    """What cancelling a callback writes (the same for every callback of a bulk cancel batch)."""
    update: Document = {
        "$set": {
            "state": CallbackState.COMPLETED.value,
            "result": CallbackResult.CANCELLED_BY_ADMIN.value,
            "updated_at": now,
            "completed_at": now,
        },
        # the scheduler must never emit a cancelled callback (nor emit it again)
        "$unset": dict.fromkeys(DISPATCH_FIELDS, ""),
        "$push": {
            "timeline": timeline_entry(
                now,
                CallbackState.COMPLETED,
                SOURCE,
                result=CallbackResult.CANCELLED_BY_ADMIN,
                actor=principal.username,
                note="cancelled" if batch_id is None else f"cancelled in batch {batch_id}",
            )
        },
    }
    if batch_id is not None:
        update["$set"][CANCELLED_IN_BATCH] = batch_id
    return update


def cancelled_event(
    api: AdminApi, principal: Principal, doc: Document, now: datetime, batch_id: UUID | None
) -> Document:
    """The outbox entry of the CANCELLED event of ``doc``, seen in a cancellable state."""
    event = lifecycle_event(
        {**doc, "state": CallbackState.COMPLETED, "result": CallbackResult.CANCELLED_BY_ADMIN},
        LifecycleEventKind.CANCELLED,
        occurred_at=now,
        previous_state=CallbackState(doc["state"]),
        actor=principal.username,
        batch_id=batch_id,
    )
    return outbox_entry(api.lifecycle_topic, event)


def not_yet_due_filter(now: datetime) -> Document:
    """The part of a filter that matches only a callback the scheduler cannot have emitted yet
    (:func:`~callback_shared.documents.not_yet_due`)."""
    return {"state": CallbackState.SCHEDULED.value, "dispatch_at": {"$gt": now + DISPATCH_MARGIN}}


def cancellation(
    api: AdminApi, principal: Principal, doc: Document, now: datetime, batch_id: UUID | None
) -> tuple[Document, Document]:
    """The conditional update that cancels ``doc`` outright while it is not yet due, with its
    CANCELLED event in the outbox: (filter, update)."""
    update = cancellation_update(principal, now, batch_id)
    filter_ = {"_id": doc["_id"], **not_yet_due_filter(now)}
    return filter_, with_outbox(update, [cancelled_event(api, principal, doc, now, batch_id)])


def cancel_request(
    api: AdminApi, principal: Principal, doc: Document, now: datetime, batch_id: UUID | None
) -> tuple[Document, Document]:
    """The conditional update that asks routing to cancel ``doc`` (seen due, QUEUED or
    ROUTING, no cancel pending): the record's pending cancel request, a timeline entry, and in
    the outbox the CANCEL command to routing and the CANCEL_REQUESTED event. The scheduler no
    longer emits it (``dispatch_at`` unset). (filter, update)."""
    state = CallbackState(doc["state"])
    request = CancelRequest(
        requested_at=now,
        actor=principal.username,
        batch_id=batch_id,
        state=state,
        status=CancelRequestStatus.PENDING,
    )
    note = "cancel asked of routing" + (f" in batch {batch_id}" if batch_id else "")
    update: Document = {
        "$set": {
            CANCEL_REQUEST: request.model_dump(mode="python"),
            CANCEL_PENDING_SINCE: now,
            "updated_at": now,
        },
        "$unset": dict.fromkeys(DISPATCH_FIELDS, ""),
        "$push": {
            "timeline": timeline_entry(now, state, SOURCE, actor=principal.username, note=note)
        },
    }
    command = routing_command(
        doc, RoutingCommandKind.CANCEL, reason="cancelled by an administrator"
    )
    requested = lifecycle_event(
        doc,
        LifecycleEventKind.CANCEL_REQUESTED,
        occurred_at=now,
        previous_state=state,
        actor=principal.username,
        batch_id=batch_id,
    )
    filter_ = {
        "_id": doc["_id"],
        "state": state.value,
        f"{CANCEL_REQUEST}.status": {"$ne": CancelRequestStatus.PENDING.value},
    }
    entries = [
        outbox_entry(api.routing_commands_topic, command),
        outbox_entry(api.lifecycle_topic, requested),
    ]
    return filter_, with_outbox(update, entries)


async def cancel_one(
    api: AdminApi,
    principal: Principal,
    doc: Document,
    *,
    batch_id: UUID | None = None,
    deferred: bool = False,
) -> Cancellation:
    """The one place a callback is cancelled (single and bulk cancel), by a conditional update
    on what was seen: not yet due, it is cancelled outright (its CANCELLED event in the
    outbox); routing may hold it (due, QUEUED, ROUTING), it is asked of routing
    (:func:`cancel_request`: REQUESTED; a cancel already pending is not asked again); a callback
    not in :data:`CANCELLABLE_STATES` gets a CANCELLATION_REFUSED event instead. A state that
    changed meanwhile is decided again. ``deferred``: the caller gives back the slot place and
    publishes the returned document's outbox itself (bulk cancel, by batch). The caller checked
    the grant."""
    repo = api.repository
    for _ in range(UPDATE_ATTEMPTS):
        state = CallbackState(doc["state"])
        now = api.clock()
        try:
            check_transition(state, CallbackState.COMPLETED, CallbackResult.CANCELLED_BY_ADMIN)
        except ForbiddenTransition:
            refused = await _refuse_cancellation(api, principal, doc, now, batch_id)
            if refused is not None and not deferred:
                await publish(api, refused)
            return Cancellation(CancelOutcome.REFUSED, refused or doc, state)
        if cancel_pending(doc):
            return Cancellation(CancelOutcome.REQUESTED, doc, state)
        if not_yet_due(doc, now):
            outcome = CancelOutcome.CANCELLED
            filter_, update = cancellation(api, principal, doc, now, batch_id)
        else:
            outcome = CancelOutcome.REQUESTED
            filter_, update = cancel_request(api, principal, doc, now, batch_id)
        updated = await repo.update(filter_, update)
        if updated is None:
            # its state changed meanwhile: decide again on the new state
            fresh = await repo.get(doc["_id"])
            if fresh is None:
                return Cancellation(CancelOutcome.NOT_FOUND, None, None)
            doc = fresh
            continue
        if not deferred:
            await repo.release_slot(doc["service_name"], doc["desired_time"], doc["_id"])
            await publish(api, updated)
        return Cancellation(outcome, updated, state)
    return Cancellation(CancelOutcome.CHANGING, doc, CallbackState(doc["state"]))


async def _refuse_cancellation(
    api: AdminApi,
    principal: Principal,
    doc: Document,
    now: datetime,
    batch_id: UUID | None = None,
) -> Document | None:
    """Announce the refusal through the outbox (unless the state changed meanwhile); the
    document with the event in its outbox."""
    event = lifecycle_event(
        doc,
        LifecycleEventKind.CANCELLATION_REFUSED,
        occurred_at=now,
        previous_state=CallbackState(doc["state"]),
        actor=principal.username,
        batch_id=batch_id,
        reason=str(doc["state"]),
    )
    return await api.repository.update(
        {"_id": doc["_id"], "state": doc["state"]},
        with_outbox({}, [outbox_entry(api.lifecycle_topic, event)]),
    )


# --- service settings ---------------------------------------------------------------------------


async def save_service(
    api: AdminApi, principal: Principal, name: str, config: ServiceConfig
) -> ServiceConfig:
    require_service(principal, name)
    if config.name != name:
        raise InvalidField("name", "must equal the service name in the path")
    await api.repository.save_service(config)
    return config


async def delete_service(api: AdminApi, principal: Principal, name: str) -> None:
    require_service(principal, name)
    if not await api.repository.delete_service(name):
        raise NotFound(f"service {name!r} has no stored settings")
