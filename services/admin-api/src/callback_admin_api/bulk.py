"""Bulk cancel: preview and confirm, over chosen ids or over the open callbacks of a range.

A selection is either ``ids`` (at most :data:`~callback_admin_api.views.MAX_BULK_IDS`) or
``all_in_range``: the list's filters (:func:`~callback_admin_api.queries.list_criteria`),
narrowed to the open states (a completed callback of the range is no candidate). A range is read
in the list's order (desired time, id) in batches of :data:`BATCH_SIZE` with the list's cursor,
so no answer holds the whole range in memory; answers list at most
:data:`~callback_admin_api.rules.MAX_BULK_ITEMS` records, the counts cover every one.

Each batch's callbacks that are not yet due are cancelled by the single cancel's update
(:func:`~callback_admin_api.commands.cancellation_update`, stamped with the batch id), applied
with one ``update_many`` per chunk of ids, only where the callback is still not yet due; their
CANCELLED events go first into the job document's outbox (``announcing``), are published once
the batch is read back, and removed. Every other callback goes through
:func:`~callback_admin_api.commands.cancel_one`, the single cancel's path: one routing may hold
(due, QUEUED, ROUTING) is asked of routing (``REQUESTED``: the record shows the cancel pending
until routing answers), one not cancellable at that moment (it reached PROCESSING since the
preview, say) is left as it is and announced as a refused cancellation.
An id that does not exist and one of a service not granted to the caller get the same answer
(``NOT_FOUND``, the id only), as a single cancel answers both with the same 404.

Every bulk cancel has a document in ``bulk_cancel_jobs`` (``_id`` = batch id). A range
selecting more than :data:`JOB_THRESHOLD` open callbacks is cancelled by a background job
(202): its progress is stored after every batch and only its actor may read it. If Kafka does
not take a batch's events the job stops (``failed``); :func:`relay_loop` publishes what a batch
left in its job's outbox after ``RELAY_AFTER`` (only the events of callbacks the batch did
cancel), and marks ``failed`` a job whose process stopped (no progress for
:data:`STALE_JOB_AFTER`). What a job cancelled stays cancelled and announced; submitting the
same range again cancels what is left.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import structlog
from callback_shared.documents import CANCELLED_IN_BATCH, not_yet_due
from callback_shared.models import RETENTION, ServiceConfig
from callback_shared.mongo import ANNOUNCING, ANNOUNCING_SINCE, Document
from callback_shared.outbox import RELAY_AFTER
from callback_shared.runtime import keep_running
from callback_shared.states import CANCELLABLE_STATES, OPEN_STATES, CallbackState

from callback_admin_api.auth import Principal
from callback_admin_api.commands import (
    CancelOutcome,
    cancel_one,
    cancellation_update,
    cancelled_event,
    not_yet_due_filter,
    publish,
)
from callback_admin_api.context import AdminApi
from callback_admin_api.listing import ListCriteria, PageCursor, query_plan
from callback_admin_api.problems import InvalidField, NotFound
from callback_admin_api.queries import ListRequest, list_criteria, retained
from callback_admin_api.rules import MAX_BULK_ITEMS
from callback_admin_api.views import (
    REFUSAL_REASONS,
    BulkCancelPreview,
    BulkCancelRequest,
    BulkCancelResult,
    BulkItem,
    BulkOutcome,
    BulkReason,
    Derived,
    JobState,
    RangeFilters,
    derived,
)

#: Callbacks read (and cancelled) per batch.
BATCH_SIZE = 500
#: A range with more open callbacks than this is cancelled by a background job (202).
JOB_THRESHOLD = 1000
#: Callbacks cancelled concurrently within a batch.
CONCURRENCY = 50
#: A running job without progress for this long has lost its process (a batch takes seconds).
STALE_JOB_AFTER = timedelta(minutes=10)

log = structlog.get_logger("admin-api")

#: Outcomes whose callback gives back its slot place (cancelled, or asked of routing).
ANSWERED = frozenset({BulkOutcome.CANCELLED, BulkOutcome.REQUESTED})

#: What a bulk cancel works on: chosen ids, or the criteria of a range.
Selection = tuple[UUID, ...] | ListCriteria


def selection(api: AdminApi, principal: Principal, request: BulkCancelRequest) -> Selection:
    if request.ids is not None:
        return tuple(dict.fromkeys(request.ids))  # each id once, in the order given
    assert request.all_in_range is not None
    return range_criteria(principal, request.all_in_range, api.clock())


def range_criteria(principal: Principal, filters: RangeFilters, now: datetime) -> ListCriteria:
    """The list's criteria of the filters (validated as the list validates them), narrowed to
    the open states and the retained records."""
    request = ListRequest(
        range=filters.range,
        start=filters.from_,
        end=filters.to,
        time_zone=filters.tz,
        states=tuple(filters.state or ()),
        services=tuple(filters.service or ()),
        field=filters.field,
        q=filters.q,
    )
    try:
        criteria, _, _ = list_criteria(principal, request, now, location="body")
    except InvalidField as exc:
        error = (exc.errors or [])[0]
        raise InvalidField(f"all_in_range.{error.field}", error.message) from None
    states = OPEN_STATES if criteria.states is None else criteria.states & OPEN_STATES
    return retained(replace(criteria, states=frozenset(states)), now)


async def batches(
    api: AdminApi, principal: Principal, chosen: Selection
) -> AsyncIterator[list[tuple[UUID, Document | None]]]:
    """The selection in batches: each id with its document, ``None`` when it does not exist or
    is in a service not granted to the caller."""
    repo = api.repository
    if not isinstance(chosen, ListCriteria):
        for start in range(0, len(chosen), BATCH_SIZE):
            ids = chosen[start : start + BATCH_SIZE]
            found = await repo.find_ids(ids)
            yield [
                (callback_id, doc if doc and principal.grants(doc["service_name"]) else None)
                for callback_id in ids
                for doc in [found.get(callback_id)]
            ]
        return
    if chosen.matches_nothing or chosen.start >= chosen.end:
        return
    plan = query_plan(chosen)
    after: PageCursor | None = None
    while True:
        docs, window = await repo.page(chosen, plan, after, BATCH_SIZE)
        if docs:
            yield [(doc["_id"], doc) for doc in docs]
        if len(docs) < BATCH_SIZE:
            return
        last = docs[-1]
        after = PageCursor(last["desired_time"], last["_id"], window.total_seconds())


@dataclass(frozen=True)
class Shown:
    """How a bulk answer shows its records: with every view's derived fields, which need the
    services' settings and the time of the answer (``configs`` None: a job's, which lists
    none)."""

    configs: Mapping[str, ServiceConfig] | None
    now: datetime

    @classmethod
    async def of(cls, api: AdminApi, docs: Iterable[Document | None]) -> Shown:
        names = {doc["service_name"] for doc in docs if doc is not None}
        return cls(await api.repository.service_configs(names), api.clock())

    def item(
        self,
        callback_id: UUID,
        seen: Document | None,
        outcome: BulkOutcome,
        reason: BulkReason | None,
        after: Document | None = None,
    ) -> BulkItem:
        """``seen``: the record as the selection read it (its state is the item's); ``after``:
        as this answer leaves it, when it changed (the derived fields are of that)."""
        if seen is None:
            return BulkItem(id=callback_id, outcome=outcome, reason=reason)
        now_doc = after or seen
        view = None
        if self.configs is not None:
            name = now_doc["service_name"]
            config = self.configs.get(name) or ServiceConfig(name=name)
            view = Derived.model_validate(derived(now_doc, config, self.now))
        return BulkItem(
            id=callback_id,
            outcome=outcome,
            reason=reason,
            state=seen["state"],
            service_name=seen["service_name"],
            customer_number=seen["customer_number"],
            desired_time=seen["desired_time"],
            derived=view,
        )


def _reason(state: CallbackState | str | None) -> BulkReason:
    return REFUSAL_REASONS[CallbackState(state)] if state else BulkReason.NOT_FOUND


# --- preview ------------------------------------------------------------------------------------


async def preview(
    api: AdminApi, principal: Principal, request: BulkCancelRequest
) -> BulkCancelPreview:
    chosen = selection(api, principal, request)
    total = 0
    reasons: Counter[BulkReason] = Counter()
    items: list[BulkItem] = []
    excluded: list[BulkItem] = []
    async for batch in batches(api, principal, chosen):
        listing = len(items) < MAX_BULK_ITEMS or len(excluded) < MAX_BULK_ITEMS
        shown = await Shown.of(api, (doc for _, doc in batch)) if listing else None
        for callback_id, doc in batch:
            total += 1
            if doc is not None and doc["state"] in CANCELLABLE_STATES:
                if shown and len(items) < MAX_BULK_ITEMS:
                    items.append(shown.item(callback_id, doc, BulkOutcome.WOULD_CANCEL, None))
                continue
            reason = _reason(doc["state"] if doc else None)
            reasons[reason] += 1
            if shown and len(excluded) < MAX_BULK_ITEMS:
                excluded.append(shown.item(callback_id, doc, BulkOutcome.EXCLUDED, reason))
    excluded_count = sum(reasons.values())
    return BulkCancelPreview(
        total=total,
        would_cancel=total - excluded_count,
        excluded=excluded_count,
        excluded_by_reason=dict(reasons),
        items=items,
        excluded_items=excluded,
        truncated=len(items) + len(excluded) < total,
    )


# --- confirm ------------------------------------------------------------------------------------


@dataclass
class Progress:
    """Counts of a bulk cancel so far, and its first records (when kept)."""

    keep_items: bool = True
    outcomes: Counter[BulkOutcome] = field(default_factory=Counter)
    refused_by_reason: Counter[BulkReason] = field(default_factory=Counter)
    items: list[BulkItem] = field(default_factory=list)

    @property
    def total_seen(self) -> int:
        return sum(self.outcomes.values())

    def add(self, item: BulkItem) -> None:
        self.outcomes[item.outcome] += 1
        if item.outcome is BulkOutcome.REFUSED and item.reason is not None:
            self.refused_by_reason[item.reason] += 1
        if self.keep_items and len(self.items) < MAX_BULK_ITEMS:
            self.items.append(item)

    def counts(self) -> Document:
        return {
            "total_seen": self.total_seen,
            "cancelled": self.outcomes[BulkOutcome.CANCELLED],
            "requested": self.outcomes[BulkOutcome.REQUESTED],
            "refused": self.outcomes[BulkOutcome.REFUSED],
            "skipped": self.outcomes[BulkOutcome.SKIPPED],
            "refused_by_reason": {str(k): v for k, v in self.refused_by_reason.items()},
        }


async def bulk_cancel(
    api: AdminApi, principal: Principal, request: BulkCancelRequest
) -> tuple[BulkCancelResult, bool]:
    """Cancel the selection; the outcome, and whether it goes on as a background job."""
    chosen = selection(api, principal, request)
    batch_id, started = uuid4(), api.clock()
    job = {
        "_id": batch_id,
        "actor": principal.username,
        "state": JobState.RUNNING.value,
        "started_at": started,
        "updated_at": started,
        "finished_at": None,
        "error": None,
        "expire_at": started + RETENTION,
        **Progress().counts(),
    }
    background = (
        isinstance(chosen, ListCriteria)
        and not chosen.matches_nothing
        and await api.repository.count_matching(chosen, JOB_THRESHOLD + 1) > JOB_THRESHOLD
    )
    # every bulk cancel has its job document: progress, and the outbox of its events
    await api.repository.insert_job(job)
    if background and isinstance(chosen, ListCriteria):
        api.spawn(run_job(api, principal, chosen, batch_id), f"bulk-cancel-{batch_id}")
        return job_view(job), True
    progress = Progress()
    async for batch in batches(api, principal, chosen):
        # (a batch Kafka did not take is published by the relay: the answer stands)
        await cancel_batch(api, principal, batch, batch_id, progress)
    await _finish(api, batch_id, progress, JobState.DONE, None)
    finished = api.clock()
    done = {**job, **progress.counts(), "state": JobState.DONE.value, "finished_at": finished}
    result = job_view(done).model_copy(
        update={
            "items": progress.items,
            "truncated": len(progress.items) < progress.total_seen,
            "updated_at": finished,
        }
    )
    return result, False


async def cancel_batch(
    api: AdminApi,
    principal: Principal,
    batch: Sequence[tuple[UUID, Document | None]],
    batch_id: UUID,
    progress: Progress,
) -> bool:
    """Cancel the batch, give back their slot places and announce them; whether every event
    reached Kafka (else they wait in the job's outbox for :func:`relay_job_outboxes`).

    Fast path, for the callbacks seen not yet due: their CANCELLED events first go to the job
    document's outbox (one write), then one ``update_many`` per chunk of ids cancels them
    (still not yet due: the same update for all, stamped with the batch id), one read-back
    tells which this batch cancelled, their events are published and removed from the job's
    outbox. Every other callback (routing may hold it, its state changed meanwhile, or it was
    not cancellable) goes through :func:`~callback_admin_api.commands.cancel_one`, the single
    cancel's path, a few at a time.
    """
    repo = api.repository
    now = api.clock()
    if progress.keep_items:
        shown = await Shown.of(api, (doc for _, doc in batch))
    else:
        shown = Shown(None, now)
    seen = {cid: doc for cid, doc in batch if doc is not None and not_yet_due(doc, now)}
    entries = {
        cid: cancelled_event(api, principal, doc, now, batch_id) for cid, doc in seen.items()
    }
    after: dict[UUID, Document] = {}
    if seen:
        await repo.update_job(
            batch_id,
            {
                "$push": {ANNOUNCING: {"$each": list(entries.values())}},
                "$set": {ANNOUNCING_SINCE: now},
            },
        )
        await repo.update_where(
            list(seen), not_yet_due_filter(now), cancellation_update(principal, now, batch_id)
        )
        after = await repo.find_ids(seen)
    ours: list[Document] = []
    places: list[tuple[str, datetime, UUID]] = []
    rest: list[tuple[UUID, Document | None]] = []
    for callback_id, read in batch:
        done = after.get(callback_id)
        if done is not None and done.get(CANCELLED_IN_BATCH) == batch_id:
            cancelled = BulkOutcome.CANCELLED
            progress.add(shown.item(callback_id, seen[callback_id], cancelled, None, done))
            ours.append(entries[callback_id])
            places.append((done["service_name"], done["desired_time"], callback_id))
        else:
            rest.append((callback_id, done if callback_id in seen else read))
    announced: list[Document] = []
    for start in range(0, len(rest), CONCURRENCY):
        chunk = rest[start : start + CONCURRENCY]
        results = await asyncio.gather(
            *(_cancel(api, principal, shown, cid, doc, batch_id) for cid, doc in chunk)
        )
        for item, changed in results:
            progress.add(item)
            if changed is not None:
                announced.append(changed)
            if item.outcome in ANSWERED and changed is not None:
                places.append((changed["service_name"], changed["desired_time"], changed["_id"]))
    await repo.release_slots(places)
    await publish(api, *announced)
    if not entries:
        return True
    try:
        await asyncio.wait_for(
            api.relay.publish(ours), timeout=api.settings.admin_publish_timeout_seconds
        )
    except Exception:
        log.warning("bulk cancel events left for the relay", batch_id=str(batch_id), exc_info=True)
        return False
    await repo.settle_job_outbox(batch_id, [entry["event_id"] for entry in entries.values()])
    return True


async def _cancel(
    api: AdminApi,
    principal: Principal,
    shown: Shown,
    callback_id: UUID,
    doc: Document | None,
    batch_id: UUID,
) -> tuple[BulkItem, Document | None]:
    if doc is None:
        return shown.item(callback_id, None, BulkOutcome.SKIPPED, BulkReason.NOT_FOUND), None
    done = await cancel_one(api, principal, doc, batch_id=batch_id, deferred=True)
    if done.outcome is CancelOutcome.CANCELLED:
        return shown.item(callback_id, doc, BulkOutcome.CANCELLED, None, done.doc), done.doc
    if done.outcome is CancelOutcome.REQUESTED:
        return shown.item(callback_id, doc, BulkOutcome.REQUESTED, None, done.doc), done.doc
    if done.outcome is CancelOutcome.REFUSED:
        seen = done.doc or doc
        refused = shown.item(callback_id, seen, BulkOutcome.REFUSED, _reason(done.state))
        return refused, done.doc
    if done.outcome is CancelOutcome.CHANGING:
        return shown.item(callback_id, doc, BulkOutcome.SKIPPED, BulkReason.CHANGING), None
    return shown.item(callback_id, None, BulkOutcome.SKIPPED, BulkReason.NOT_FOUND), None


async def run_job(
    api: AdminApi, principal: Principal, criteria: ListCriteria, batch_id: UUID
) -> None:
    """The background job of a large range: progress stored after every batch."""
    repo = api.repository
    progress = Progress(keep_items=False)
    try:
        async for batch in batches(api, principal, criteria):
            announced = await cancel_batch(api, principal, batch, batch_id, progress)
            if not announced:
                # Kafka is down: stop here rather than pile up events; the relay publishes
                # what this batch cancelled, the range can be submitted again later
                raise RuntimeError("lifecycle events could not be published (Kafka)")
            await repo.update_job(
                batch_id, {"$set": {**progress.counts(), "updated_at": api.clock()}}
            )
    except asyncio.CancelledError:
        await _finish(api, batch_id, progress, JobState.FAILED, "interrupted by a shutdown")
        raise
    except Exception as exc:
        log.exception("bulk cancel job failed", batch_id=str(batch_id))
        await _finish(api, batch_id, progress, JobState.FAILED, repr(exc))
        return
    await _finish(api, batch_id, progress, JobState.DONE, None)
    log.info("bulk cancel job done", batch_id=str(batch_id), **progress.counts())


async def _finish(
    api: AdminApi, batch_id: UUID, progress: Progress, state: JobState, error: str | None
) -> None:
    now = api.clock()
    try:
        await api.repository.update_job(
            batch_id,
            {
                "$set": {
                    **progress.counts(),
                    "state": state.value,
                    "error": error,
                    "updated_at": now,
                    "finished_at": now,
                }
            },
        )
    except Exception:
        log.warning("bulk cancel job state not stored", batch_id=str(batch_id), exc_info=True)


def job_view(job: Document) -> BulkCancelResult:
    return BulkCancelResult(
        batch_id=job["_id"],
        actor=job["actor"],
        state=JobState(job["state"]),
        total_seen=job["total_seen"],
        cancelled=job["cancelled"],
        requested=job.get("requested", 0),
        refused=job["refused"],
        skipped=job["skipped"],
        refused_by_reason=job.get("refused_by_reason") or {},
        started_at=job["started_at"],
        finished_at=job.get("finished_at"),
        updated_at=job.get("updated_at"),
        error=job.get("error"),
    )


async def get_job(api: AdminApi, principal: Principal, batch_id: UUID) -> BulkCancelResult:
    """A bulk cancel job, to its actor only (anyone else: the same 404 as a missing one)."""
    job = await api.repository.job(batch_id, principal.username)
    if job is None:
        raise NotFound("no such bulk cancel of yours")
    return job_view(job)


# --- relay --------------------------------------------------------------------------------------


async def relay_job_outboxes(api: AdminApi, older_than: timedelta = RELAY_AFTER) -> int:
    """Publish the events a bulk cancel left in its job's outbox (crash, Kafka down): those of
    the callbacks its batch did cancel; the others never happened. Returns jobs relayed."""
    repo = api.repository
    jobs = await repo.jobs_to_relay(api.clock() - older_than)
    for job in jobs:
        entries: list[Document] = job.get(ANNOUNCING) or []
        cancelled = await repo.find_ids(
            [UUID(entry["key"]) for entry in entries], projection={CANCELLED_IN_BATCH: 1}
        )
        await api.relay.publish(
            entry
            for entry in entries
            if cancelled.get(UUID(entry["key"]), {}).get(CANCELLED_IN_BATCH) == job["_id"]
        )
        await repo.settle_job_outbox(job["_id"], [entry["event_id"] for entry in entries])
        log.warning("relayed bulk cancel events", batch_id=str(job["_id"]), events=len(entries))
    return len(jobs)


async def relay_loop(api: AdminApi, interval: float = 1.0) -> None:
    """Relay job outboxes, and mark failed the jobs whose process stopped (no progress for
    :data:`STALE_JOB_AFTER`); never gives up."""

    async def relay_and_reap() -> None:
        await relay_job_outboxes(api)
        now = api.clock()
        if reaped := await api.repository.reap_jobs(now - STALE_JOB_AFTER, now):
            log.warning("bulk cancel jobs interrupted by a stopped process", jobs=reaped)

    await keep_running(relay_and_reap, interval, "bulk cancel relay failed; will retry")
