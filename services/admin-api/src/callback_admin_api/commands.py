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
outright (:class:`Cancellation`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4

import structlog
from callback_shared.documents import (
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
    RETENTION,
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
from callback_shared.outbox import outbox_entry, with_outbox
from callback_shared.record import CancelRequestF, F, path
from callback_shared.states import CANCELLABLE_STATES, CallbackResult, CallbackState

from callback_admin_api.auth import Principal, load_callback, require_service
from callback_admin_api.context import AdminApi, spawn_task
from callback_admin_api.numbers import InvalidNumber, normalise_customer_number
from callback_admin_api.problems import Conflict, InvalidField, NotFound, TooManyRequests
from callback_admin_api.repository import OpenCount
from callback_admin_api.rules import OPEN_CALLBACKS_ALLOWED, keeps_name_recording
from callback_admin_api.schedule import is_open, is_slot_start, local_date, next_local_midnight
from callback_admin_api.views import RecreateCallback

SOURCE = "admin-api"
#: Attempts at a conditional update before a command gives up on a callback that keeps changing.
UPDATE_ATTEMPTS = 3

log = structlog.get_logger("admin-api")


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


async def create_callback(
    api: AdminApi, principal: Principal, command: CreateCallback
) -> tuple[Document, ServiceConfig]:
    """The new record, and the settings of its service it was admitted under."""
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
) -> tuple[Document, ServiceConfig]:
    original = await load_callback(api.repository, principal, callback_id)
    if original[F.STATE] != CallbackState.COMPLETED:
        raise Conflict(
            f"only a COMPLETED callback can be recreated; this one is {original[F.STATE]}",
            state=original[F.STATE],
        )
    config, _ = await api.repository.service_config(original[F.SERVICE_NAME])
    now = api.clock()
    kept = keeps_name_recording(original, now)
    new = NewCallback(
        service_name=original[F.SERVICE_NAME],
        customer_number=original[F.CUSTOMER_NUMBER],
        type=body.type,
        desired_time=body.desired_time,
        priority=original.get(F.PRIORITY, 0) if body.priority is None else body.priority,
        name_recording_uri=original.get(F.NAME_RECORDING_URI) if kept else None,
        recreated_from=original["_id"],
    )
    return await _admit(api, principal, config, new)


async def _admit(
    api: AdminApi, principal: Principal, config: ServiceConfig, new: NewCallback
) -> tuple[Document, ServiceConfig]:
    """Every request guard, then the record: places and counts taken atomically, given back
    if a later step fails."""
    repo = api.repository
    now = api.clock()
    desired = _desired_time(config, new.type, new.desired_time, now)
    callback_id = uuid4()
    async with AsyncExitStack() as taken:
        await _count_open(api, config, new.customer_number, callback_id, desired, taken)
        day = local_date(config, now)
        daily_cap = config.guards.max_requests_per_number_per_day
        if daily_cap is not None:
            midnight = next_local_midnight(config, now)
            counted = await repo.count_request(
                config.name, new.customer_number, day, daily_cap, midnight + timedelta(days=1)
            )
            if not counted:
                raise TooManyRequests(
                    f"customer number {new.customer_number} reached today's {daily_cap} "
                    f"requests in service {config.name!r}",
                    retry_after_seconds=int((midnight - now).total_seconds()),
                )
            taken.push_async_callback(repo.uncount_request, config.name, new.customer_number, day)
        if new.type is CallbackType.SCHEDULED:
            if not await repo.take_slot(config.name, desired, config.slot_capacity, callback_id):
                raise Conflict(f"desired_time: the slot at {desired.isoformat()} is full")
            taken.push_async_callback(repo.release_slot, config.name, desired, callback_id)
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
        doc[F.OUTBOX] = [outbox_entry(api.lifecycle_topic, event)]
        doc[F.OUTBOX_SINCE] = now
        await repo.insert(doc)
        taken.pop_all()  # stored: keep what it took
    await publish(api, doc)
    return doc, config


async def _count_open(
    api: AdminApi,
    config: ServiceConfig,
    customer_number: str,
    callback_id: UUID,
    desired: datetime,
    taken: AsyncExitStack,
) -> None:
    """The duplicate check and the service's open-callbacks cap: the new callback counted as
    open in each, or refused (409 naming the number's open callbacks; 429)."""
    repo = api.repository
    now = api.clock()
    keep_until = desired + RETENTION  # the counts live as long as the callbacks they count
    allowed = OPEN_CALLBACKS_ALLOWED[config.guards.duplicate_check]
    if allowed is not None:
        of_number = OpenCount(config.name, customer_number, allowed)
        filling = await repo.admit_open(of_number, callback_id, now, keep_until)
        if filling is not None:
            shown = [str(open_id) for open_id in filling.callback_ids]
            raise Conflict(
                f"customer number {customer_number} already has {filling.total} open "
                f"callback(s) in service {config.name!r}: {', '.join(shown)}",
                open_callback_ids=shown,
            )
        taken.push_async_callback(repo.give_back_open, of_number, callback_id)
    cap = config.guards.max_open_callbacks
    if cap is not None:
        of_service = OpenCount(config.name, None, cap)
        if await repo.admit_open(of_service, callback_id, now, keep_until) is not None:
            raise TooManyRequests(
                f"service {config.name!r} already holds {cap} open callbacks, the most it accepts",
                retry_after_seconds=60,
            )
        taken.push_async_callback(repo.give_back_open, of_service, callback_id)


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


# --- reschedule, cancel ------------------------------------------------------------------------


async def reschedule_callback(
    api: AdminApi, principal: Principal, callback_id: UUID, desired: datetime
) -> tuple[Document, ServiceConfig]:
    repo = api.repository
    doc = await load_callback(api.repository, principal, callback_id)
    now = api.clock()
    if not not_yet_due(doc, now):
        raise Conflict(
            "only a SCHEDULED callback not yet due (dispatched) can be rescheduled; this one is "
            f"{doc[F.STATE]}",
            state=doc[F.STATE],
        )
    if desired == doc[F.DESIRED_TIME]:
        raise InvalidField("desired_time", "is already the callback's desired time")
    config, _ = await repo.service_config(doc[F.SERVICE_NAME])
    check_scheduled_time(config, desired, now)
    if not await repo.take_slot(config.name, desired, config.slot_capacity, callback_id):
        raise Conflict(f"desired_time: the slot at {desired.isoformat()} is full")
    previous = doc[F.DESIRED_TIME]
    note = f"rescheduled from {previous.isoformat()} to {desired.isoformat()}"
    event = lifecycle_event(
        {**doc, F.DESIRED_TIME: desired},
        LifecycleEventKind.RESCHEDULED,
        occurred_at=now,
        previous_state=CallbackState.SCHEDULED,
        actor=principal.username,
        reason=note,
    )
    update = {
        "$set": {
            F.DESIRED_TIME: desired,
            F.DISPATCH_AT: desired,
            F.EXPIRE_AT: expire_at(desired),
            F.UPDATED_AT: now,
        },
        "$push": {
            F.TIMELINE: timeline_entry(
                now, CallbackState.SCHEDULED, SOURCE, actor=principal.username, note=note
            )
        },
    }
    updated = await repo.update(
        {
            "_id": callback_id,
            F.STATE: CallbackState.SCHEDULED.value,
            F.DISPATCH_AT: {"$gt": now + DISPATCH_MARGIN},
            F.DESIRED_TIME: previous,
        },
        with_outbox(update, [outbox_entry(api.lifecycle_topic, event)]),
    )
    if updated is None:
        await repo.release_slot(config.name, desired, callback_id)
        raise Conflict("the callback was dispatched or changed meanwhile; reload it")
    await repo.release_slot(config.name, previous, callback_id)
    await publish(api, updated)
    return updated, config


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


#: Outcomes whose callback gives back its slot place: cancelled, or asked of routing.
GIVES_BACK_PLACE = frozenset({CancelOutcome.CANCELLED, CancelOutcome.REQUESTED})


@dataclass(frozen=True)
class Cancellation:
    """Cancelling one callback, decided on the record as ``seen`` by ``principal`` at ``now``
    (in the bulk cancel batch ``batch_id``, if any), with everything its one conditional update
    writes (:meth:`write`). By what was seen (:attr:`outcome`):

    - not yet due (:func:`~callback_shared.documents.not_yet_due`): cancelled outright,
      ``CANCELLED``: COMPLETED(CANCELLED_BY_ADMIN), ``dispatch_at`` unset, the CANCELLED event;
    - routing may hold it (due, QUEUED, ROUTING): asked of routing, ``REQUESTED``: a pending
      ``cancel_request``, ``dispatch_at`` unset, the CANCEL command to routing and the
      CANCEL_REQUESTED event; nothing to write when a cancel is already pending
      (:attr:`asked_already`);
    - not in :data:`CANCELLABLE_STATES` (PROCESSING, COMPLETED): ``REFUSED``, only the
      CANCELLATION_REFUSED event.

    The update applies only while the record is still as seen (:attr:`filter`). An outright
    cancellation's :attr:`condition` and :attr:`update` are the same for every callback
    cancelled by one principal at one time in one batch (bulk cancel applies them to many
    callbacks at once).
    """

    seen: Document
    principal: Principal
    now: datetime
    batch_id: UUID | None = None

    @property
    def state(self) -> CallbackState:
        return CallbackState(self.seen[F.STATE])

    @property
    def outcome(self) -> CancelOutcome:
        if self.state not in CANCELLABLE_STATES:
            return CancelOutcome.REFUSED
        if cancel_pending(self.seen) or not not_yet_due(self.seen, self.now):
            return CancelOutcome.REQUESTED
        return CancelOutcome.CANCELLED

    @property
    def asked_already(self) -> bool:
        """A cancel of it already waits for routing's answer: not asked again."""
        return self.state in CANCELLABLE_STATES and cancel_pending(self.seen)

    @property
    def condition(self) -> Document:
        """What the record must still be for the update to apply (besides its id)."""
        outcome = self.outcome
        if outcome is CancelOutcome.CANCELLED:
            # the scheduler cannot have emitted it yet
            return {
                F.STATE: CallbackState.SCHEDULED.value,
                F.DISPATCH_AT: {"$gt": self.now + DISPATCH_MARGIN},
            }
        if outcome is CancelOutcome.REQUESTED:
            return {
                F.STATE: self.state.value,
                path(F.CANCEL_REQUEST, CancelRequestF.STATUS): {
                    "$ne": CancelRequestStatus.PENDING.value
                },
            }
        return {F.STATE: self.state.value}

    @property
    def filter(self) -> Document:
        return {"_id": self.seen["_id"], **self.condition}

    @property
    def update(self) -> Document:
        """The change it makes, without its events."""
        outcome = self.outcome
        actor, now, batch_id = self.principal.username, self.now, self.batch_id
        if outcome is CancelOutcome.REFUSED:
            return {}
        if outcome is CancelOutcome.CANCELLED:
            note = "cancelled" if batch_id is None else f"cancelled in batch {batch_id}"
            set_: Document = {
                F.STATE: CallbackState.COMPLETED.value,
                F.RESULT: CallbackResult.CANCELLED_BY_ADMIN.value,
                F.UPDATED_AT: now,
                F.COMPLETED_AT: now,
            }
            if batch_id is not None:
                set_[F.CANCELLED_IN_BATCH] = batch_id
            entry = timeline_entry(
                now,
                CallbackState.COMPLETED,
                SOURCE,
                result=CallbackResult.CANCELLED_BY_ADMIN,
                actor=actor,
                note=note,
            )
        else:
            note = "cancel asked of routing" + (f" in batch {batch_id}" if batch_id else "")
            request = CancelRequest(
                requested_at=now,
                actor=actor,
                batch_id=batch_id,
                state=self.state,
                status=CancelRequestStatus.PENDING,
            )
            set_ = {
                F.CANCEL_REQUEST: request.model_dump(mode="python"),
                F.CANCEL_PENDING_SINCE: now,
                F.UPDATED_AT: now,
            }
            entry = timeline_entry(now, self.state, SOURCE, actor=actor, note=note)
        return {
            "$set": set_,
            # the scheduler must never emit it (again): a cancelled callback, or one whose
            # cancel routing is asked for
            "$unset": dict.fromkeys(DISPATCH_FIELDS, ""),
            "$push": {F.TIMELINE: entry},
        }

    def outbox(self, api: AdminApi) -> list[Document]:
        """The outbox entries announcing it: its lifecycle event, after the CANCEL command to
        routing when it is asked of routing."""
        outcome, seen = self.outcome, self.seen
        announced, reason = seen, None
        if outcome is CancelOutcome.CANCELLED:
            kind = LifecycleEventKind.CANCELLED
            announced = {
                **seen,
                F.STATE: CallbackState.COMPLETED,
                F.RESULT: CallbackResult.CANCELLED_BY_ADMIN,
            }
        elif outcome is CancelOutcome.REFUSED:
            kind, reason = LifecycleEventKind.CANCELLATION_REFUSED, str(seen[F.STATE])
        else:
            kind = LifecycleEventKind.CANCEL_REQUESTED
        event = lifecycle_event(
            announced,
            kind,
            occurred_at=self.now,
            previous_state=self.state,
            actor=self.principal.username,
            batch_id=self.batch_id,
            reason=reason,
        )
        entries = [outbox_entry(api.lifecycle_topic, event)]
        if outcome is CancelOutcome.REQUESTED:
            command = routing_command(
                seen, RoutingCommandKind.CANCEL, reason="cancelled by an administrator"
            )
            entries.insert(0, outbox_entry(api.routing_commands_topic, command))
        return entries

    def write(self, api: AdminApi) -> tuple[Document, Document]:
        """The conditional update carrying it out, its events in the outbox: (filter, update)."""
        return self.filter, with_outbox(self.update, self.outbox(api))


@dataclass(frozen=True)
class CancelResult:
    """What applying a cancellation did."""

    outcome: CancelOutcome
    #: the record as the cancellation left it, or as last seen (``None``: gone)
    doc: Document | None
    #: the state it was cancelled, asked or refused in
    state: CallbackState | None
    #: whether the cancellation wrote ``doc`` (then its slot place and its events are due to
    #: :func:`announce_cancellations`)
    written: bool = False


async def cancel_callback(
    api: AdminApi, principal: Principal, callback_id: UUID
) -> tuple[Document, CancelOutcome]:
    """COMPLETED(CANCELLED_BY_ADMIN) when not yet due; asked of routing (REQUESTED) when routing
    may hold it; refused when PROCESSING or COMPLETED (409, announced as a refused
    cancellation). A bulk cancel batch of one."""
    doc = await load_callback(api.repository, principal, callback_id)
    done = await apply_cancellation(api, principal, doc)
    await announce_cancellations(api, [done])
    if done.outcome in (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED) and done.doc:
        return done.doc, done.outcome
    if done.outcome is CancelOutcome.REFUSED:
        raise Conflict(f"a {done.state} callback cannot be cancelled", state=done.state)
    if done.outcome is CancelOutcome.NOT_FOUND:
        raise NotFound("no such callback among your services")
    raise Conflict("the callback kept changing state while being cancelled; try again")


async def apply_cancellation(
    api: AdminApi, principal: Principal, doc: Document, batch_id: UUID | None = None
) -> CancelResult:
    """Write the :class:`Cancellation` of ``doc`` as seen now; a record that changed meanwhile
    (the update matched nothing) is read again and decided again, at most
    :data:`UPDATE_ATTEMPTS` times: a refusal too, whose write (its event in the outbox) misses
    when the record moves on meanwhile (PROCESSING to COMPLETED), and must still be recorded for
    the report, in the state it is refused in. Gives back no slot place and publishes nothing:
    :func:`announce_cancellations` does, after one cancel or a whole bulk cancel batch. The
    caller checked the grant."""
    repo = api.repository
    for _ in range(UPDATE_ATTEMPTS):
        cancellation = Cancellation(doc, principal, api.clock(), batch_id)
        if cancellation.asked_already:
            return CancelResult(CancelOutcome.REQUESTED, doc, cancellation.state)
        updated = await repo.update(*cancellation.write(api))
        if updated is not None:
            return CancelResult(cancellation.outcome, updated, cancellation.state, written=True)
        fresh = await repo.get(doc["_id"])
        if fresh is None:
            return CancelResult(CancelOutcome.NOT_FOUND, None, None)
        doc = fresh
    return CancelResult(CancelOutcome.CHANGING, doc, CallbackState(doc[F.STATE]))


async def announce_cancellations(api: AdminApi, results: Sequence[CancelResult]) -> None:
    """What follows the cancellations of one cancel or of a bulk cancel batch: the callbacks
    cancelled or asked of routing give back their slot places, and the events the
    cancellations wrote are published (:func:`publish`)."""
    written = [(result.outcome, result.doc) for result in results if result.written and result.doc]
    await api.repository.release_slots(
        [
            (doc[F.SERVICE_NAME], doc[F.DESIRED_TIME], doc["_id"])
            for outcome, doc in written
            if outcome in GIVES_BACK_PLACE
        ]
    )
    await publish(api, *(doc for _, doc in written))


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
